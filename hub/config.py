"""Every ``HUB_*`` setting, declared once with its doc and embedded default.

Settings are read once, when the app (or a worker, or the CLI) starts: the rest
of the code receives a :class:`Settings` object and never looks at the
environment itself. A bad value stops start-up with a message naming the
setting, instead of failing later on the first request that needs it.

Every embedded default lives under ``HUB_DATA_DIR`` so that one variable moves
a whole instance: two hubs on one machine differ only in it and their port.

Where a value comes from, first found wins: the overrides ``create_app`` is given
(tests), the environment, the instance's own settings file
``HUB_DATA_DIR/hub.conf`` (``HUB_X=value`` lines, written by ``hub sync init`` so
that a school server's cron lines and service units need no variables but
``HUB_DATA_DIR``), then the embedded default. An empty value counts as unset.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.errors import Text


def N_(message: str) -> str:
    """hub.i18n.N_ (mark for extraction, translate where shown) without loading Babel and Flask.

    This module loads for every `hub` command, `hub --help` included; hub.i18n costs 150 ms.
    """
    return message


class ConfigError(ValueError):
    """A setting has a value the hub cannot use; the message names it.

    Its text is English (logs, tracebacks); :attr:`text` keeps the message id and
    values, so the command line says it in the terminal's language (hub.cli).
    """

    def __init__(self, template: str, **params: object) -> None:
        self.text = Text(template, **params)
        super().__init__(str(self.text))


def _problem(exc: ValueError) -> str:
    """A parser's complaint: its Text (translated where shown), or Python's own words as they are."""
    first = exc.args[0] if exc.args else ""
    return first if isinstance(first, Text) else str(exc)


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(Text(N_("must be a positive whole number")))
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(Text(N_("must be 0 or a positive whole number")))
    return number


def _public_key(value: str) -> str:
    if not value:
        return ""
    try:
        raw = base64.b64decode(value.strip().removeprefix("ed25519:"), validate=True)
    except ValueError:
        raise ValueError(Text(N_("must be the base64 public key `hub keys generate` printed"))) from None
    if len(raw) != 32:
        raise ValueError(Text(N_("an Ed25519 public key is 32 bytes (44 base64 characters)")))
    return value.strip()


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if int(value) < minimum:
            raise ValueError(Text(N_("must be at least %(minimum)s"), minimum=minimum))
        return int(value)

    return parse


def _between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not low <= int(value) <= high:
            raise ValueError(Text(N_("must be a whole number from %(low)s to %(high)s"), low=low, high=high))
        return int(value)

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(Text(N_("must be one of %(allowed)s"), allowed=", ".join(allowed)))
        return value

    return parse


def _flag(value: str) -> bool:
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(Text(N_("must be on or off (also true/false, yes/no, 1/0)")))


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        scheme = urlsplit(value).scheme
        if not any(scheme == s or scheme.startswith(s + "+") for s in schemes):
            raise ValueError(Text(N_("must be a URL starting with one of %(schemes)s"), schemes=", ".join(schemes)))
        return value

    return parse


def _optional_url(value: str) -> str:
    return _url("http", "https")(value) if value else ""


def _timezone(value: str) -> str:
    # Babel's lookup is the one the pages use (pytz's own data: no system tzdata needed).
    # Imported here: the `hub` command loads this module just to print its help.
    from babel.dates import get_timezone

    try:
        get_timezone(value)
    except LookupError:
        raise ValueError(Text(N_("must be a time zone name such as Asia/Shanghai or UTC"))) from None
    return value


def _mdns_name(value: str) -> str:
    name = value.strip().lower().removesuffix(".local")
    if name and not (
        len(name) <= 63
        and all(c.isascii() and (c.isalnum() or c == "-") for c in name)
        and not name.startswith("-")
        and not name.endswith("-")
    ):
        raise ValueError(
            Text(N_("must be a host name of at most 63 letters, digits and hyphens (no dots), e.g. shancun"))
        )
    return name


def setting(doc: str, parse: Callable[[str], Any] = str, default: str | None = None) -> Any:
    """Declare a setting: ``default`` may name ``{data_dir}``; None means derived."""
    return field(default=None, metadata={"doc": doc, "parse": parse, "default": default})


@dataclass(frozen=True)
class Settings:
    """The hub's configuration; attribute ``x`` is read from ``HUB_X``."""

    data_dir: Path = setting(
        "Directory for every embedded default's state (database, storage, broker, index, secret).",
        _path,
        "./var",
    )
    database_url: str = setting(
        "SQLAlchemy database URL; PostgreSQL in production (postgresql+psycopg://…).",
        _url("sqlite", "postgresql"),
        "sqlite:///{data_dir}/hub.db",
    )
    storage: str = setting("Blob storage backend: local or s3.", _choice("local", "s3"), "local")
    storage_dir: Path = setting("Directory of the local blob storage.", _path, "{data_dir}/storage")
    s3_bucket: str = setting("S3 bucket for blobs (HUB_STORAGE=s3).", str, "")
    s3_prefix: str = setting("Key prefix inside the S3 bucket.", str, "")
    s3_endpoint_url: str = setting("S3 endpoint for MinIO, Ceph or a test server; empty for AWS.", _optional_url, "")
    s3_region: str = setting("S3 region.", str, "us-east-1")
    broker_url: str = setting(
        "Celery broker URL; the default needs no server (kombu's SQLAlchemy transport).",
        _url("sqla", "redis", "rediss", "amqp", "pyamqp", "memory"),
        "sqla+sqlite:///{data_dir}/broker.db",
    )
    broker_timeout: int = setting(
        "Seconds one hand-off of queued work to the broker may wait (connecting, a locked SQLite broker) before "
        "it is tried again later; requests never wait for the broker.",
        _positive_int,
        "3",
    )
    index_dir: Path = setting("Directory of the Whoosh search index.", _path, "{data_dir}/index")
    secret_key: str = setting(
        "Key that signs sessions and CSRF tokens; generated into HUB_DATA_DIR/secret_key when unset.",
        str,
        None,
    )
    login_max_failures: int = setting(
        "Failed sign-ins to one account within HUB_LOGIN_WINDOW; more are refused (429) until the window moves on.",
        _positive_int,
        "10",
    )
    login_max_failures_per_address: int = setting(
        "Failed sign-ins from one client address (an IPv6 /64) within HUB_LOGIN_WINDOW; a school's teachers may "
        "share one address.",
        _positive_int,
        "100",
    )
    login_window: int = setting("Seconds a failed sign-in counts towards the limits above.", _positive_int, "900")
    public_url: str = setting(
        "Base URL clients reach this hub at (https://host[:port][/prefix]); resumable upload URLs start "
        "with it. Empty: host-relative URLs.",
        _optional_url,
        "",
    )
    trusted_proxies: int = setting(
        "Reverse proxies in front of the hub whose X-Forwarded-For/-Proto/-Host it believes; 0: none.",
        _non_negative_int,
        "0",
    )
    hsts_max_age: int = setting(
        "Seconds browsers must keep to https (Strict-Transport-Security) once they reach the hub over it; "
        "0: no header.",
        _non_negative_int,
        str(365 * 24 * 3600),
    )
    upload_dir: Path = setting(
        "Directory of unfinished resumable uploads (local files; S3 parts not yet full).", _path, "{data_dir}/uploads"
    )
    upload_max_bytes: int = setting("Largest resumable upload (tus Tus-Max-Size).", _positive_int, str(20 * 1024**3))
    upload_expires: int = setting(
        "Seconds an upload may sit untouched before it expires and its bytes go.", _positive_int, str(7 * 24 * 3600)
    )
    upload_part_bytes: int = setting(
        "S3 multipart part size of resumable uploads (at least 5 MiB).", _at_least(5 * 1024**2), str(8 * 1024**2)
    )
    upload_max_unfinished: int = setting(
        "Most unfinished resumable uploads one user may have at once; another is refused (403).", _positive_int, "20"
    )
    upload_school_max_bytes: int = setting(
        "Most bytes a school's unfinished resumable uploads may declare together; more is refused (413).",
        _positive_int,
        str(50 * 1024**3),
    )
    upload_disk_reserve: int = setting(
        "Bytes resumable uploads leave free on the disks of HUB_UPLOAD_DIR and local storage; an upload or PATCH "
        "that could go under it is refused (507).",
        _non_negative_int,
        str(1024**3),
    )
    max_upload_bytes: int = setting(
        "Largest file accepted by a plain multipart upload (bigger files use resumable uploads).",
        _positive_int,
        str(64 * 1024 * 1024),
    )
    search_cache_mb: int = setting(
        "Memory for the search index's cached per-term document bitmaps, in MB.", _positive_int, "64"
    )
    web_processes: int = setting(
        "Processes `hub serve` runs (each with its own threads and page cache); 0: one per core.",
        _non_negative_int,
        "0",
    )
    upload_port: int = setting(
        "Port of a second `hub serve` listener for resumable uploads only (/api/v1/uploads/), which streams each "
        "PATCH body into the upload as it arrives instead of spooling it first; for nginx's tus location with "
        "proxy_request_buffering off (README, Uploads without the spool). 0: none, uploads use the main port.",
        _non_negative_int,
        "0",
    )
    upload_threads: int = setting(
        "Threads of the upload listener (HUB_UPLOAD_PORT): the most PATCHes it receives at once; each holds its "
        "thread for as long as its client takes to send.",
        _positive_int,
        "8",
    )
    page_cache_mb: int = setting(
        "Memory each web process keeps anonymous pages in (hub.pagecache), in MB; 0: no page cache.",
        _non_negative_int,
        "64",
    )
    search_replica: bool = setting(
        "Whether this node keeps its own replica of the search index, following the database's log of index "
        "changes: on for every web node of a deployment with more than one (workers then leave the index alone).",
        _flag,
        "off",
    )
    search_follow_ms: int = setting(
        "How often a search replica looks for new index changes in the database, in milliseconds.",
        _positive_int,
        "1000",
    )
    search_changes_days: int = setting(
        "Days the database keeps its log of search index changes; a replica away for longer rebuilds.",
        _positive_int,
        "7",
    )
    search_rebuild_mb: int = setting(
        "Memory for postings a search rebuild holds before it writes them out as one index segment, in MB "
        "(a rebuild's peak stays under this plus 0.5 GB, whatever the catalog's size).",
        _positive_int,
        "1024",
    )
    search_rebuild_processes: int = setting(
        "Processes a search rebuild analyses documents in once the catalog outgrows one index segment "
        "(HUB_SEARCH_REBUILD_MB of postings), sharing that memory; 0: one per core; 1: the rebuilding process only "
        "(each more adds ~0.5 GB; at 1,000,000 lessons 2 processes took 0.8x the time with 2.0 GB instead of 1.5 GB).",
        _non_negative_int,
        "1",
    )
    streamed_downloads: int = setting(
        "Most course ZIPs streamed from S3 storage at once (each holds a web server thread); more get a 503.",
        _positive_int,
        "4",
    )
    page_size: int = setting("Courses per page in lists.", _positive_int, "20")
    oai_repository_name: str = setting("The hub's name in OAI-PMH Identify.", str, "OER Hub")
    oai_repository_id: str = setting(
        "Namespace of OAI-PMH identifiers (oai:ID:course/N), a domain name; empty: HUB_PUBLIC_URL's host, else the "
        "request's. Set it when the hub is reached under several names: identifiers must not change.",
        str,
        "",
    )
    oai_admin_email: str = setting(
        "Contact address OAI-PMH Identify gives harvesters; empty: webmaster@ the request's host.", str, ""
    )
    oai_page_size: int = setting(
        "Records (or identifiers) per OAI-PMH list response; the rest follow by resumption token.", _positive_int, "100"
    )
    sitemap_max_urls: int = setting(
        "URLs per sitemap file, at most 50000 (the protocol's limit); past it /sitemap.xml becomes a sitemap "
        "index. 10000 URLs are ~1 MB, gzipped to ~100 KB.",
        _between(1, 50_000),
        "10000",
    )
    timezone: str = setting(
        "Time zone of every time the hub shows (pages, commands) and of `hub sync pull --window` (an IANA name).",
        _timezone,
        "Asia/Shanghai",
    )
    outbox_resend_after: int = setting(
        "Seconds after which the sweeper re-sends an outbox row the broker never took.",
        _positive_int,
        "30",
    )
    media_max_duration: int = setting("Longest video or audio accepted, in seconds.", _positive_int, str(4 * 3600))
    media_max_width: int = setting("Widest video or image accepted, in pixels.", _positive_int, "4096")
    media_max_height: int = setting("Tallest video or image accepted, in pixels.", _positive_int, "4096")
    media_max_streams: int = setting("Most streams a media file may have.", _positive_int, "8")
    media_max_image_pixels: int = setting(
        "Most pixels an image may declare (stops image bombs before decoding).", _positive_int, "50000000"
    )
    media_timeout: int = setting(
        "Seconds a probe, poster, image or document may run; transcodes add 3 s per media second.",
        _positive_int,
        "600",
    )
    media_lease: int = setting(
        "Seconds a transcode may go without progress before another worker takes it over.", _positive_int, "300"
    )
    media_max_job_time: int = setting(
        "Most seconds any one decoder run may take, whatever length the file claims.", _positive_int, str(3 * 3600)
    )
    decoder_sandbox: str = setting(
        "How decoders (ffmpeg, qpdf, Ghostscript) are confined: bwrap (bubblewrap namespaces + limits) or "
        "none (limits only; for hosts without user namespaces).",
        _choice("bwrap", "none"),
        "bwrap",
    )
    decoder_memory_mb: int = setting("Address space a decoder process may use, in MB.", _positive_int, "3072")
    decoder_max_file_mb: int = setting("Largest file a decoder may write, in MB.", _positive_int, "4096")
    decoder_processes: int = setting("Processes and threads a decoder may run.", _positive_int, "64")
    work_dir: Path = setting(
        "Directory of the media workers' job directories (one per task, removed after it).", _path, "{data_dir}/work"
    )
    download_offload: str = setting(
        "Who sends local blob bytes: none (the hub), x-accel-redirect (nginx) or x-sendfile (Apache, lighttpd).",
        _choice("none", "x-accel-redirect", "x-sendfile"),
        "none",
    )
    download_offload_prefix: str = setting(
        "With x-accel-redirect: the internal nginx location that maps to HUB_STORAGE_DIR.", str, "/_blobs/"
    )
    upstream_url: str = setting(
        "Upstream hub this school server mirrors (mirror mode); empty: not a mirror.", _optional_url, ""
    )
    upstream_public_key: str = setting(
        "The upstream's Ed25519 public key, as `hub keys generate` printed it there; needed with HUB_UPSTREAM_URL.",
        _public_key,
        "",
    )
    upstream_token: str = setting(
        "Sync token of this school's user on the upstream (`hub token create EMAIL --kind sync` there), "
        "for `hub sync`.",
        str,
        "",
    )
    sync_signing_key: Path = setting(
        "Ed25519 private key that signs this hub's sync manifests (`hub keys generate`).",
        _path,
        "{data_dir}/sync_signing_key.pem",
    )
    sync_manifest_lifetime: int = setting(
        "Seconds a signed manifest stays valid; a school server refuses it afterwards.",
        _positive_int,
        str(14 * 24 * 3600),
    )
    sync_dir: Path = setting(
        "Directory of partial sync downloads (resumed on the next pull), the upstream's catalog as last fetched "
        "and the log of a pull started from the content page.",
        _path,
        "{data_dir}/sync",
    )
    sync_storage_budget: int = setting(
        "Most bytes mirrored blobs may occupy on a school server; 0: no limit but the disk.", _non_negative_int, "0"
    )
    sync_disk_reserve: int = setting(
        "Bytes `hub sync pull` always leaves free on the storage disk.", _non_negative_int, str(512 * 1024**2)
    )
    sync_parallel: int = setting("Blob downloads `hub sync pull` runs at once.", _positive_int, "4")
    sync_weeks_ahead: int = setting(
        "Teaching weeks after the current one whose lessons `hub sync pull` fetches before any other, for "
        "textbooks with a term calendar (`hub sync calendar`); 0: this week's only.",
        _non_negative_int,
        "2",
    )
    sync_video_profiles: str = setting(
        "Video rendition profiles a school server mirrors, in preference order (one per video).",
        str,
        "video-360p,video-240p",
    )
    sync_report_max_rows: int = setting(
        "Most rows (blob and day) one download-count report from a school server may carry (413 beyond; "
        "school servers split theirs); at most 100000.",
        _between(1, 100_000),
        "1000",
    )
    sync_daily_downloads: int = setting(
        "Most downloads of one blob on one day that a school server's reports may add for its school; "
        "the excess is ignored; at most 1000000.",
        _between(1, 1_000_000),
        "5000",
    )
    sync_report_max_age_days: int = setting(
        "Oldest day a download-count report may add to, in days before today; older rows are ignored.",
        _positive_int,
        "366",
    )
    silent_days: int = setting(
        "Days without contact after which the upstream's list of school servers marks one as silent.",
        _positive_int,
        "7",
    )
    mdns: str = setting(
        "Announce `hub serve` on the LAN with mDNS/DNS-SD (http://NAME.local/): auto (on in mirror mode, off "
        "on an upstream), on or off.",
        _choice("auto", "on", "off"),
        "auto",
    )
    mdns_name: str = setting(
        "Host name announced on the LAN, without .local (letters, digits, hyphens); empty: from the school's "
        "name (`hub sync init` writes it).",
        _mdns_name,
        "",
    )
    review_required: bool = setting(
        "Whether a reviewer of the school's region must approve a course before it is published: on, an "
        "uploader's publish submits it for review; off, it publishes at once (every change is logged either way).",
        _flag,
        "off",
    )
    reach_mask_below: int = setting(
        'Usage counts from 1 up to this number minus one are shown as "< N" on the reach dashboard, its CSV and '
        "API, except in a school's own rows: a small count could point at a person.",
        _between(1, 1000),
        "5",
    )
    reach_rollup_every: int = setting(
        "Seconds between the reach roll-up's safety runs (the worker's beat), which re-roll any recent day whose "
        "raw counts changed without being marked.",
        _positive_int,
        "3600",
    )
    reach_check_days: int = setting(
        "Days back the reach roll-up's safety run compares raw counts with the roll-ups; older changes are rolled "
        "up when marked by the report that made them, or by `hub reach rollup --all`.",
        _positive_int,
        "62",
    )
    log_level: str = setting("Log level.", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Read settings from the environment, with ``overrides`` (``HUB_*`` keys) on top.

        Below the environment: ``HUB_DATA_DIR/hub.conf`` (see the module docstring).
        """
        source: dict[str, Any] = {k: v for k, v in os.environ.items() if k.startswith("HUB_")}
        source.update(overrides or {})
        known = {f"HUB_{f.name.upper()}" for f in fields(cls)}
        unknown = sorted(k for k in (overrides or {}) if k not in known)
        if unknown:
            raise ConfigError(N_("unknown setting %(name)s"), name=unknown[0])
        values: dict[str, Any] = {}
        data_dir = None
        stored: dict[str, str] = {}
        for f in fields(cls):  # data_dir is first, so later defaults can name it
            name = f"HUB_{f.name.upper()}"
            raw = source.get(name)
            if (raw is None or raw == "") and name in stored:
                raw = stored[name]
            if raw is None or raw == "":
                default = f.metadata["default"]
                if default is None:
                    values[f.name] = None
                    continue
                raw = default.format(data_dir=data_dir)
            if not isinstance(raw, str):
                raw = str(raw)
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(
                    N_("%(name)s=%(raw)s: %(problem)s"), name=name, raw=repr(raw), problem=_problem(exc)
                ) from None
            if f.name == "data_dir":
                data_dir = values[f.name]
                stored = read_settings_file(data_dir, known)
        if values["storage"] == "s3" and not values["s3_bucket"]:
            raise ConfigError(N_("HUB_S3_BUCKET must be set when HUB_STORAGE=s3"))
        if values["upstream_url"] and not values["upstream_public_key"]:
            raise ConfigError(N_("HUB_UPSTREAM_PUBLIC_KEY must be set when HUB_UPSTREAM_URL is (mirror mode)"))
        if values["secret_key"] is None:
            values["secret_key"] = _stored_secret(values["data_dir"])
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(name, default, doc) for every setting: the README's configuration table."""
        return [
            (f"HUB_{f.name.upper()}", _shown_default(f.metadata["default"]), f.metadata["doc"]) for f in fields(cls)
        ]


SETTINGS_FILE = "hub.conf"
"""The instance's own settings, in HUB_DATA_DIR: below the environment, above the defaults."""


def settings_file(data_dir: Path) -> Path:
    return data_dir / SETTINGS_FILE


def read_settings_file(data_dir: Path, known: set[str] | None = None) -> dict[str, str]:
    """The ``HUB_X=value`` lines of ``HUB_DATA_DIR/hub.conf`` ({} when there is none).

    Blank lines and ``#`` comments are skipped; an unknown name, or HUB_DATA_DIR
    itself (the file lives in it), stops start-up naming the file and the line.
    """
    path = settings_file(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(N_("%(path)s: cannot be read (%(error)s)"), path=str(path), error=exc.strerror) from None
    known = known if known is not None else {f"HUB_{f.name.upper()}" for f in fields(Settings)}
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or name not in known or name == "HUB_DATA_DIR":
            raise ConfigError(
                N_("%(path)s, line %(number)s: not a HUB_X=value line of a known setting: %(line)s"),
                path=str(path),
                number=number,
                line=repr(line[:60]),
            )
        found[name] = value.strip()
    return found


def write_settings_file(data_dir: Path, values: Mapping[str, str], header: str = "") -> Path:
    """Set ``values`` in ``HUB_DATA_DIR/hub.conf``, keeping its other lines; atomic, readable by the owner only.

    0600 because it may hold a sync token. Written whole to a temporary file and
    renamed: a crash leaves the old file or the new one, never half of either.
    """
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise ConfigError(N_("%(name)s: a setting's value is one line"), name=name)
    path = settings_file(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else [header] if header else []
    todo = dict(values)
    kept: list[str] = []
    for line in lines:
        name = line.partition("=")[0].strip()
        if name in todo:
            kept.append(f"{name}={todo.pop(name)}")
        else:
            kept.append(line)
    kept.extend(f"{name}={value}" for name, value in todo.items())
    tmp = path.with_name(f"{SETTINGS_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(kept) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path


def _shown_default(default: str | None) -> str:
    if default is None:
        return "(generated)"
    return default or "(empty)"


def _stored_secret(data_dir: Path) -> str:
    """Generate the secret once and keep it, so sessions survive restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"secret_key.{os.getpid()}.tmp")
        # 0600: the key signs every session cookie.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        # Two processes starting together: the first link wins, both read it.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
