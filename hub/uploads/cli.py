"""``hub upload``: send lesson files through the tus API, resuming where they stopped.

Runs on an uploader's own machine as well as on the hub: it speaks HTTP only
(Python's http.client, no extra dependency). Each PATCH carries a SHA-256 of its
bytes, so the server rejects a chunk damaged on the way (460) and the client sends
it again; at the end the server's hash of the whole file is compared with ours.
The upload URL of each file is kept in a small state file, so running the same
command again after a dropped link, a closed laptop or a server restart goes on
from the server's offset instead of starting over.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import click

MiB = 1024 * 1024
TUS_VERSION = "1.0.0"
# Seconds between retries: a blip heals in a second, a restarting server in half a minute.
BACKOFF = (1, 2, 4, 8, 15, 30, 30, 60)
_READ_BLOCK = MiB


class UploadError(click.ClickException):
    """A failure the user can act on; shown as one line, exit status 1."""


class Transient(Exception):
    """Worth retrying: no connection, a dead connection, 423 Locked, a 5xx."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def message(self) -> str:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(self.json()["error"]["message"])
        return f"HTTP {self.status}"


class _Region:
    """Bytes ``start``..``start+length`` of an open file, read by http.client as the request body."""

    def __init__(self, file: IO[bytes], start: int, length: int, progress: Callable[[int], None]) -> None:
        self._file = file
        self._position = start
        self._end = start + length
        self._progress = progress
        file.seek(start)

    def read(self, size: int = -1) -> bytes:
        remaining = self._end - self._position
        if remaining <= 0:
            return b""
        data = self._file.read(remaining if size < 0 else min(size, remaining))
        self._position += len(data)
        self._progress(self._position)
        return data


class TusClient:
    """Just enough tus 1.0 (creation, core, checksum) for the hub's own server."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        chunk_size: int = 32 * MiB,
        retries: int = 10,
        timeout: float = 120,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UploadError(f"--url must be http(s)://host[:port], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.chunk_size = chunk_size
        self.retries = retries
        self.timeout = timeout
        self.sleep = sleep
        self._connection: http.client.HTTPConnection | None = None
        self._origin = (parts.scheme, parts.hostname, parts.port)

    # -- HTTP ------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            scheme, host, port = self._origin
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            # Big blocks: http.client's 8 KiB default costs a system call per 8 KiB.
            self._connection = cls(host, port, timeout=self.timeout, blocksize=_READ_BLOCK)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: _Region | bytes | None = None
    ) -> Reply:
        """One request; connection failures, 423 and 5xx raise Transient, other statuses return."""
        target = urlsplit(urljoin(self.base_url + "/", url))
        if (target.scheme, target.hostname, target.port) != self._origin:
            raise UploadError(f"the server sent a URL on another host: {url}")
        path = target.path + (f"?{target.query}" if target.query else "")
        sent = {"Authorization": f"Bearer {self.token}", "Tus-Resumable": TUS_VERSION, **(headers or {})}
        try:
            connection = self._connect()
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        if reply.headers.get("connection", "").lower() == "close":
            self.close()
        if reply.status == 423 or reply.status >= 500:
            raise Transient(f"{reply.status}: {reply.message()}")
        return reply

    def retrying(self, what: str, action: Callable[[], Reply], before_retry: Callable[[], None] | None = None) -> Reply:
        """Run ``action`` until it is not Transient, waiting longer each time."""
        for attempt in range(self.retries + 1):
            try:
                return action()
            except Transient as exc:
                if attempt == self.retries:
                    raise UploadError(f"{what} failed {attempt + 1} times; last error: {exc}") from None
                delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                click.echo(f"\n{what}: {exc}; retrying in {delay} s", err=True)
                self.sleep(delay)
                if before_retry is not None:
                    before_retry()
        raise AssertionError("unreachable")

    # -- tus -------------------------------------------------------------------

    def create(self, length: int, filename: str, filetype: str = "") -> str:
        metadata = f"filename {base64.b64encode(filename.encode()).decode()}"
        if filetype:
            metadata += f",filetype {base64.b64encode(filetype.encode()).decode()}"
        reply = self.retrying(
            "creating the upload",
            lambda: self.request(
                "POST", "/api/v1/uploads/", {"Upload-Length": str(length), "Upload-Metadata": metadata}
            ),
        )
        if reply.status != 201 or "location" not in reply.headers:
            raise UploadError(f"the server refused the upload: {reply.message()}")
        return urljoin(self.base_url + "/", reply.headers["location"])

    def offset(self, url: str) -> int | None:
        """The server's offset, or None when the upload is gone (expired, deleted)."""
        reply = self.retrying("asking for the offset", lambda: self.request("HEAD", url))
        if reply.status in (404, 410):
            return None
        if reply.status != 200:
            raise UploadError(f"cannot resume: {reply.message()}")
        return int(reply.headers["upload-offset"])

    def send(self, url: str, file: IO[bytes], length: int, offset: int, progress: Callable[[int], None]) -> int:
        """PATCH chunks from ``offset`` to the end; returns the final offset.

        ``progress`` is told the absolute position as bytes leave, so a resent chunk
        moves the bar back rather than past 100 %.
        """
        refused = 0
        # The checksum goes in the headers, so a chunk is hashed before it is sent; while
        # the server writes one chunk (and the client only waits), the next is hashed on
        # a helper thread. pread() leaves the file position to http.client's reads.
        fileno = _fileno(file)
        ahead: tuple[int, int, Future[bytes]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-checksum") as hasher:
            while offset < length:
                size = min(self.chunk_size, length - offset)
                if ahead is not None and ahead[:2] == (offset, size):
                    digest = ahead[2].result()
                else:
                    digest = _sha256_region(file, offset, size)
                following = offset + size
                ahead = None
                if fileno is not None and following < length:
                    next_size = min(self.chunk_size, length - following)
                    ahead = (following, next_size, hasher.submit(_sha256_pread, fileno, following, next_size))
                offset, refused = self._send_chunk(url, file, offset, size, digest, refused, progress)
        return offset

    def _send_chunk(
        self,
        url: str,
        file: IO[bytes],
        offset: int,
        size: int,
        digest: bytes,
        refused: int,
        progress: Callable[[int], None],
    ) -> tuple[int, int]:
        """PATCH one chunk; returns (the offset to go on from, refusals in a row)."""
        headers = {
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset),
            "Content-Length": str(size),
            "Upload-Checksum": f"sha256 {base64.b64encode(digest).decode()}",
        }

        def patch(start: int = offset, size: int = size, headers: dict[str, str] = headers) -> Reply:
            return self.request("PATCH", url, headers, _Region(file, start, size, progress))

        # A retried PATCH after a dropped connection is the same PATCH: if the
        # server kept none of it (it keeps a chunk whole or not at all) it fits;
        # if it kept some, the answer is 409 and we ask for the offset below.
        reply = self.retrying("sending", patch)
        if reply.status == 204:
            offset = int(reply.headers["upload-offset"])
            refused = 0
        elif reply.status in (409, 460) and refused < self.retries:
            # Out of step, or bytes damaged on the way: go on from what the server has.
            refused += 1
            server = self.offset(url)
            if server is None:
                raise UploadError("the upload expired on the server; run the command again to start over")
            offset = server
        else:
            raise UploadError(f"the server refused a chunk: {reply.message()}")
        progress(offset)
        return offset, refused

    def describe(self, url: str) -> dict[str, Any]:
        reply = self.retrying("checking the upload", lambda: self.request("GET", url))
        if reply.status != 200:
            raise UploadError(f"cannot check the upload: {reply.message()}")
        described: dict[str, Any] = reply.json()
        return described

    def json_request(self, what: str, method: str, path: str, body: dict[str, Any]) -> Reply:
        data = json.dumps(body).encode()
        return self.retrying(what, lambda: self.request(method, path, {"Content-Type": "application/json"}, data))


def _sha256_region(file: IO[bytes], start: int, length: int) -> bytes:
    digest = hashlib.sha256()
    file.seek(start)
    while length > 0:
        data = file.read(min(_READ_BLOCK, length))
        if not data:
            raise UploadError("the file got shorter while uploading it")
        digest.update(data)
        length -= len(data)
    return digest.digest()


def _fileno(file: IO[bytes]) -> int | None:
    try:
        fileno = file.fileno()
        os.pread(fileno, 0, 0)
    except (AttributeError, OSError, ValueError):
        return None  # not a regular file (a pipe, an in-memory stream): hash in line
    return fileno


def _sha256_pread(fileno: int, start: int, length: int) -> bytes:
    digest = hashlib.sha256()
    end = start + length
    while start < end:
        data = os.pread(fileno, min(_READ_BLOCK, end - start), start)
        if not data:
            raise UploadError("the file got shorter while uploading it")
        digest.update(data)
        start += len(data)
    return digest.digest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(_READ_BLOCK):
            digest.update(data)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# What has been done, so a second run resumes.


class State:
    """A small JSON file: upload URLs of unfinished files, lessons and materials already made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self.data = {}

    @classmethod
    def default(cls) -> State:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(cache / "oer-hub" / "uploads.json")

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Replace atomically: a killed run must not leave half a file (and forget everything).
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads.")
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, ensure_ascii=False, indent=1)
        os.replace(tmp, self.path)


def _file_key(client: TusClient, target: str, path: Path) -> str:
    stat = path.stat()
    return f"{client.base_url}|{target}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


# ---------------------------------------------------------------------------
# Uploading one file, and a folder.


_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".pdf": "application/pdf",
}


def upload_file(client: TusClient, state: State, path: Path, lesson: int, title: str, quiet: bool) -> dict[str, Any]:
    """Upload ``path`` (resuming a run that stopped) and make it a material of ``lesson``."""
    key = _file_key(client, f"lesson:{lesson}", path)
    done = state.get(key + "|material")
    if done is not None:
        click.echo(f"{path.name}: already material {done}", err=True)
        return {"id": done}
    length = path.stat().st_size
    if length == 0:
        raise UploadError(f"{path} is empty")
    url = state.get(key)
    offset = client.offset(url) if url else None
    if url and offset is None:
        click.echo(f"{path.name}: the unfinished upload expired on the server; starting over", err=True)
    if offset is None:
        url = client.create(length, path.name, _TYPES.get(path.suffix.lower(), ""))
        state.set(key, url)
        offset = 0
    assert url is not None
    with path.open("rb") as file, _progress(path.name, length, offset, quiet) as progress:
        client.send(url, file, length, offset, progress)
    described = client.describe(url)
    if described.get("status") != "complete":
        raise UploadError(f"the server has {described.get('offset')} of {length} bytes; run the command again")
    ours = _sha256_file(path)
    if described.get("sha256") != ours:
        state.set(key, None)
        raise UploadError(f"the server's copy of {path.name} differs from the file (sha256); run again to re-send")
    reply = client.json_request(
        "adding the material", "POST", f"/api/v1/lessons/{lesson}/materials", {"upload": url, "title": title}
    )
    if reply.status not in (200, 201):
        raise UploadError(f"the file arrived, but the server did not make it a material: {reply.message()}")
    material: dict[str, Any] = reply.json()
    state.set(key, None)
    state.set(key + "|material", material["id"])
    return material


@contextlib.contextmanager
def _progress(label: str, length: int, start: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    if quiet:
        yield lambda _n: None
        return
    with click.progressbar(length=length, label=label, show_eta=True, show_percent=True) as bar:

        def moved_to(position: int) -> None:
            bar.update(position - bar.pos)

        moved_to(start)
        yield moved_to


def _lesson_for(client: TusClient, state: State, course: int, title: str) -> int:
    key = f"{client.base_url}|course:{course}|lesson:{title}"
    known = state.get(key)
    if known is not None:
        return int(known)
    reply = client.json_request("adding a lesson", "POST", f"/api/v1/courses/{course}/lessons", {"title": title})
    if reply.status != 201:
        raise UploadError(f"cannot add lesson {title!r}: {reply.message()}")
    lesson_id = int(reply.json()["id"])
    state.set(key, lesson_id)
    return lesson_id


def _visible_entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def upload_folder(client: TusClient, state: State, folder: Path, course: int, quiet: bool) -> list[dict[str, Any]]:
    """A course from a folder: each sub-folder is a lesson of its files, each loose file a lesson of its own."""
    materials = []
    for entry in _visible_entries(folder):
        if entry.is_dir():
            files = [p for p in _visible_entries(entry) if p.is_file()]
            if not files:
                continue
            lesson = _lesson_for(client, state, course, entry.name)
            for file in files:
                materials.append(upload_file(client, state, file, lesson, file.stem, quiet))
        elif entry.is_file():
            lesson = _lesson_for(client, state, course, entry.stem)
            materials.append(upload_file(client, state, entry, lesson, entry.stem, quiet))
    return materials


@click.command("upload")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--lesson", type=int, help="Lesson to add FILE to.")
@click.option("--course", type=int, help="With a folder: course to add its lessons to.")
@click.option("--title", default="", help="Material title (default: the file name).")
@click.option(
    "--url",
    envvar="HUB_PUBLIC_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The hub's address (or HUB_PUBLIC_URL).",
)
@click.option("--token", envvar="HUB_TOKEN", required=True, help="API token from `hub token create` (or HUB_TOKEN).")
@click.option("--chunk-size", default=32, show_default=True, type=click.IntRange(1, 512), help="MiB per request.")
@click.option("--retries", default=10, show_default=True, type=click.IntRange(0, 1000), help="Retries per request.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def upload(
    path: Path,
    lesson: int | None,
    course: int | None,
    title: str,
    url: str,
    token: str,
    chunk_size: int,
    retries: int,
    quiet: bool,
) -> None:
    """Upload FILE to a lesson (--lesson), or a course folder (--course): resumable, retried, checked.

    Run the same command again after an interruption: it goes on from what the
    server already has.
    """
    client = TusClient(url, token, chunk_size=chunk_size * MiB, retries=retries)
    state = State.default()
    try:
        if path.is_dir():
            if course is None:
                raise click.UsageError("a folder needs --course ID (each sub-folder becomes a lesson)")
            for material in upload_folder(client, state, path, course, quiet):
                click.echo(f"material {material['id']}: {material.get('title', '')} ({material.get('status', 'done')})")
            return
        if lesson is None:
            raise click.UsageError("a file needs --lesson ID")
        material = upload_file(client, state, path, lesson, title or path.stem, quiet)
        click.echo(f"material {material['id']}: {material.get('title', '')} ({material.get('status', 'done')})")
    finally:
        client.close()
