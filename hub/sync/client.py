"""``hub sync pull``: bring a school server up to date with its upstream.

One run:

1. fetch the change feed since the stored cursor and the signed manifest (gzip;
   a 304 when the version held is still current); refuse an unsigned, wrongly
   signed, older or expired manifest (nothing changes);
2. plan: the courses whose revision changed, and of their blobs the ones not in
   storage (content addressing makes this a set difference); drop the courses
   the manifest no longer lists and the blobs nobody else uses (first, so the
   room they leave counts); keep the courses that fit the storage budget, all
   or nothing per course;
3. download the missing blobs in parallel over keep-alive connections: small
   ones many per request (``POST /api/v1/sync/blobs``), large ones one by one,
   each into a partial file resumed with ``Range`` + ``If-Range`` after a cut
   or a killed process, each verified against its sha256 before it is stored;
4. apply each course whose blobs are all present, a few courses per
   transaction, and drop the blobs the new versions no longer use;
5. send the school's aggregated download counts upstream.

A bandwidth cap, a time window (the run stops starting work and keeps its
partial files when the window closes) and a storage budget bound a run; every
run leaves a row in the run log (``sync_run``) that the status command and the
admin page read, updated as it goes.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import logging
import shutil
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from datetime import time as clock
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from sqlalchemy import select

from hub.config import Settings
from hub.db import Database, get_database, utcnow
from hub.errors import HubError, Text
from hub.i18n import N_
from hub.locks import LockBusy, file_lock
from hub.media import services as media_services
from hub.media.downloads import MIRROR_HEADER
from hub.media.storage import Storage
from hub.media.storage.local import LocalStorage
from hub.sync import calendar, counts, network, servers, services, wording
from hub.sync import manifest as mf
from hub.sync.models import MirrorCourse, SyncRun
from hub.uploads.terminal import _

log = logging.getLogger(__name__)

SMALL_BLOB = 256 * 1024
"""Blobs up to this size travel many per request: their round trip would cost more than their bytes."""
BATCH_BYTES = 8 * 1024 * 1024
BATCH_BLOBS = 128
CHUNK = 64 * 1024
ATTEMPTS = 4
"""Tries per blob or batch; each retry resumes where the bytes stopped."""
TIMEOUT = 60.0
APPLY_GROUP = 25
"""Courses applied per transaction: bounds how long the database's writer lock is held."""


class SyncError(HubError):
    """A pull that could not finish: the message says why; the old state stays."""

    code = "sync_failed"


class UpstreamRefused(SyncError):
    """The upstream answered an error status (`answered`); `said` is its own message, in the language asked for."""

    def __init__(self, message: str, answered: int, said: str = "", **params: object) -> None:
        super().__init__(message, None, **params)
        self.answered = answered
        self.said = said


class Stopped(Exception):
    """The time window closed (or the run was interrupted): stop, keep the partial files."""


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A daily time window in the hub's local time (HUB_TIMEZONE), e.g. 22:00-06:00 (it may cross midnight).

    A school server's clock is often UTC (a VM image, a container): the night is the school's.
    """

    start: clock
    end: clock

    @classmethod
    def parse(cls, text: str) -> Window:
        try:
            first, second = text.split("-")
            start = datetime.strptime(first.strip(), "%H:%M").time()
            end = datetime.strptime(second.strip(), "%H:%M").time()
        except ValueError:
            raise ValueError(
                Text(N_("a window is HH:MM-HH:MM, e.g. 22:00-06:00, not %(text)s"), text=repr(text))
            ) from None
        if start == end:
            raise ValueError(Text(N_("a window needs different start and end times")))
        return cls(start, end)

    def contains(self, moment: clock) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def seconds_left(self, now: datetime) -> float:
        """Seconds from `now` (as a local wall-clock time) until the window closes; 0 outside it."""
        moment = now.time().replace(tzinfo=None)
        if not self.contains(moment):
            return 0.0
        now_s = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
        end_s = self.end.hour * 3600 + self.end.minute * 60
        return (end_s - now_s) % 86400 or 86400.0

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


_RATE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_rate(text: str) -> int:
    """Bytes per second from '500k', '2M', '1.5m' or '65536' (binary units, bytes not bits)."""
    value = text.strip().lower().removesuffix("/s").removesuffix("b")
    unit = value[-1:] if value[-1:] in ("k", "m", "g") else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise ValueError(
            Text(N_("a rate is bytes per second like 500k or 2M, not %(text)s"), text=repr(text))
        ) from None
    rate = int(number * _RATE_UNITS[unit])
    if rate < 1024:
        raise ValueError(Text(N_("a rate below 1k per second would never finish a video")))
    return rate


def parse_size(text: str) -> int:
    """Bytes from '300M', '1.5g', '64k' or '65536' (binary units)."""
    value = text.strip().lower().removesuffix("b")
    unit = value[-1:] if value[-1:] in ("k", "m", "g") else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise ValueError(Text(N_("a size is bytes like 300M or 2G, not %(text)s"), text=repr(text))) from None
    if number < 0:
        raise ValueError(Text(N_("a size cannot be negative")))
    return int(number * _RATE_UNITS[unit])


@dataclass(frozen=True)
class PullOptions:
    max_rate: int | None = None  # bytes per second over all downloads
    window: Window | None = None
    parallel: int = 4
    storage_budget: int = 0  # bytes mirrored blobs may occupy; 0: no limit but the disk
    disk_reserve: int = 512 * 1024**2
    report_counts: bool = True
    # Bytes this run may download; the rest waits for the next run (None: no cap).
    max_bytes: int | None = None
    # Teaching calendars: this week's lessons and those of the weeks ahead come first.
    weeks_ahead: int = 2
    today: date | None = None  # the school's date (HUB_TIMEZONE) when None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PullOptions:
        values: dict[str, Any] = {
            "parallel": settings.sync_parallel,
            "storage_budget": settings.sync_storage_budget,
            "disk_reserve": settings.sync_disk_reserve,
            "weeks_ahead": settings.sync_weeks_ahead,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# -- bandwidth and progress ------------------------------------------------------------


class RateLimiter:
    """A token bucket shared by every download thread: the cap holds for the sum of them."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._allowance = float(rate or 0)
        self._last = time.monotonic()

    def take(self, count: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            self._allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate)
            self._last = now
            self._allowance -= count
            wait = -self._allowance / self.rate if self._allowance < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


@dataclass
class Progress:
    """Counters the download threads add to; the printer and the run log read them."""

    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    transferred: int = 0  # bytes received this run (a resumed file counts only its new bytes)
    started: float = field(default_factory=time.monotonic)
    stored: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, count: int) -> None:
        with self._lock:
            self.transferred += count
            self.bytes_done += count

    def resumed(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count

    def file_done(self, sha256: str = "") -> None:
        """One more file stored (verified); `sha256` joins the set the apply step trusts."""
        with self._lock:
            self.files_done += 1
            if sha256:
                self.stored.add(sha256)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.transferred / elapsed
        left = max(self.bytes_total - self.bytes_done, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
        return _(
            "%(done)s / %(total)s, %(files_done)s/%(files_total)s files, %(rate)s/s, %(eta)s left",
            done=_size(self.bytes_done),
            total=_size(self.bytes_total),
            files_done=self.files_done,
            files_total=self.files_total,
            rate=_size(rate),
            eta=eta,
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Reporter:
    """Prints progress to the terminal and writes it to the run log, every `interval` seconds."""

    def __init__(self, progress: Progress, database: Database, run_id: int, out: IO[str], interval: float = 1.0):
        self.progress = progress
        self.database = database
        self.run_id = run_id
        self.out = out
        self._stop = threading.Event()
        self._tty = out.isatty()
        # A terminal gets a live line; a log file (cron) a line every few seconds, not a flood.
        self.interval = interval if self._tty else max(interval, 5.0)
        self._thread = threading.Thread(target=self._loop, name="sync-progress", daemon=True)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.tick(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self, final: bool = False) -> None:
        line = self.progress.line()
        if self._tty:
            self.out.write(f"\r{line}\033[K" + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()
        try:
            with self.database.session() as session:
                run = session.get(SyncRun, self.run_id)
                if run is not None:
                    _copy_progress(run, self.progress)
                    session.commit()
        except Exception as exc:  # noqa: BLE001 - a busy database must not stop a download
            log.debug("progress not written to the run log: %s", exc)


def _copy_progress(run: SyncRun, progress: Progress) -> None:
    run.files_total, run.files_done = progress.files_total, progress.files_done
    run.bytes_total, run.bytes_done = progress.bytes_total, progress.bytes_done
    run.bytes_transferred = progress.transferred


# -- HTTP ------------------------------------------------------------------------------


class Upstream:
    """The upstream hub over HTTP: one keep-alive connection per thread, bearer token on each request."""

    def __init__(self, base_url: str, token: str, timeout: float = TIMEOUT, language: str | None = None) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SyncError(N_("HUB_UPSTREAM_URL must be an http(s) URL, not %(url)s."), url=repr(base_url))
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path
        self.token = token
        self.timeout = timeout
        self.language = language
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout, blocksize=CHUNK)
            self._local.conn = conn
        return conn

    def reset(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        """Send a request on this thread's connection (reconnecting once if the server closed it)."""
        all_headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **(headers or {})}
        if self.language:  # the upstream's own messages (a refused subscription) in the reader's language
            all_headers.setdefault("Accept-Language", self.language)
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=body, headers=all_headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server had closed: one fresh try.
                self.reset()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        try:
            response = self.request(method, path, data)
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.reset()
            raise SyncError(
                N_("The upstream could not be reached: %(reason)s."), reason=network.reason(exc, f"{method} {path}")
            ) from None
        if response.status >= 400:
            said = _error_message(raw)
            raise UpstreamRefused(
                N_("The upstream refused %(request)s: %(reason)s."),
                response.status,
                said,
                request=f"{method} {path}",
                reason=network.answered(response.status, said),
            )
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise SyncError(N_("The upstream's answer to %(path)s is not JSON."), path=path) from None

    def manifest(self, known_version: int | None = None) -> bytes | None:
        """The signed manifest (index), or None when it is still `known_version` (HTTP 304)."""
        headers = {"Accept-Encoding": "gzip"}
        if known_version is not None:
            headers["If-None-Match"] = mf.manifest_etag(known_version)
        path = "/api/v1/sync/manifest" + WITH_EXTRAS
        status, raw = self.fetch("GET", path, None, headers, mf.MAX_ENVELOPE_BYTES)
        if status == 304 and known_version is not None:
            return None
        if status != 200:
            raise SyncError(
                N_("The upstream refused the manifest: %(reason)s."),
                reason=network.answered(status, _error_message(raw)),
            )
        return raw

    def entries(self, course_ids: list[int], since: datetime | None) -> dict[int, tuple[bytes, Any]]:
        """The upstream's answer for these course entries: per course id, its line and the line parsed."""
        body: dict[str, Any] = {"courses": course_ids}
        if since is not None:
            body["since"] = since.isoformat()
        headers = {"Accept-Encoding": "gzip", "Accept": "application/x-ndjson"}
        path = "/api/v1/sync/courses" + WITH_EXTRAS
        status, raw = self.fetch("POST", path, json.dumps(body).encode(), headers, MAX_ENTRIES_BYTES)
        if status != 200:
            raise SyncError(
                N_("The upstream refused the course entries: %(reason)s."),
                reason=network.answered(status, _error_message(raw)),
            )
        found: dict[int, tuple[bytes, Any]] = {}
        for line in raw.splitlines():
            try:
                data = json.loads(line)
                found[int(data["id"])] = (line, data)
            except (ValueError, KeyError, TypeError, RecursionError):
                raise SyncError(N_("The upstream's course entries are not JSON lines.")) from None
        return found

    def fetch(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], limit: int
    ) -> tuple[int, bytes]:
        """(status, body) of one request, gunzipped when the upstream compressed it, at most `limit` bytes."""
        try:
            response = self.request(method, path, body, headers=headers)
            raw = response.read(limit + 1)
            if response.length:  # more than any answer we take: do not leave it on the connection
                self.reset()
        except (OSError, http.client.HTTPException) as exc:
            self.reset()
            raise SyncError(
                N_("The upstream could not be reached: %(reason)s."), reason=network.reason(exc, f"{method} {path}")
            ) from None
        if len(raw) > limit:
            raise SyncError(N_("The upstream's answer to %(path)s is larger than any this hub accepts."), path=path)
        if (response.getheader("Content-Encoding") or "").lower() == "gzip":
            raw = gunzip_bounded(raw, limit)
        return response.status, raw


WITH_EXTRAS = "?with=" + ",".join(mf.EXTRAS)
"""What this release reads beyond the base entry format: subtitle tracks, chapters and textbook alignments
(hub.sync.manifest.EXTRAS).
The index and the entries must be asked for alike, or the entries would not match the signed revisions."""

MAX_ENTRIES_BYTES = 512 * 1024 * 1024
"""One answer of course entries at most, once decompressed (500 courses are some 15 MB)."""


def _fresh_enough(manifest: mf.Index) -> bool:
    lifetime = manifest.expires_at - manifest.issued_at
    return manifest.expires_at - utcnow() > lifetime / 2


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress gzip bytes, refusing more than `limit` bytes out (a gzip bomb stops there)."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise SyncError(N_("The upstream's compressed answer is damaged."), detail=f"zlib: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise SyncError(N_("The upstream's answer decompresses to more than any this hub accepts."))
    return out


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode(errors="replace")


@dataclass
class Transfer:
    """What the download threads share: where partial files go, the cap, the counters, the stop flag."""

    upstream: Upstream
    storage: Storage
    partial_dir: Path
    limiter: RateLimiter
    progress: Progress
    deadline: float | None = None  # time.monotonic() at which the window closes
    stop: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop.set()
            raise Stopped("the time window closed")

    def read_into(self, response: http.client.HTTPResponse, out: IO[bytes], length: int, digest: Any = None) -> None:
        remaining = length
        chunk_size = CHUNK if not self.limiter.rate else max(4096, min(CHUNK, self.limiter.rate // 8))
        while remaining > 0:
            self.check()
            chunk = response.read(min(chunk_size, remaining))
            if not chunk:
                raise http.client.IncompleteRead(b"", remaining)
            self.limiter.take(len(chunk))
            out.write(chunk)
            if digest is not None:
                digest.update(chunk)
            remaining -= len(chunk)
            self.progress.received(len(chunk))


def fetch_blob(transfer: Transfer, file: mf.ManifestFile) -> None:
    """Download one blob into its partial file, resuming what arrived before; verify; store."""
    partial = transfer.partial_dir / f"{file.sha256}.part"
    for attempt in range(1, ATTEMPTS + 1):
        transfer.check()
        try:
            _fetch_into(transfer, file, partial)
            break
        except (OSError, http.client.HTTPException) as exc:
            transfer.upstream.reset()
            if attempt == ATTEMPTS:
                raise SyncError(
                    N_("Could not download %(file)s after %(tries)d tries: %(reason)s."),
                    file=f"{file.sha256[:12]}…",
                    tries=ATTEMPTS,
                    reason=network.reason(exc, f"GET {file.sha256[:12]}…"),
                ) from None
            time.sleep(min(0.2 * 2**attempt, 5))
    try:
        with partial.open("rb") as f:
            services.store_verified(transfer.storage, f, file)
    finally:
        partial.unlink(missing_ok=True)
    transfer.progress.file_done(file.sha256)


def _fetch_into(transfer: Transfer, file: mf.ManifestFile, partial: Path) -> None:
    digest = hashlib.sha256()
    have = partial.stat().st_size if partial.exists() else 0
    if have > file.size:
        partial.unlink()
        have = 0
    if have:
        with partial.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                digest.update(chunk)
        transfer.progress.resumed(have)
    if have == file.size:
        _check_digest(digest, file, partial)
        return
    headers = {"Accept": "*/*", MIRROR_HEADER: "1"}
    if have:
        # If-Range: should the bytes behind the name ever differ, the server sends them whole.
        headers.update({"Range": f"bytes={have}-", "If-Range": f'"{file.sha256}"'})
    response = transfer.upstream.request("GET", f"/api/v1/blobs/{file.sha256}", headers=headers)
    if response.status in (301, 302, 303, 307, 308):
        response.read()
        response = _follow(response.getheader("Location") or "", headers)
    if response.status == 200 and have:
        transfer.progress.resumed(-have)
        have = 0
        digest = hashlib.sha256()
    elif response.status == 206:
        content_range = response.getheader("Content-Range") or ""
        if not content_range.startswith(f"bytes {have}-"):
            response.read()
            partial.unlink(missing_ok=True)
            raise http.client.HTTPException(f"unexpected Content-Range {content_range!r}")
    elif response.status == 416:
        response.read()
        partial.unlink(missing_ok=True)
        transfer.progress.resumed(-have)
        raise http.client.HTTPException("the upstream does not have the bytes resumed from; starting over")
    elif response.status != 200:
        raw = response.read()
        raise SyncError(
            N_("The upstream could not send %(file)s: %(reason)s."),
            file=f"{file.sha256[:12]}…",
            reason=network.answered(response.status, _error_message(raw)),
        )
    length = int(response.getheader("Content-Length") or file.size - have)
    if have + length != file.size:
        response.read()
        raise SyncError(
            N_("The upstream's %(file)s is %(size)d bytes, the manifest says %(expected)d."),
            file=f"{file.sha256[:12]}…",
            size=have + length,
            expected=file.size,
        )
    transfer.partial_dir.mkdir(parents=True, exist_ok=True)
    with partial.open("ab" if have else "wb") as out:
        transfer.read_into(response, out, length, digest)
    _check_digest(digest, file, partial)


def _follow(location: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """A redirect to object storage (presigned S3 URL): no bearer token goes there."""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise http.client.HTTPException(f"cannot follow redirect to {location!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=TIMEOUT, blocksize=CHUNK)
    conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
    return conn.getresponse()


def _check_digest(digest: Any, file: mf.ManifestFile, partial: Path) -> None:
    if digest.hexdigest() != file.sha256:
        partial.unlink(missing_ok=True)
        raise services.BlobMismatch(
            N_("The bytes received for %(file)s do not match their hash: refused, nothing kept."),
            file=f"{file.sha256[:12]}…",
        )


def fetch_batch(transfer: Transfer, files: list[mf.ManifestFile]) -> None:
    """Download small blobs in one request; retry the ones a cut connection did not deliver."""
    remaining = list(files)
    for attempt in range(1, ATTEMPTS + 1):
        transfer.check()
        try:
            remaining = _fetch_batch_once(transfer, remaining)
            if not remaining:
                return
        except (OSError, http.client.HTTPException) as exc:
            transfer.upstream.reset()
            if attempt == ATTEMPTS:
                raise SyncError(
                    N_("Could not download %(files)d small files after %(tries)d tries: %(reason)s."),
                    files=len(remaining),
                    tries=ATTEMPTS,
                    reason=network.reason(exc, "POST /api/v1/sync/blobs"),
                ) from None
            time.sleep(min(0.2 * 2**attempt, 5))
    if remaining:
        raise SyncError(N_("The upstream did not send %(files)d of the files asked for."), files=len(remaining))


def _fetch_batch_once(transfer: Transfer, files: list[mf.ManifestFile]) -> list[mf.ManifestFile]:
    body = json.dumps({"sha256": [f.sha256 for f in files]}).encode()
    response = transfer.upstream.request("POST", "/api/v1/sync/blobs", body=body, headers={"Accept": "*/*"})
    if response.status != 200:
        raw = response.read()
        raise SyncError(
            N_("The upstream refused a batch of %(files)d files: %(reason)s."),
            files=len(files),
            reason=network.answered(response.status, _error_message(raw)),
        )
    wanted = {f.sha256: f for f in files}
    remaining = dict(wanted)
    stored: list[str] = []
    mismatch: services.BlobMismatch | None = None
    # One durability barrier for the whole batch instead of two fsyncs per small blob
    # (a file and its directory): the batch publishes what it holds when it exits.
    batch_context = transfer.storage.batch()
    batch = batch_context.__enter__()
    try:
        for _file in range(len(files)):
            header = response.readline(200)
            if not header:
                break
            try:
                sha, size_text = header.decode().split()
                size = int(size_text)
            except ValueError:
                raise http.client.HTTPException(f"bad batch header {header[:80]!r}") from None
            file = wanted.get(sha)
            if file is None or size != file.size:
                raise SyncError(
                    N_("The upstream sent %(file)s (%(size)d bytes), which was not asked for."),
                    file=f"{sha[:12]}…",
                    size=size,
                )
            buffer = io.BytesIO()
            transfer.read_into(response, buffer, size)
            buffer.seek(0)
            # Stored by this thread, hashed once on the way: handing small blobs to a pool
            # of store threads cost more in thread switches than it overlapped (2 cores).
            try:
                services.add_verified(batch, buffer, file)
                stored.append(sha)
            except services.BlobMismatch as exc:
                mismatch = mismatch or exc  # read on: the connection stays usable for the next batch
            remaining.pop(sha, None)
        response.read()
    finally:
        # Whatever happens to the connection, what arrived is stored before a retry asks again.
        batch_context.__exit__(None, None, None)  # durable, then visible under their names
        for sha in stored:
            transfer.progress.file_done(sha)
    if mismatch is not None:
        raise mismatch
    return list(remaining.values())


def download(
    transfer: Transfer, missing: dict[str, mf.ManifestFile], parallel: int, *, in_order: bool = False
) -> dict[str, Text]:
    """Fetch every missing blob; returns the failures (sha256 → reason). Raises Stopped when the window closed.

    Without `in_order`, large files start first (the longest downloads overlap the most);
    with it, files start in the order `missing` gives (the teaching calendar's), small
    ones batched where the first of their batch stands.
    """
    files = list(missing.values())
    if not in_order:
        files = sorted((f for f in files if f.size > SMALL_BLOB), key=lambda f: -f.size) + sorted(
            (f for f in files if f.size <= SMALL_BLOB), key=lambda f: f.sha256
        )
    jobs: list[tuple[functools.partial[None], list[str]]] = []
    current: list[mf.ManifestFile] = []
    current_bytes = 0
    for file in files:
        if file.size > SMALL_BLOB:
            jobs.append((functools.partial(fetch_blob, transfer, file), [file.sha256]))
            continue
        if current and (len(current) >= BATCH_BLOBS or current_bytes + file.size > BATCH_BYTES):
            current, current_bytes = [], 0
        if not current:
            # The batch's job takes its place now; the list it fetches fills as files join it.
            jobs.append((functools.partial(fetch_batch, transfer, current), []))
        current.append(file)
        current_bytes += file.size
    jobs = [(job, shas or [f.sha256 for f in job.args[1]]) for job, shas in jobs]
    failures: dict[str, Text] = {}
    stopped = False
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="sync-fetch") as pool:
        futures = {pool.submit(job): shas for job, shas in jobs}
        try:
            for future in as_completed(futures):
                try:
                    future.result()
                except Stopped:
                    stopped = True
                except HubError as exc:
                    for sha in futures[future]:
                        failures[sha] = wording.from_error(exc)
        except BaseException:
            transfer.stop.set()  # Ctrl-C: let the threads finish their current chunk and go
            raise
    if stopped:
        raise Stopped("the time window closed")
    return failures


# -- the run ---------------------------------------------------------------------------


@dataclass
class PullReport:
    status: str  # ok | partial | refused | failed | outside-window | busy
    message: str
    manifest_version: int | None = None
    courses_applied: int = 0
    courses_removed: int = 0
    courses_unchanged: int = 0
    files: int = 0
    bytes_transferred: int = 0
    skipped: list[str] = field(default_factory=list)
    run_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "partial", "outside-window", "busy")


def storage_room(session: Any, storage: Storage, options: PullOptions) -> int | None:
    """Bytes this run may add to storage (None: no limit known), from the budget and the free disk."""
    limits: list[int] = []
    if options.storage_budget:
        limits.append(options.storage_budget - services.mirrored_bytes(session))
    if isinstance(storage, LocalStorage):
        storage.root.mkdir(parents=True, exist_ok=True)
        limits.append(shutil.disk_usage(storage.root).free - options.disk_reserve)
    return max(min(limits), 0) if limits else None


def pull(
    app: Flask,
    options: PullOptions,
    *,
    out: IO[str] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> PullReport:
    """One `hub sync pull`: see the module docstring. Never raises for a refused manifest; reports it.

    The window is read in HUB_TIMEZONE whatever the operating system's zone; a naive
    `now` is taken as already local.
    """
    settings: Settings = app.extensions["hub.settings"]
    if not settings.upstream_url:
        raise SyncError(N_("This hub is not a mirror: set HUB_UPSTREAM_URL and HUB_UPSTREAM_PUBLIC_KEY."))
    if not settings.upstream_token:
        raise SyncError(
            N_(
                "Set HUB_UPSTREAM_TOKEN to a sync token of this school's user on the upstream "
                "(`hub token create EMAIL --kind sync` there)."
            )
        )
    public_key = mf.load_public_key(settings.upstream_public_key)
    out = out or sys.stderr
    deadline = None
    if options.window is not None:
        moment = now()
        local = moment.astimezone(local_zone(settings)) if moment.tzinfo is not None else moment
        left = options.window.seconds_left(local)
        if left <= 0:
            return PullReport(
                "outside-window",
                Text(
                    N_("Outside the sync window %(window)s (%(zone)s): it is %(time)s there; nothing done."),
                    window=str(options.window),
                    zone=settings.timezone,
                    time=f"{local:%H:%M}",
                ),
            )
        print(
            _(
                "sync window %(window)s (%(zone)s): it is %(time)s, it closes in %(left)s",
                window=str(options.window),
                zone=settings.timezone,
                time=f"{local:%H:%M}",
                left=_duration(left),
            ),
            file=out,
        )
        deadline = time.monotonic() + left
    upstream = Upstream(settings.upstream_url, settings.upstream_token)
    try:
        # One sync at a time: two would append to the same partial files. cron may start
        # the next run while a long one is still going; that one simply says so.
        with file_lock(sync_lock_path(settings)):
            report = _run(app, upstream, public_key, options, out, deadline, source="pull")
            # Whatever the run's outcome, the upstream's admins learn the state it left.
            note = servers.report_quietly(app, upstream, "pull")
            if note:
                print(note, file=out)
            return report
    except LockBusy:
        return PullReport("busy", Text(N_("Another `hub sync pull` or `hub bundle import` is running; nothing done.")))


def local_zone(settings: Settings) -> tzinfo:
    """HUB_TIMEZONE: what a school calls night, and the times the CLI prints."""
    return ZoneInfo(settings.timezone)


INDEX_WAIT = 60.0
"""Seconds a pull waits for another writer of the search index (a rebuild, a worker) before leaving it."""


def sync_lock_path(settings: Settings) -> Path:
    return settings.sync_dir / "sync.lock"


def _run(
    app: Flask,
    upstream: Upstream,
    public_key: Ed25519PublicKey,
    options: PullOptions,
    out: IO[str],
    deadline: float | None,
    source: str,
) -> PullReport:
    database = get_database(app)
    with database.session() as session:
        services.close_abandoned_runs(session)
        run = services.start_run(session, source)
        session.commit()
        run_id = run.id

    report = PullReport("failed", "", run_id=run_id)
    try:
        with database.session() as session:
            state = services.mirror_state(session)
            since, held = state.cursor, (state.manifest_version if state.envelope else None)
            session.commit()
        changes = _feed_count(upstream, since)
        # "Has it changed?": an unchanged catalog costs a 304, not the whole manifest, on
        # every cron run. The copy held is used only while it has half its life left;
        # after that a freshly signed one is fetched, so it never expires in use.
        envelope = upstream.manifest(held)
        known = None
        if envelope is None:
            with database.session() as session:
                stored = services.stored_manifest(session, public_key)
            if stored is not None and _fresh_enough(stored[0]):
                known = stored[0]
            else:
                envelope = upstream.manifest(None)
        if envelope is None:
            assert known is not None
            index = known
        else:
            index = _accept(database, envelope, public_key)
        report.manifest_version = index.version
        out.write(
            _(
                "manifest version %(version)s: %(courses)s courses; "
                "%(changes)s catalog changes upstream since the last pull",
                version=index.version,
                courses=len(index.courses),
                changes=changes,
            )
            + "\n"
        )
        manifest, unfetched = fetch_entries(upstream, database, index, out)
        if unfetched:
            # A course edited upstream after the index was signed no longer hashes to it. A
            # newer index lists its new revision: one more try with that one. An entry altered
            # on the way meets the same index (a 304) and stays refused.
            newer = upstream.manifest(index.version)
            if newer is not None:
                index = _accept(database, newer, public_key)
                report.manifest_version = index.version
                out.write(
                    _("the catalog changed during this pull; manifest version %(version)s", version=index.version)
                    + "\n"
                )
                manifest, unfetched = fetch_entries(upstream, database, index, out, fetched=manifest)
        _fetch_calendar_books(database, app.extensions["hub.settings"].upstream_url, out)
        if options.report_counts:
            # Before applying: a replaced rendition's blob, and its local counts, go away then.
            counts_note = send_counts(database, upstream)
            if counts_note:
                out.write(counts_note + "\n")
        report = apply_manifest(
            app, manifest, options, out, run_id=run_id, fetcher=upstream, deadline=deadline, unfetched=unfetched
        )
        return report
    except mf.ManifestRefused as exc:
        report.status, report.message = "refused", wording.from_error(exc)  # the old state stays
        return report
    except SyncError as exc:
        report.status, report.message = "failed", wording.from_error(exc)
        return report
    except KeyboardInterrupt:
        report.status, report.message = "failed", Text(N_("interrupted"))
        raise
    finally:
        with database.session() as session:
            logged = session.get(SyncRun, run_id)
            if logged is not None:
                logged.manifest_version = report.manifest_version
                logged.courses_applied, logged.courses_removed = report.courses_applied, report.courses_removed
                logged.bytes_transferred = max(logged.bytes_transferred, report.bytes_transferred)
                services.finish_run(session, logged, report.status, report.message, report.skipped)
                session.commit()


def _fetch_calendar_books(database: Database, upstream_url: str, out: IO[str]) -> None:
    """The textbooks of this server's teaching calendars that are not here yet, before the order is decided.

    Never fatal: without its book a calendar orders nothing (or only by the weeks set here).
    """
    with database.session() as session:
        keys = calendar.books_missing(session)
        if not keys:
            return
        try:
            brought = calendar.fetch_books(session, upstream_url, keys)
            session.commit()
        except HubError as exc:
            reason = wording.render(wording.from_error(exc), _)
            out.write(_("textbooks of the teaching calendars not fetched (%(reason)s)", reason=reason) + "\n")
            return
    if brought:
        out.write(_("textbooks of the teaching calendars fetched: %(books)s", books=_(", ").join(brought)) + "\n")


def _accept(database: Database, envelope: bytes, public_key: Ed25519PublicKey) -> mf.Index:
    """Verify a signed manifest and keep it as the one seen (ManifestRefused: nothing kept)."""
    with database.session() as session:
        index = services.accept_manifest(session, envelope, public_key)
        session.commit()
        return index


def _feed_count(upstream: Upstream, since: int) -> int:
    """Changes since the cursor (informational: the manifest, not the feed, decides what to fetch)."""
    data = upstream.json("GET", "/api/v1/sync/feed?" + urlencode({"since": since, "limit": 1}))
    return int(data.get("pending", 0)) if isinstance(data, dict) else 0


def fetch_entries(
    upstream: Upstream, database: Database, index: mf.Index, out: IO[str], *, fetched: mf.Manifest | None = None
) -> tuple[mf.Manifest, list[str]]:
    """The entries of the courses whose revision this school server lacks, each checked against `index`.

    A course held at an older revision is asked for as a patch (the lessons
    changed since the manifest it came with), merged into the entry held and
    checked like a whole one; a patch that does not give the signed revision
    (a write the upstream's stamps missed) is asked for again whole. Entries in
    `fetched` (an earlier try of this pull) are kept where `index` lists the same
    revision. Returns the manifest and, human-readable, the courses whose entry
    could not be had.
    """
    courses: dict[int, mf.ManifestCourse] = {}
    bodies: dict[int, bytes] = {}
    earlier = {c.id: c for c in fetched.courses} if fetched is not None else {}
    with database.session() as session:
        need = []
        for listed in services.entries_needed(session, index):
            kept = earlier.get(listed.id)
            if kept is not None and kept.revision == listed.revision:
                assert fetched is not None
                courses[listed.id], bodies[listed.id] = kept, fetched.bodies[listed.id]
            else:
                need.append(listed)
        held = services.held_entries(session, [c.id for c in need])
    unfetched: list[str] = []
    whole: list[mf.IndexCourse] = []
    by_since: dict[datetime | None, list[mf.IndexCourse]] = {}
    for listed in need:
        by_since.setdefault(held[listed.id][1] if listed.id in held else None, []).append(listed)
    patched = 0
    for since, group in by_since.items():
        for start in range(0, len(group), services.MAX_ENTRIES):
            chunk = group[start : start + services.MAX_ENTRIES]
            answers = upstream.entries([c.id for c in chunk], since)
            for listed in chunk:
                answer = answers.get(listed.id)
                try:
                    found = _entry(answer, listed, held.get(listed.id, (b"", None))[0])
                except mf.ManifestRefused as exc:
                    if since is None:
                        unfetched.append(_unfetched(listed.id, wording.from_error(exc)))
                        continue
                    found = None
                if found is None:
                    whole.append(listed)
                    continue
                bodies[listed.id], courses[listed.id] = found
                patched += since is not None
    for start in range(0, len(whole), services.MAX_ENTRIES):
        chunk = whole[start : start + services.MAX_ENTRIES]
        answers = upstream.entries([c.id for c in chunk], None)
        for listed in chunk:
            try:
                found = _entry(answers.get(listed.id), listed, b"")
            except mf.ManifestRefused as exc:
                unfetched.append(_unfetched(listed.id, wording.from_error(exc)))
                continue
            if found is None:
                unfetched.append(
                    _unfetched(listed.id, Text(N_("the upstream sent a patch where the whole entry was asked for")))
                )
                continue
            bodies[listed.id], courses[listed.id] = found
    if need:
        out.write(
            _(
                "%(entries)s course entries fetched (%(patched)s as changes to the entry held)",
                entries=len(courses),
                patched=patched,
            )
            + "\n"
        )
    ordered = [courses[c.id] for c in index.courses if c.id in courses]
    return mf.Manifest(index=index, courses=ordered, bodies=bodies), unfetched


def _unfetched(course_id: int, reason: Text) -> Text:
    """A skip line for a course whose entry could not be had (both parts translated where shown)."""
    return Text(N_("course %(id)s: %(reason)s"), id=course_id, reason=reason)


_ENTRY_PREFIX = b'{"entry":'


def _entry(
    answer: tuple[bytes, Any] | None, listed: mf.IndexCourse, held: bytes
) -> tuple[bytes, mf.ManifestCourse] | None:
    """(canonical bytes, entry) from one answer line; None when a patch does not fit what is held."""
    if answer is None:
        raise mf.ManifestRefused(N_("the upstream did not send its entry (withdrawn or changed meanwhile); next pull"))
    line, data = answer
    if isinstance(data, dict) and "entry" in data and line.startswith(_ENTRY_PREFIX):
        # The entry's bytes as the upstream hashed them: no need to encode them again.
        body = line[len(_ENTRY_PREFIX) : line.rindex(b',"id":')]
        return body, mf.entry_from_bytes(body, listed, data["entry"])
    merged = mf.merge_patch(held, data.get("patch") if isinstance(data, dict) else None)
    if merged is None:
        return None
    body = mf.canonical_json(merged)
    return body, mf.entry_from_bytes(body, listed, merged)


def apply_manifest(
    app: Flask,
    manifest: mf.Manifest,
    options: PullOptions,
    out: IO[str],
    *,
    run_id: int,
    fetcher: Upstream | None,
    deadline: float | None = None,
    store_missing: Callable[[dict[str, mf.ManifestFile], Progress], dict[str, Text]] | None = None,
    unfetched: Sequence[str] = (),
) -> PullReport:
    """Plan, fetch what is missing (from `fetcher`, or with `store_missing` for a bundle), apply, tidy up.

    `unfetched` names the courses whose entries could not be had: skipped, so the run is partial.
    """
    database = get_database(app)
    storage: Storage = app.extensions["hub.storage"]
    settings: Settings = app.extensions["hub.settings"]
    report = PullReport("ok", "", manifest_version=manifest.version, run_id=run_id)
    # The course titles of this run, for the admin page while it goes and after.
    titles: dict[str, list[str]] = {"planned": [], "applied": [], "removed": [], "skipped": []}
    with database.session() as session:
        work = services.plan(session, storage, manifest)
        # The courses no longer listed go first: the room they leave counts for the new ones, so
        # an admin who swaps one subscription for another under a tight budget gets the new
        # course in the same pull, not "does not fit" until the one after.
        touched = _remove_unlisted(session, storage, manifest, work.remove, run_id, titles, report)
        today = options.today or utcnow().astimezone(local_zone(settings)).date()
        schedule = calendar.load_schedule(session, today, options.weeks_ahead)
        room = storage_room(session, storage, options)
        absent_before = set(work.missing)  # what storage lacked, whatever this run fetches of it
        fitted = services.fit_budget(session, storage, work, room)
        if schedule and fitted.skipped and room is not None:
            # A course on a calendar too big for the room left still brings its lessons due first.
            fitted = calendar.fit_lessons(work, fitted, schedule, room, services.mirrored_courses(session))
        work = fitted
        report.courses_unchanged = work.unchanged
        report.skipped = [*unfetched, *work.skipped]
        if store_missing is None:
            due_first, then, capped = _order_missing(work, schedule, options.max_bytes, settings.sync_dir / "partial")
        else:  # a bundle: everything is at hand already, in no particular order
            due_first, then, capped = {}, work.missing, []
        fetching = {**due_first, **then}
        titles["planned"] = [entry.title for entry in work.apply]
        titles["skipped"] = list(work.skipped_titles)
        _note_courses(session, run_id, titles)
        logged = session.get(SyncRun, run_id)
        if logged is not None:  # the page shows "0 of N files" from the start, not after the first tick
            logged.files_total, logged.bytes_total = len(fetching), sum(f.size for f in fetching.values())
        session.commit()
    progress = Progress(files_total=len(fetching), bytes_total=sum(f.size for f in fetching.values()))
    failures: dict[str, Text] = {}
    stopped = False
    waiting = _("byte cap: %(files)s files wait for the next run", files=len(capped)) + "\n"
    if capped and not fetching:
        out.write(waiting)
    if fetching:
        out.write(
            _("%(files)s files to fetch (%(size)s)", files=len(fetching), size=_size(progress.bytes_total)) + "\n"
        )
        if schedule:
            out.write(_("teaching calendar: %(files)s files of the lessons due first", files=len(due_first)) + "\n")
        if capped:
            out.write(waiting)
        with Reporter(progress, database, run_id, out):
            try:
                if store_missing is not None:
                    failures = store_missing(work.missing, progress)
                else:
                    assert fetcher is not None
                    _drop_stale_partials(settings.sync_dir / "partial", work.missing)
                    transfer = Transfer(
                        upstream=fetcher,
                        storage=storage,
                        partial_dir=settings.sync_dir / "partial",
                        limiter=RateLimiter(options.max_rate),
                        progress=progress,
                        deadline=deadline,
                    )
                    # The lessons due by the calendar in full before anything else starts.
                    for part in (due_first, then):
                        failures.update(download(transfer, part, options.parallel, in_order=bool(schedule)))
            except Stopped:
                stopped = True
    report.files = progress.files_done
    report.bytes_transferred = progress.transferred

    # Present: what the plan found in storage, and what this run stored (each verified).
    wanted = {sha for entry in work.apply for sha in entry.files()}
    present = (wanted - absent_before) | progress.stored
    replaced: set[str] = set()
    with database.session() as session:
        mirrored = services.mirrored_courses(session)
        group: list[int] = []
        group_titles: list[str] = []
        # `touched`: local ids of the courses removed, then applied, for the search index.

        def commit_group() -> None:
            # Each course of a group is whole in it, so a reader still sees every course old or
            # new, never half; the group shares one commit and one search-index task (a broker
            # send costs ~70 ms on the SQLite broker: one per course was seconds of a pull).
            services.reindex_courses(session, group)
            titles["applied"] += group_titles
            _note_courses(session, run_id, titles)
            session.commit()
            report.courses_applied += len(group)
            touched.extend(group)
            group.clear()
            group_titles.clear()

        for entry in work.apply:
            absent = [sha for sha in entry.files() if sha not in present]
            if (
                absent
                and schedule
                and calendar.apply_lessons_at_hand(
                    session, storage, entry, manifest.bodies[entry.id], manifest.issued_at, present, schedule, mirrored
                )
            ):
                # A new course on the calendar: its lessons whose files are in go up now, the rest
                # next run (the course is left marked as partly applied, so the next pull goes on).
                link = session.get(MirrorCourse, entry.id)
                assert link is not None
                group.append(link.course_id)
                group_titles.append(entry.title)
                held = ", ".join(repr(title) for title in _lessons_needing(entry, set(absent)))
                report.skipped.append(
                    Text(
                        N_("course %(id)s '%(title)s': applied in part; lessons to come: %(lessons)s"),
                        id=entry.id,
                        title=entry.title,
                        lessons=held,
                    )
                )
                continue
            if absent:
                why = _first_reason([failures[s] for s in absent if s in failures])
                held = ", ".join(repr(title) for title in _lessons_needing(entry, set(absent)))
                report.skipped.append(
                    Text(
                        N_(
                            "course %(id)s '%(title)s': %(files)d files missing (%(why)s); "
                            "lessons held back: %(lessons)s"
                        ),
                        id=entry.id,
                        title=entry.title,
                        files=len(absent),
                        why=why,
                        lessons=held,
                    )
                )
                titles["skipped"].append(entry.title)
                continue
            link = mirrored.get(entry.id)
            if link is not None:
                replaced |= _course_blobs(session, link.course_id)
            applied = services.apply_course(
                session,
                storage,
                entry,
                body=manifest.bodies[entry.id],
                issued_at=manifest.issued_at,
                present=present,
                reindex=False,
            )
            group.append(applied.id)
            group_titles.append(entry.title)
            if len(group) >= APPLY_GROUP:
                commit_group()
        if group:
            commit_group()
        dropped = media_services.drop_unreferenced_blobs(session, replaced - set(manifest.files()))
        state = services.mirror_state(session)
        complete = not report.skipped and not failures and not stopped
        if complete:
            state.applied_version = max(state.applied_version, manifest.version)
        session.commit()
    for sha in dropped:
        storage.delete(sha)
    _index_applied(app, touched, out)

    if failures:
        report.status = "failed"
        first = next(iter(failures.values()))
        report.message = Text(
            N_("%(files)d files could not be fetched (%(first)s); the courses that need them were not applied."),
            files=len(failures),
            first=first,
        )
    elif unfetched:
        # An entry that does not hash to its signed revision was altered on the way, or the
        # course changed upstream while this pull ran: either way it is not applied.
        report.status = "failed"
        report.message = Text(
            N_("%(entries)d course entries could not be used (%(first)s); those were not applied."),
            entries=len(unfetched),
            first=unfetched[0],
        )
    elif stopped:
        report.status = "partial"
        report.message = Text(N_("The time window closed: partial files are kept and the next run resumes them."))
    elif capped:
        report.status = "partial"
        report.message = Text(
            N_("Stopped at the byte cap (%(cap)s): %(files)d files wait for the next run."),
            cap=_size(options.max_bytes or 0),
            files=len(capped),
        )
    elif report.skipped:
        report.status = "partial"
        report.message = Text(
            N_("Skipped %(courses)d courses that do not fit the storage budget or the disk."),
            courses=len(report.skipped),
        )
    else:
        report.message = Text(
            N_(
                "Up to date with manifest version %(version)d: %(applied)d courses applied, "
                "%(removed)d removed, %(unchanged)d unchanged."
            ),
            version=manifest.version,
            applied=report.courses_applied,
            removed=report.courses_removed,
            unchanged=report.courses_unchanged,
        )
    return report


def _first_reason(reasons: Sequence[Text]) -> Text:
    """Why a course's files are missing: the first distinct reason, and how many others there were."""
    distinct = sorted(set(reasons))
    if not distinct:
        return Text(N_("not fetched before the run stopped"))
    first = next(r for r in reasons if r == distinct[0])  # the Text itself, with its template and values
    if len(distinct) == 1:
        return first
    return Text(N_("%(reason)s, and %(others)d other reasons"), reason=first, others=len(distinct) - 1)


def _order_missing(
    work: services.Plan, schedule: calendar.Schedule, max_bytes: int | None, partial_dir: Path
) -> tuple[dict[str, mf.ManifestFile], dict[str, mf.ManifestFile], list[mf.ManifestFile]]:
    """(due first, then the rest, held for the next run) of the files `work` misses.

    With a teaching calendar, the files of the lessons due go first and the rest follow in the
    calendar's order; with a byte cap, files are taken in that order until the next would pass
    it (a later, smaller one does not jump ahead: the order is the point). Bytes of a partial
    file already here do not count against the cap.
    """
    if not schedule and max_bytes is None:
        return {}, work.missing, []
    first: dict[str, mf.ManifestFile] = {}
    then: dict[str, mf.ManifestFile] = {}
    capped: list[mf.ManifestFile] = []
    left = max_bytes
    for rank, file in calendar.ranked_files(work.apply, work.missing, schedule):
        if left is not None:
            partial = partial_dir / f"{file.sha256}.part"
            need = max(file.size - (partial.stat().st_size if partial.exists() else 0), 0)
            if capped or need > left:
                capped.append(file)
                continue
            left -= need
        (first if rank[0] == calendar.DUE else then)[file.sha256] = file
    return first, then, capped


def _remove_unlisted(
    session: Any,
    storage: Storage,
    manifest: mf.Manifest,
    remove: Sequence[int],
    run_id: int,
    titles: dict[str, list[str]],
    report: PullReport,
) -> list[int]:
    """Drop the mirrored courses the manifest no longer lists, a commit each, and the blobs only they used.

    Returns their local ids (for the search index). A blob a listed course still
    uses, or one the manifest's entries at hand name, stays.
    """
    mirrored = services.mirrored_courses(session)
    replaced: set[str] = set()
    touched: list[int] = []
    for upstream_id in remove:
        link = mirrored.get(upstream_id)
        if link is not None:
            replaced |= _course_blobs(session, link.course_id)
            touched.append(link.course_id)
            titles["removed"].append(_course_title(session, link.course_id))
        services.remove_course(session, upstream_id)
        _note_courses(session, run_id, titles)
        session.commit()
        report.courses_removed += 1
    dropped = media_services.drop_unreferenced_blobs(session, replaced - set(manifest.files()))
    session.commit()
    for sha in dropped:  # after the commit: a crash between leaves unused bytes, never a row without them
        storage.delete(sha)
    return touched


def _note_courses(session: Any, run_id: int, titles: dict[str, list[str]]) -> None:
    """Write the course titles of this run to its row (the caller commits); a fresh dict, so the change is seen."""
    run = session.get(SyncRun, run_id)
    if run is not None:
        run.courses = {what: list(names) for what, names in titles.items()}


def _course_title(session: Any, course_id: int) -> str:
    from hub.catalog.models import Course

    course = session.get(Course, course_id)
    return course.title if course is not None else str(course_id)


def _lessons_needing(entry: mf.ManifestCourse, absent: set[str]) -> list[str]:
    """The titles of the lessons of `entry` that need one of the `absent` blobs: what a teacher misses."""
    return [
        lesson.title
        for lesson in entry.lessons
        if any(
            file.sha256 in absent for material in lesson.materials for file in (material.original, *material.renditions)
        )
    ]


def _index_applied(app: Flask, course_ids: list[int], out: IO[str]) -> None:
    """Index what this run applied or removed before it ends: a school server runs no worker.

    The tasks queued with each applied group stay the safety net (a run killed between
    its commit and here, or a hub that does run a worker): indexing is idempotent.
    """
    if not course_ids:
        return
    from hub.search import services as search

    try:
        with get_database(app).session() as session:
            search.index_courses(session, app.extensions["hub.search"], course_ids, wait=INDEX_WAIT)
    except search.IndexBusy as exc:
        log.info("search index not updated: %s", exc)
        out.write(_("search index not updated; `hub search rebuild` catches it up") + "\n")
        return
    out.write(_("search index updated: %(courses)s courses", courses=len(course_ids)) + "\n")


def _drop_stale_partials(partial_dir: Path, missing: dict[str, mf.ManifestFile]) -> None:
    """Partial files of blobs no manifest wants any more (a re-transcode replaced them) only take room."""
    if not partial_dir.is_dir():
        return
    for path in partial_dir.glob("*.part"):
        if path.stem not in missing:
            path.unlink(missing_ok=True)


def _course_blobs(session: Any, course_id: int) -> set[str]:
    from hub.catalog.models import Lesson, Material
    from hub.media.models import Rendition
    from hub.subtitles.models import Subtitle

    rows = session.execute(
        select(Rendition.blob_sha256, Material.original_sha256)
        .join(Material, Material.id == Rendition.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .where(Lesson.course_id == course_id)
    ).all()
    tracks = session.scalars(
        select(Subtitle.blob_sha256)
        .join(Material, Material.id == Subtitle.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .where(Lesson.course_id == course_id)
    )
    return {sha for row in rows for sha in row if sha} | set(tracks)


REPORT_ROWS = 1000
"""Rows per download-count request: the upstream's default bound (HUB_SYNC_REPORT_MAX_ROWS there)."""


def send_counts(database: Database, upstream: Upstream, rows: int = REPORT_ROWS) -> str:
    """Send the school's aggregated download counts, in parts of at most `rows` rows; never fatal.

    Each part is acknowledged on its own, so a cut loses nothing and resends only
    the parts not yet acknowledged. An upstream whose bound is lower answers 413:
    the part is halved until it fits.
    """
    with database.session() as session:
        report = counts.pending_count_report(session)
        session.commit()
    sent = added = used = 0
    while report is not None:
        part = counts.report_part(report, rows)
        try:
            answer = upstream.json("POST", "/api/v1/sync/counts", part)
        except UpstreamRefused as exc:
            if exc.answered == 413 and rows > 1:
                rows = max(1, rows // 2)
                continue
            return _counts_note(sent, added, wording.from_error(exc))
        except SyncError as exc:
            return _counts_note(sent, added, wording.from_error(exc))
        with database.session() as session:
            report = counts.acknowledge_count_report(session, part)
            session.commit()
        sent += counts.downloads_in(part["counts"])
        used += counts.usage_in(part["counts"])
        added += answer.get("added", 0) if isinstance(answer, dict) else 0
    return _counts_note(sent, added, used=used)


def _counts_note(sent: int, added: int, failure: Text | None = None, used: int = 0) -> str:
    """What the pull's output says about the counts, in the terminal's language."""
    notes = [_("sent %(sent)s downloads upstream (%(added)s counted)", sent=sent, added=added)] if sent else []
    if used:
        # Plays, downloads and course ZIPs per lesson (hub.reach), in the same report.
        notes.append(_("sent %(used)s plays, downloads and course ZIPs per lesson upstream", used=used))
    if failure is not None:
        reason = wording.render(failure, _)
        notes.append(_("download counts not sent (%(reason)s); they go with the next pull", reason=reason))
    return _("; ").join(notes)


def status(app: Flask) -> dict[str, Any]:
    """The mirror's state and recent runs, for `hub sync status` and the admin page."""
    database = get_database(app)
    with database.session() as session:
        state = services.mirror_state(session)
        runs = services.recent_runs(session, 10)
        mirrored = services.mirrored_courses(session)
        session.commit()
        return {
            "cursor": state.cursor,
            "manifest_version": state.manifest_version,
            "applied_version": state.applied_version,
            "courses": len(mirrored),
            "runs": [
                {
                    "id": r.id,
                    "source": r.source,
                    "status": r.status,
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "files": f"{r.files_done}/{r.files_total}",
                    "bytes": f"{r.bytes_done}/{r.bytes_total}",
                    "transferred": r.bytes_transferred,
                    "message": r.message,
                    "skipped": r.skipped,
                    # The same sentences as message ids and values, for a reader's language.
                    "wording": r.wording,
                }
                for r in runs
            ],
            "at": utcnow().isoformat(),
        }
