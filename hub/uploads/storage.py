"""Where an unfinished upload's bytes wait for the rest, and how they become a blob.

The partial store follows the blob storage backend:

- :class:`LocalPartialStore` (local blob storage): one file per upload under
  ``HUB_UPLOAD_DIR``, appended to and fsync'd; its size on disk *is* the offset.
  On completion the file is hard-linked into blob storage under its sha256, so the
  bytes are written once.
- :class:`S3PartialStore` (S3 blob storage): one S3 multipart upload per tus upload.
  S3 wants every part but the last to be at least 5 MiB, and a PATCH can be any
  size, so bytes first land in local part files of exactly the part size; a full one
  is sent as a part and deleted. The offset is what ListParts says S3 holds plus what
  local part files hold beyond it, so it is never a number we merely remember.

One crash rule for both: a PATCH's bytes are provisional until the PATCH has been
checked (declared length, checksum, declared type). Before writing, a ``pending``
marker records the offset to come back to; :meth:`PartialUpload.rollback` truncates
back to it and :meth:`PartialUpload.commit` removes it. A marker left behind by a
killed process is undone the next time the upload is opened, so a crash never
leaves unchecked bytes counted in an offset.

Callers serialise access to one upload (see hub.uploads.services); these classes do
no locking of their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hub.media.storage import LocalStorage, Storage, StoredBlob, key_for
from hub.media.storage.base import CHUNK_SIZE, fsync_dir, hash_file

# boto3 loads only on hubs that store in S3: the S3 classes below catch botocore's
# ClientError through their client (``self.client.exceptions.ClientError``).
if TYPE_CHECKING:
    from botocore.exceptions import ClientError

    from hub.media.storage import S3Storage

log = logging.getLogger(__name__)

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB
S3_MAX_PARTS = 10_000
_MAX_COPY_OBJECT = 5 * 1024 * MiB
_PART_THREADS = 4

UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{32}")

_PENDING = "pending"
_DATA = "data"
_PART = re.compile(r"part-(\d{5})")


Chunk = bytes | memoryview
"""What an upload's bytes arrive in: the tus pump hands out views of buffers it reuses."""


class DigestMismatch(Exception):
    """The finished bytes hash to ``actual``, not to the sha256 the client declared; nothing was stored."""

    def __init__(self, actual: str) -> None:
        super().__init__(f"the bytes hash to {actual}")
        self.actual = actual


class PartialLost(Exception):
    """The bytes of an unfinished upload are gone from storage (aborted or deleted behind our back)."""


def validate_upload_id(upload_id: str) -> str:
    """Upload ids become file names and S3 keys: only our own 32-character tokens pass."""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    return upload_id


# ---------------------------------------------------------------------------
# A SHA-256 whose state can be saved between requests.


class _Sha256Lib:
    """OpenSSL's SHA256_Init/Update/Final, found once; None when unusable."""

    # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len as 32-bit words; this
    # layout has not changed since OpenSSL 0.9.7 (and LibreSSL/BoringSSL share it).
    STATE_SIZE = 112
    # The live context gets headroom: if some build's struct were bigger, the self-test
    # below fails safely instead of OpenSSL writing past our buffer.
    BUFFER_SIZE = 512

    def __init__(self) -> None:
        self.lib: Any = None
        name = ctypes.util.find_library("crypto")
        if name is None:
            return
        try:
            lib = ctypes.CDLL(name)  # CDLL releases the GIL during calls: hashing runs in parallel
            lib.SHA256_Init.argtypes = [ctypes.c_void_p]
            lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
            lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
            for fn in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
                fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            return
        self.lib = lib
        if not self._self_test():
            log.warning("OpenSSL's SHA256 state cannot be saved here; finished uploads are hashed once more")
            self.lib = None

    def _self_test(self) -> bool:
        data = bytes(range(256)) * 300
        try:
            first = Sha256State(lib=self)
            first.update(data[:1000])
            resumed = Sha256State(first.state(), lib=self)
            resumed.update(data[1000:])
            return resumed.hexdigest() == hashlib.sha256(data).hexdigest()
        except (OSError, ValueError):
            return False


class Sha256State:
    """SHA-256 of a byte stream that arrives over many requests, in many processes.

    hashlib cannot export a running hash, so this drives OpenSSL's SHA256 functions
    (the code hashlib itself runs, at the same speed) on a context buffer we own and
    can save as 112 bytes in the upload's row. :func:`available` is False when
    libcrypto is missing or fails the self-test: callers then hash the finished file
    once more instead.
    """

    _shared: _Sha256Lib | None = None

    def __init__(self, state: bytes | None = None, *, lib: _Sha256Lib | None = None) -> None:
        self._lib = lib or _library()
        if self._lib.lib is None:
            raise RuntimeError("OpenSSL SHA256 functions are not available")
        self._ctx = ctypes.create_string_buffer(_Sha256Lib.BUFFER_SIZE)
        if state is None:
            self._lib.lib.SHA256_Init(self._ctx)
        else:
            if len(state) != _Sha256Lib.STATE_SIZE:
                raise ValueError("not a saved SHA-256 state")
            ctypes.memmove(self._ctx, state, len(state))

    @staticmethod
    def available() -> bool:
        return _library().lib is not None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytes):
            self._lib.lib.SHA256_Update(self._ctx, data, len(data))
            return
        # The upload pump hands out views of its reusable buffers: hash them where they lie.
        view = memoryview(data).cast("B")
        if view.readonly:
            view = memoryview(bytearray(view))
        if view.nbytes:
            self._lib.lib.SHA256_Update(self._ctx, (ctypes.c_char * view.nbytes).from_buffer(view), view.nbytes)

    def state(self) -> bytes:
        return self._ctx.raw[: _Sha256Lib.STATE_SIZE]

    def hexdigest(self) -> str:
        # Final() consumes the context: finish a copy, keep this one usable.
        ctx = ctypes.create_string_buffer(self._ctx.raw, _Sha256Lib.BUFFER_SIZE)
        out = ctypes.create_string_buffer(32)
        self._lib.lib.SHA256_Final(out, ctx)
        return out.raw.hex()


def _library() -> _Sha256Lib:
    if Sha256State._shared is None:
        Sha256State._shared = _Sha256Lib()
    return Sha256State._shared


# ---------------------------------------------------------------------------
# The contract.


class PartialUpload(Protocol):
    """One unfinished upload, opened by the request that holds its lock."""

    offset: int
    """Bytes stored and committed so far (a crashed PATCH already undone)."""

    def append(self, chunks: Iterable[Chunk]) -> int:
        """Write ``chunks`` at :attr:`offset`, durably, as provisional bytes; return how many."""
        ...

    def rollback(self) -> None:
        """Forget the provisional bytes of the last :meth:`append`."""
        ...

    def commit(self, *, final: bool) -> None:
        """Keep the provisional bytes; ``final`` when they end the upload."""
        ...

    def read(self, start: int, stop: int) -> Iterator[bytes] | None:
        """Bytes ``start``..``stop`` (half-open) if this store can still read them, else None."""
        ...

    def finish(self, sha256: str | None, declared: str | None = None) -> StoredBlob:
        """Put the complete bytes into blob storage under their sha256 (computed if None).

        ``declared``: the sha256 the client announced. When the hash is computed here,
        bytes that hash otherwise raise DigestMismatch before anything is stored under a
        content key (callers that pass ``sha256`` have compared it already).
        """
        ...


class PartialStore(Protocol):
    kind: str

    def create(self, upload_id: str, length: int) -> dict[str, Any]:
        """Make room for a new upload; returns the backend state to keep in its row."""
        ...

    def committed_offset(self, upload_id: str, state: dict[str, Any]) -> int:
        """The offset as a HEAD should report it; reads only, needs no lock."""
        ...

    def open(self, upload_id: str, state: dict[str, Any]) -> PartialUpload:
        """Open for writing (caller holds the lock); undoes a crashed PATCH first."""
        ...

    def discard(self, upload_id: str, state: dict[str, Any]) -> None:
        """Remove every byte the upload left here; safe to call twice."""
        ...

    def lock_path(self, upload_id: str) -> Path:
        """A file to flock while writing when the database cannot lock rows (SQLite)."""
        ...

    def sweep_orphans(self, is_known: Callable[[str], bool], older_than: datetime) -> int:
        """Discard leftovers older than ``older_than`` that no upload row claims; return how many."""
        ...


def make_partial_store(storage: Storage, directory: Path, part_bytes: int) -> PartialStore:
    if isinstance(storage, LocalStorage):
        return LocalPartialStore(directory, storage)
    from hub.media.storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        return S3PartialStore(storage, directory, part_bytes)
    return LocalPartialStore(directory, storage)


# ---------------------------------------------------------------------------
# Shared file helpers.


def _write_marker(path: Path, offset: int) -> None:
    # Durable before the first provisional byte is: after a power cut the marker must
    # be there if any of those bytes are.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, str(offset).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def _read_marker(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    # A torn (empty) marker means its writer died before fsync'ing it, hence before
    # writing any provisional byte: there is nothing to undo.
    return int(text) if text.isdigit() else None


def _remove_marker(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _read_file_range(path: Path, start: int, stop: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = f.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise PartialLost(f"{path} is shorter than expected")
            remaining -= len(chunk)
            yield chunk


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


# ---------------------------------------------------------------------------
# Local: one file per upload.


class LocalPartialStore:
    """``<root>/<id>/data`` grows by appends; ``<root>/locks/<id>`` serialises writers on SQLite."""

    kind = "local"

    def __init__(self, root: Path, storage: Storage) -> None:
        self.root = Path(root).resolve()
        self.storage = storage

    def __repr__(self) -> str:
        return f"LocalPartialStore({str(self.root)!r})"

    def _dir(self, upload_id: str) -> Path:
        return self.root / validate_upload_id(upload_id)

    def create(self, upload_id: str, length: int) -> dict[str, Any]:
        directory = self._dir(upload_id)
        directory.mkdir(parents=True)
        fd = os.open(directory / _DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        fsync_dir(directory)
        fsync_dir(self.root)
        return {"path": f"{upload_id}/{_DATA}"}

    def committed_offset(self, upload_id: str, state: dict[str, Any]) -> int:
        directory = self._dir(upload_id)
        pending = _read_marker(directory / _PENDING)
        if pending is not None:
            return pending
        try:
            return (directory / _DATA).stat().st_size
        except FileNotFoundError:
            raise PartialLost(upload_id) from None

    def open(self, upload_id: str, state: dict[str, Any]) -> LocalPartial:
        return LocalPartial(self, self._dir(upload_id))

    def discard(self, upload_id: str, state: dict[str, Any]) -> None:
        shutil.rmtree(self._dir(upload_id), ignore_errors=True)

    def lock_path(self, upload_id: str) -> Path:
        return self.root / "locks" / validate_upload_id(upload_id)

    def sweep_orphans(self, is_known: Callable[[str], bool], older_than: datetime) -> int:
        removed = 0
        for upload_id, path in _upload_dirs(self.root):
            if _mtime(path) < older_than and not is_known(upload_id):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        _sweep_locks(self.root, is_known, older_than)
        return removed


def _sweep_locks(root: Path, is_known: Callable[[str], bool], older_than: datetime) -> int:
    """Lock files of uploads that are gone (a waiter on one finds no row and gives up)."""
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(root / "locks") as entries:
        for entry in entries:
            path = Path(entry.path)
            if UPLOAD_ID.fullmatch(entry.name) and _mtime(path) < older_than and not is_known(entry.name):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _upload_dirs(root: Path) -> Iterator[tuple[str, Path]]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if UPLOAD_ID.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            yield entry.name, Path(entry.path)


class LocalPartial:
    def __init__(self, store: LocalPartialStore, directory: Path) -> None:
        self.store = store
        self.path = directory / _DATA
        self.pending = directory / _PENDING
        if not self.path.is_file():
            raise PartialLost(directory.name)
        marker = _read_marker(self.pending)
        if marker is not None:
            self._truncate(marker)  # a PATCH was killed before it was checked
        elif self.pending.exists():
            _remove_marker(self.pending)
        self.offset = self.path.stat().st_size

    def _truncate(self, offset: int) -> None:
        with self.path.open("r+b") as f:
            f.truncate(offset)
            os.fsync(f.fileno())
        _remove_marker(self.pending)
        self.offset = offset

    def append(self, chunks: Iterable[Chunk]) -> int:
        _write_marker(self.pending, self.offset)
        written = 0
        with self.path.open("r+b") as f:
            f.seek(self.offset)
            try:
                for chunk in chunks:
                    f.write(chunk)
                    written += len(chunk)
            finally:
                f.flush()
                os.fsync(f.fileno())
                self.offset += written
        return written

    def rollback(self) -> None:
        marker = _read_marker(self.pending)
        if marker is not None:
            self._truncate(marker)

    def commit(self, *, final: bool) -> None:
        _remove_marker(self.pending)

    def read(self, start: int, stop: int) -> Iterator[bytes] | None:
        return _read_file_range(self.path, start, stop)

    def finish(self, sha256: str | None, declared: str | None = None) -> StoredBlob:
        size = self.path.stat().st_size
        if sha256 is None:
            sha256, size = hash_file(self.path)
            _check_declared(sha256, declared)
        storage = self.store.storage
        if storage.exists(sha256):
            return StoredBlob(sha256=sha256, size=size, created=False)
        if isinstance(storage, LocalStorage):
            linked = self._link_into(storage, sha256)
            if linked is not None:
                return StoredBlob(sha256=sha256, size=size, created=linked)
        stored = storage.store_file(self.path)  # another filesystem or backend: a copy
        if stored.sha256 != sha256:
            raise RuntimeError(f"upload hashed to {sha256} but storage read {stored.sha256}")
        return stored

    def _link_into(self, storage: LocalStorage, sha256: str) -> bool | None:
        """Hard-link the file as the blob: True if linked, False if it was there, None if we cannot link."""
        target = storage.root / key_for(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        # LocalStorage refuses shard directories that lead outside its root; so do we.
        if target.parent.resolve().parent.parent != storage.root:
            raise RuntimeError(f"blob directory escapes the storage root: {target.parent}")
        # Readable by a reverse proxy serving blobs, like every other blob.
        os.chmod(self.path, 0o644)
        try:
            os.link(self.path, target)
        except FileExistsError:
            return False  # the same bytes finished at the same moment elsewhere
        except OSError as exc:  # another filesystem (EXDEV), or one without hard links
            log.info("cannot hard-link %s into blob storage (%s); copying it", self.path, exc)
            return None
        fsync_dir(target.parent)
        return True


# ---------------------------------------------------------------------------
# S3: a multipart upload, fed by local part files.


def part_size_for(length: int, part_bytes: int) -> int:
    """The part size for an upload: the setting, grown so the file fits S3's 10,000 parts."""
    needed = math.ceil(length / S3_MAX_PARTS)
    return max(part_bytes, S3_MIN_PART, math.ceil(needed / MiB) * MiB)


def _walk(s3_parts: dict[int, int], local_parts: dict[int, int], part_size: int) -> tuple[int, int]:
    """(offset, number of the first part not in S3) from what S3 and the local part files hold.

    Parts are contiguous from 1 and all exactly ``part_size`` long except a last short
    one, so walking part numbers and preferring S3's copy gives the longest prefix of
    the file that is really stored. A local file that S3 already has is stale (its
    upload succeeded, its deletion did not happen); a gap ends the walk.
    """
    offset = 0
    number = 1
    while True:
        size = s3_parts.get(number)
        if size is None:
            break
        offset += size
        number += 1
        if size < part_size:
            return offset, number
    first_local = number
    while True:
        size = local_parts.get(number)
        if size is None:
            break
        offset += size
        number += 1
        if size < part_size:
            break
    return offset, first_local


def _is_no_such_upload(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchUpload", "NoSuchKey", "404") or status == 404


class S3PartialStore:
    """Multipart upload at ``<prefix>uploads/<id>``; local part files under ``<root>/<id>/``.

    Trade-off: the part not yet full lives on this machine's disk (at most one part
    per upload between PATCHes), so several web servers need the upload directory
    shared, or requests routed by upload URL. It keeps PATCHes cheap: S3 has no append,
    and keeping that tail in S3 instead would re-upload it on every PATCH.
    """

    kind = "s3"

    def __init__(self, storage: S3Storage, root: Path, part_bytes: int) -> None:
        if part_bytes < S3_MIN_PART:
            raise ValueError(f"S3 parts must be at least {S3_MIN_PART} bytes, got {part_bytes}")
        self.storage = storage
        self.client: Any = storage.client
        self.bucket = storage.bucket
        self.root = Path(root).resolve()
        self.part_bytes = part_bytes

    def __repr__(self) -> str:
        return f"S3PartialStore(bucket={self.bucket!r}, prefix={self.storage.prefix!r}, root={str(self.root)!r})"

    def key(self, upload_id: str) -> str:
        # Outside the blob layout (ab/cd/<sha256>), so S3Storage.iter_hashes never lists it.
        return f"{self.storage.prefix}uploads/{validate_upload_id(upload_id)}"

    def _dir(self, upload_id: str) -> Path:
        return self.root / validate_upload_id(upload_id)

    def create(self, upload_id: str, length: int) -> dict[str, Any]:
        directory = self._dir(upload_id)
        directory.mkdir(parents=True)
        fsync_dir(self.root)
        key = self.key(upload_id)
        created = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType="application/octet-stream"
        )
        return {"key": key, "upload_id": created["UploadId"], "part_size": part_size_for(length, self.part_bytes)}

    def list_parts(self, state: dict[str, Any]) -> dict[int, tuple[int, str]] | None:
        """part number → (size, ETag) as S3 has them; None once the multipart upload is gone."""
        parts: dict[int, tuple[int, str]] = {}
        marker = 0
        while True:
            try:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=state["key"], UploadId=state["upload_id"], PartNumberMarker=marker
                )
            except self.client.exceptions.ClientError as error:
                if _is_no_such_upload(error):
                    return None
                raise
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = (int(part["Size"]), str(part["ETag"]))
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def assembled_size(self, state: dict[str, Any]) -> int | None:
        """The size of the completed multipart object, if a finish got that far."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=state["key"])
        except self.client.exceptions.ClientError as error:
            if _is_no_such_upload(error):
                return None
            raise
        return int(head["ContentLength"])

    def local_parts(self, upload_id: str) -> dict[int, int]:
        sizes: dict[int, int] = {}
        directory = self._dir(upload_id)
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                match = _PART.fullmatch(entry.name)
                if match:
                    sizes[int(match.group(1))] = entry.stat().st_size
        return sizes

    def committed_offset(self, upload_id: str, state: dict[str, Any]) -> int:
        pending = _read_marker(self._dir(upload_id) / _PENDING)
        if pending is not None:
            return pending
        # Local files first, S3 second: a part moving from disk to S3 meanwhile is
        # uploaded before its file is deleted, so it shows up in at least one listing.
        local = self.local_parts(upload_id)
        parts = self.list_parts(state)
        if parts is None:
            size = self.assembled_size(state)
            if size is None:
                raise PartialLost(upload_id)
            return size
        offset, _ = _walk({n: size for n, (size, _) in parts.items()}, local, int(state["part_size"]))
        return offset

    def open(self, upload_id: str, state: dict[str, Any]) -> S3Partial:
        return S3Partial(self, upload_id, state)

    def discard(self, upload_id: str, state: dict[str, Any]) -> None:
        if state.get("upload_id"):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=state["key"], UploadId=state["upload_id"])
            except self.client.exceptions.ClientError as error:
                if not _is_no_such_upload(error):
                    raise
        if state.get("key"):
            # A finish may have assembled the object before the copy to its content key.
            self.client.delete_object(Bucket=self.bucket, Key=state["key"])
        shutil.rmtree(self._dir(upload_id), ignore_errors=True)

    def lock_path(self, upload_id: str) -> Path:
        return self.root / "locks" / validate_upload_id(upload_id)

    def sweep_orphans(self, is_known: Callable[[str], bool], older_than: datetime) -> int:
        removed = 0
        prefix = f"{self.storage.prefix}uploads/"
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Uploads", []):
                upload_id = str(item["Key"])[len(prefix) :]
                if UPLOAD_ID.fullmatch(upload_id) and item["Initiated"] < older_than and not is_known(upload_id):
                    self.discard(upload_id, {"key": item["Key"], "upload_id": item["UploadId"]})
                    removed += 1
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                upload_id = str(item["Key"])[len(prefix) :]
                if UPLOAD_ID.fullmatch(upload_id) and item["LastModified"] < older_than and not is_known(upload_id):
                    self.discard(upload_id, {"key": item["Key"]})
                    removed += 1
        for upload_id, path in _upload_dirs(self.root):
            if _mtime(path) < older_than and not is_known(upload_id):
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        _sweep_locks(self.root, is_known, older_than)
        return removed


class S3Partial:
    def __init__(self, store: S3PartialStore, upload_id: str, state: dict[str, Any]) -> None:
        self.store = store
        self.client = store.client
        self.bucket = store.bucket
        self.key = str(state["key"])
        self.mpu_id = str(state["upload_id"])
        self.part_size = int(state["part_size"])
        self.directory = store._dir(upload_id)
        self.pending = self.directory / _PENDING
        self.directory.mkdir(parents=True, exist_ok=True)
        self.assembled = False
        self.parts: dict[int, tuple[int, str]] = {}
        parts = store.list_parts(state)
        if parts is None:
            size = store.assembled_size(state)
            if size is None:
                raise PartialLost(upload_id)
            # A finish completed the multipart upload, then stopped: pick up from there.
            self.assembled = True
            self.offset = size
            return
        self.parts = parts
        marker = _read_marker(self.pending)
        if marker is not None:
            self._cut_local(marker)  # a PATCH was killed before it was checked
        elif self.pending.exists():
            _remove_marker(self.pending)
        local = store.local_parts(upload_id)
        self.offset, first_local = _walk(self._s3_sizes(), local, self.part_size)
        for number in local:
            if number < first_local:
                self._part_path(number).unlink(missing_ok=True)  # already in S3

    def _s3_sizes(self) -> dict[int, int]:
        return {number: size for number, (size, _) in self.parts.items()}

    def _part_path(self, number: int) -> Path:
        return self.directory / f"part-{number:05d}"

    def _cut_local(self, offset: int) -> None:
        """Drop local bytes at or after ``offset``; S3 never holds unchecked bytes."""
        for number, size in self.store.local_parts(self.directory.name).items():
            start = (number - 1) * self.part_size
            path = self._part_path(number)
            if start >= offset:
                path.unlink(missing_ok=True)
            elif start + size > offset:
                with path.open("r+b") as f:
                    f.truncate(offset - start)
                    os.fsync(f.fileno())
        _remove_marker(self.pending)

    def append(self, chunks: Iterable[Chunk]) -> int:
        _write_marker(self.pending, self.offset)
        position = self.offset
        current: Any = None
        current_number = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    number, inner = divmod(position, self.part_size)
                    number += 1
                    if current is None or current_number != number:
                        if current is not None:
                            _close_synced(current)
                        path = self._part_path(number)
                        current = path.open("r+b" if path.exists() else "wb")
                        current.seek(inner)
                        current_number = number
                    take = min(len(view), self.part_size - inner)
                    current.write(view[:take])
                    position += take
                    view = view[take:]
        finally:
            if current is not None:
                _close_synced(current)
            fsync_dir(self.directory)
            written = position - self.offset
            self.offset = position
        return written

    def rollback(self) -> None:
        marker = _read_marker(self.pending)
        if marker is not None:
            self._cut_local(marker)
            self.offset = marker

    def commit(self, *, final: bool) -> None:
        _remove_marker(self.pending)
        local = self.store.local_parts(self.directory.name)
        # A file that fits in one part is stored straight from disk by finish(): no
        # multipart round trip, no server-side copy.
        whole_file_local = final and not self.parts and sorted(local) == [1]
        ready = [n for n in sorted(local) if local[n] == self.part_size or (final and not whole_file_local)]
        if len(ready) <= 1:
            for number in ready:
                self._send_part(number, local[number])
            return
        # Parts are independent: send a few at once, as boto3's own transfers do, so a
        # big PATCH is not one S3 round trip per 8 MiB in a row. boto3 clients are
        # thread-safe; each part is a file on disk, so memory stays flat.
        with ThreadPoolExecutor(max_workers=min(_PART_THREADS, len(ready))) as pool:
            for sent in [pool.submit(self._send_part, n, local[n]) for n in ready]:
                sent.result()

    def _send_part(self, number: int, size: int) -> None:
        path = self._part_path(number)
        with path.open("rb") as body:
            # botocore adds a CRC32 of the body, which S3 checks before storing the part.
            sent = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.mpu_id,
                PartNumber=number,
                Body=body,
                ContentLength=size,
            )
        self.parts[number] = (size, str(sent["ETag"]))
        # Only once S3 has it: a crash in between leaves a stale file that open() deletes.
        path.unlink()

    def read(self, start: int, stop: int) -> Iterator[bytes] | None:
        if self.assembled:
            return None
        first_local = max(self.parts, default=0) + 1
        local_start = (first_local - 1) * self.part_size
        if start < local_start:
            return None  # in S3 parts, which cannot be read before the upload is complete
        return self._read_local(start, stop)

    def _read_local(self, start: int, stop: int) -> Iterator[bytes]:
        position = start
        while position < stop:
            number, inner = divmod(position, self.part_size)
            end = min(stop, (number + 1) * self.part_size)
            yield from _read_file_range(self._part_path(number + 1), inner, inner + end - position)
            position = end

    def finish(self, sha256: str | None, declared: str | None = None) -> StoredBlob:
        storage = self.store.storage
        if not self.assembled:
            local = self.store.local_parts(self.directory.name)
            if not self.parts and sorted(local) == [1]:
                if sha256 is None and declared is not None:
                    # store_file() hashes as it stores: check first, so a mismatch stores nothing.
                    _check_declared(hash_file(self._part_path(1))[0], declared)
                stored = storage.store_file(self._part_path(1))
                if sha256 is not None and stored.sha256 != sha256:
                    raise RuntimeError(f"upload hashed to {sha256} but storage read {stored.sha256}")
                self._abort()
                return stored
            size = sum(size for size, _ in self.parts.values())
            if sha256 is not None and storage.exists(sha256):
                self._abort()  # the same bytes are stored already: nothing to assemble
                return StoredBlob(sha256=sha256, size=size, created=False)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.mpu_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etag} for n, (_, etag) in sorted(self.parts.items())]
                },
            )
            self.assembled = True
        head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        size = int(head["ContentLength"])
        if sha256 is None:
            sha256 = self._hash_assembled()
            # The assembled object is under the upload's own key; discard() deletes it.
            _check_declared(sha256, declared)
        if storage.exists(sha256):
            return StoredBlob(sha256=sha256, size=size, created=False)
        # Server-side copy to the content key; the assembled object is deleted by
        # discard() once the database has the blob.
        source = {"Bucket": self.bucket, "Key": self.key}
        target = storage.prefix + key_for(sha256)
        if size <= _MAX_COPY_OBJECT:
            self.client.copy_object(CopySource=source, Bucket=self.bucket, Key=target)
        else:  # one CopyObject stops at 5 GiB: boto3 copies in parts beyond
            self.client.copy(source, self.bucket, target, Config=storage.transfer_config)
        return StoredBlob(sha256=sha256, size=size, created=True)

    def _hash_assembled(self) -> str:
        digest = hashlib.sha256()
        body = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                digest.update(chunk)
        finally:
            body.close()
        return digest.hexdigest()

    def _abort(self) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.mpu_id)
        except self.client.exceptions.ClientError as error:
            if not _is_no_such_upload(error):
                raise


def _check_declared(sha256: str, declared: str | None) -> None:
    if declared is not None and sha256 != declared:
        raise DigestMismatch(sha256)


def _close_synced(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
