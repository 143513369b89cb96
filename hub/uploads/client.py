"""The hub's HTTP API from an uploader's machine: tus uploads that resume, and JSON reads.

Runs on an uploader's own machine as well as on the hub: it speaks HTTP only
(Python's http.client, no extra dependency). An upload declares the whole file's
SHA-256 when it is created (``hub upload`` knows it before it starts), and the server
checks the file against it when the last byte arrives: then no PATCH needs a checksum
of its own, so the server hashes every byte once instead of twice, and a PATCH cut
short keeps the bytes that got through. Without a declared sha256 (resuming an
upload an older client created), each PATCH carries a SHA-256 of its bytes, so the
server rejects a chunk damaged on the way (460) and the client sends it again. Either
way, at the end the server's hash of the whole file is compared with ours.
Failures that heal by themselves (a dropped connection, 423, a 5xx) are retried
with growing pauses; the rest stop the command with the hub's own message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import click

from hub.uploads.terminal import _, language

MiB = 1024 * 1024
TUS_VERSION = "1.0.0"
# Seconds between retries: a blip heals in a second, a restarting server in half a minute.
BACKOFF = (1, 2, 4, 8, 15, 30, 30, 60)
_READ_BLOCK = MiB


class UploadError(click.ClickException):
    """A failure the user can act on; shown as one line, exit status 1."""


class Sha256Refused(UploadError):
    """The server discarded the upload: the file it received is not the sha256 we declared."""


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
    """Bytes ``start``..``start+length`` of an open file: the body of one PATCH.

    From a regular file the bytes go to the socket with sendfile(2) (:meth:`send_to`):
    the kernel copies them from the page cache to the socket, where reading them into
    Python first took a new MiB of memory per read and most of the client's CPU
    (benchmarks/uploads/RESULTS.md, issue 19). Anything else (a pipe, an in-memory
    file, TLS) is read by http.client through :meth:`read`.
    """

    def __init__(self, file: IO[bytes], start: int, length: int, progress: Callable[[int], None]) -> None:
        self._file = file
        self._position = start
        self._end = start + length
        self._progress = progress
        self.length = length
        self.fileno = _fileno(file)
        file.seek(start)

    def send_to(self, sock: Any) -> None:
        """Send the bytes with sendfile, a MiB at a time so the progress bar moves."""
        while self._position < self._end:
            count = min(_READ_BLOCK, self._end - self._position)
            sent = sock.sendfile(self._file, self._position, count)
            if not sent:
                raise UploadError(_("the file got shorter while uploading it"))
            self._position += sent
            self._progress(self._position)

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
            raise UploadError(_("--url must be http(s)://host[:port], not %(url)r", url=base_url))
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
            raise UploadError(_("the server sent a URL on another host: %(url)s", url=url))
        path = target.path + (f"?{target.query}" if target.query else "")
        # The user's language (LANG), so the hub's error messages come in it too.
        sent = {"Tus-Resumable": TUS_VERSION, "Accept-Language": language(), **(headers or {})}
        if self.token:  # reading published courses needs none
            sent["Authorization"] = f"Bearer {self.token}"
        try:
            connection = self._connect()
            if isinstance(body, _Region) and body.fileno is not None and self._origin[0] == "http":
                sent["Content-Length"] = str(body.length)
                connection.putrequest(method, path)
                for name, value in sent.items():
                    connection.putheader(name, value)
                connection.endheaders()  # connects if needed
                body.send_to(connection.sock)
            else:
                connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        except UploadError:
            self.close()  # the request was cut short: the connection is of no more use
            raise
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
                    raise UploadError(
                        _("%(what)s failed %(n)s times; last error: %(error)s", what=what, n=attempt + 1, error=exc)
                    ) from None
                delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                retry = _("%(what)s: %(error)s; retrying in %(delay)s s", what=what, error=exc, delay=delay)
                click.echo("\n" + retry, err=True)
                self.sleep(delay)
                if before_retry is not None:
                    before_retry()
        raise AssertionError("unreachable")

    # -- tus -------------------------------------------------------------------

    def create(self, length: int, filename: str, filetype: str = "", sha256: str | None = None) -> str:
        metadata = f"filename {base64.b64encode(filename.encode()).decode()}"
        if filetype:
            metadata += f",filetype {base64.b64encode(filetype.encode()).decode()}"
        if sha256:
            metadata += f",sha256 {base64.b64encode(sha256.encode()).decode()}"
        reply = self.retrying(
            _("creating the upload"),
            lambda: self.request(
                "POST", "/api/v1/uploads/", {"Upload-Length": str(length), "Upload-Metadata": metadata}
            ),
        )
        if reply.status != 201 or "location" not in reply.headers:
            raise UploadError(_("the server refused the upload: %(why)s", why=reply.message()))
        return urljoin(self.base_url + "/", reply.headers["location"])

    def offset(self, url: str) -> int | None:
        """The server's offset, or None when the upload is gone (expired, deleted)."""
        point = self.resume_point(url)
        return None if point is None else point[0]

    def resume_point(self, url: str) -> tuple[int, str | None] | None:
        """The server's offset and the sha256 the upload declared (None if none), or None when it is gone."""
        reply = self.retrying(_("asking for the offset"), lambda: self.request("HEAD", url))
        if reply.status in (404, 410):
            return None
        if reply.status != 200:
            raise UploadError(_("cannot resume: %(why)s", why=reply.message()))
        declared = None
        for pair in reply.headers.get("upload-metadata", "").split(","):
            key, _space, value = pair.strip().partition(" ")
            if key == "sha256":
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    declared = base64.b64decode(value).decode().strip().lower()
        return int(reply.headers["upload-offset"]), declared

    def send(
        self,
        url: str,
        file: IO[bytes],
        length: int,
        offset: int,
        progress: Callable[[int], None],
        checksums: bool = True,
    ) -> int:
        """PATCH chunks from ``offset`` to the end; returns the final offset.

        ``progress`` is told the absolute position as bytes leave, so a resent chunk
        moves the bar back rather than past 100 %. ``checksums``: each PATCH carries
        its bytes' SHA-256; leave it off only for an upload that declared the file's.
        """
        refused = 0
        if not checksums:
            while offset < length:
                size = min(self.chunk_size, length - offset)
                offset, refused = self._send_chunk(url, file, offset, size, None, refused, progress)
            return offset
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
        digest: bytes | None,
        refused: int,
        progress: Callable[[int], None],
    ) -> tuple[int, int]:
        """PATCH one chunk; returns (the offset to go on from, refusals in a row)."""
        headers = {
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset),
            "Content-Length": str(size),
        }
        if digest is not None:
            headers["Upload-Checksum"] = f"sha256 {base64.b64encode(digest).decode()}"

        def patch(start: int = offset, size: int = size, headers: dict[str, str] = headers) -> Reply:
            return self.request("PATCH", url, headers, _Region(file, start, size, progress))

        # A retried PATCH after a dropped connection is the same PATCH: if the
        # server kept none of it it fits; if it kept some (all of a checksummed chunk,
        # or what arrived of one without a checksum), the answer is 409 and we ask for
        # the offset below.
        reply = self.retrying(_("sending"), patch)
        if reply.status == 204:
            offset = int(reply.headers["upload-offset"])
            refused = 0
        elif reply.status in (409, 460) and refused < self.retries:
            # Out of step, or bytes damaged on the way: go on from what the server has.
            refused += 1
            server = self.offset(url)
            if server is None:
                raise UploadError(_("the upload expired on the server; run the command again to start over"))
            offset = server
        elif reply.status == 422 and _error_code(reply) == "sha256_mismatch":
            raise Sha256Refused(_("the server discarded the upload: %(why)s", why=reply.message()))
        else:
            raise UploadError(_("the server refused a chunk: %(why)s", why=reply.message()))
        progress(offset)
        return offset, refused

    def describe(self, url: str) -> dict[str, Any]:
        reply = self.retrying(_("checking the upload"), lambda: self.request("GET", url))
        if reply.status != 200:
            raise UploadError(_("cannot check the upload: %(why)s", why=reply.message()))
        described: dict[str, Any] = reply.json()
        return described

    def get_json(self, path: str) -> Any:
        """GET an API document; a refusal (404, 403, 401) stops the command with the hub's message."""
        reply = self.retrying(_("reading %(path)s", path=path), lambda: self.request("GET", path))
        if reply.status != 200:
            raise UploadError(reply.message())
        return reply.json()

    def json_request(self, what: str, method: str, path: str, body: dict[str, Any]) -> Reply:
        data = json.dumps(body).encode()
        return self.retrying(what, lambda: self.request(method, path, {"Content-Type": "application/json"}, data))


def _error_code(reply: Reply) -> str | None:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(reply.json()["error"]["code"])
    return None


def _sha256_region(file: IO[bytes], start: int, length: int) -> bytes:
    digest = hashlib.sha256()
    file.seek(start)
    while length > 0:
        data = file.read(min(_READ_BLOCK, length))
        if not data:
            raise UploadError(_("the file got shorter while uploading it"))
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
            raise UploadError(_("the file got shorter while uploading it"))
        digest.update(data)
        start += len(data)
    return digest.digest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(_READ_BLOCK):
            digest.update(data)
    return digest.hexdigest()
