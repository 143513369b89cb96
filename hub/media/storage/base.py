"""The blob storage contract and the helpers both backends share.

Every stored byte string is named by its sha256 (DESIGN.md section 4), so a blob is
written once, never modified, and the same bytes uploaded twice are stored once.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TypeGuard, runtime_checkable
from urllib.parse import quote

__all__ = [
    "CHUNK_SIZE",
    "BlobBatch",
    "BlobNotFound",
    "InvalidKey",
    "Storage",
    "StoredBlob",
    "content_disposition",
    "copy_and_hash",
    "fsync_dir",
    "hash_file",
    "is_sha256",
    "key_for",
    "resolve_range",
    "validate_sha256",
]

CHUNK_SIZE = 1024 * 1024
"""Bytes read per step while storing: bounded memory whatever the blob's size."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class InvalidKey(ValueError):
    """A blob name that is not 64 lowercase hex digits (the path-traversal guard)."""


class BlobNotFound(LookupError):
    """No blob is stored under this sha256."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"blob {sha256} not found")
        self.sha256 = sha256


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    created: bool  # False when the blob already existed (dedup)


class BlobBatch(Protocol):
    """Blobs stored together behind one durability barrier (see Storage.batch)."""

    def add(self, fileobj: IO[bytes]) -> StoredBlob:
        """Stream `fileobj` in, hashing on the way; created=False when the blob is already stored or added."""
        ...

    def discard(self, sha256: str) -> None:
        """Do not keep a blob this batch created (bytes that failed a check); otherwise a no-op."""
        ...


@runtime_checkable
class Storage(Protocol):
    """Content-addressed blob storage: local directory by default, S3 in production."""

    def store(self, fileobj: IO[bytes]) -> StoredBlob:
        """Stream `fileobj` to its end in 1 MiB chunks, hashing on the way; dedupe."""
        ...

    def store_file(self, path: Path) -> StoredBlob:
        """Store the file at `path` (a worker's output); the file is left in place."""
        ...

    def batch(self) -> AbstractContextManager[BlobBatch]:
        """Store many blobs at the cost of one durability barrier instead of one per blob.

        When the block exits normally, every blob added and not discarded is stored,
        durable and visible under its name; when it raises, none it created is kept.
        Inside the block an added blob may not be visible yet (the local backend keeps
        "durable before visible under its name" by publishing at the exit).
        """
        ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int:
        """The blob's length in bytes; BlobNotFound if absent."""
        ...

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = 65536,
    ) -> Iterator[bytes]:
        """Yield bytes `start`..`end` inclusive (HTTP range semantics), in chunks.

        Errors are raised by the call itself, before any iteration: BlobNotFound if
        absent, ValueError for an invalid range (see `resolve_range`).
        """
        ...

    def fetch_to(self, sha256: str, dest: Path) -> None:
        """Copy the blob to the local file `dest` (atomically replaced)."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """The blob's file when the backend has one (BlobNotFound if absent), else None."""
        ...

    def presigned_url(
        self,
        sha256: str,
        *,
        filename: str | None = None,
        expires: int | None = None,
        cache_control: str | None = None,
    ) -> str | None:
        """A time-limited direct download URL, or None when the app must serve the bytes.

        `cache_control` is the Cache-Control the storage sends with the bytes: the app's
        verdict on who may keep them (a draft's blob is `private, no-store`).
        """
        ...

    def delete(self, sha256: str) -> None:
        """Remove the blob; deleting an absent blob is not an error."""
        ...

    def iter_hashes(self) -> Iterator[str]:
        """Every stored blob's sha256, in no particular order."""
        ...


def is_sha256(value: object) -> TypeGuard[str]:
    """True for exactly 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def validate_sha256(value: object) -> str:
    """Return `value` if it is a blob name, else raise InvalidKey.

    Blob names end up in file paths and object keys, so this is what keeps `../`,
    separators and look-alike names out of them.
    """
    if not is_sha256(value):
        raise InvalidKey(f"not a sha256 hex digest: {value!r}")
    return value


def key_for(sha256: str) -> str:
    """The relative key of a blob: "ab/cd/abcd…".

    Two levels of two hex characters keep every directory small (65,536 leaves), as
    Kolibri's content storage does, which matters on ext4 and on FAT-formatted drives.
    """
    sha256 = validate_sha256(sha256)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def resolve_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Turn an inclusive HTTP-style range into a half-open [start, stop) over `size` bytes.

    - `end` None, or past the last byte, is clamped to the last byte (RFC 9110 does the
      same for a last-byte-pos beyond the representation).
    - `start == size` is an empty range, so resuming a finished transfer reads nothing;
      `start > size`, a negative `start` or `end < start` raise ValueError.
    Answering 416 for an unsatisfiable HTTP Range header is the view's job (it has size()).
    """
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if start > size:
        raise ValueError(f"range start {start} is beyond the blob's {size} bytes")
    if end is None:
        return start, size
    if end < start:
        raise ValueError(f"range end {end} is before its start {start}")
    return start, min(end + 1, size)


def copy_and_hash(src: IO[bytes], dst: IO[bytes]) -> tuple[str, int]:
    """Copy `src` to `dst` in CHUNK_SIZE steps; return (sha256 hex, bytes copied)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = src.read(CHUNK_SIZE)
        if not chunk:
            break
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def hash_file(path: Path) -> tuple[str, int]:
    """The (sha256 hex, size) of a file on disk, read in CHUNK_SIZE steps."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# RFC 5987 attr-char minus the alphanumerics quote() keeps anyway.
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"
_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._()\- ]+")


def _ascii_fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _FALLBACK_UNSAFE.sub("_", folded).strip(" ._")


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A Content-Disposition value that keeps a Chinese filename (RFC 6266 + RFC 5987).

    Browsers that understand `filename*` (all current ones) use the UTF-8 name; the plain
    `filename` is an ASCII stand-in for the rest ("download.mp4" when nothing of the
    name is ASCII). Directory parts and control characters are dropped so the header can
    neither be split nor point outside the download folder.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in {"", ".", ".."}:
        name = "download"
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ascii_ext = _ascii_fold(ext)
    ascii_name = (_ascii_fold(stem) or "download") + (f".{ascii_ext}" if ascii_ext else "")
    encoded = quote(name, safe=_ATTR_CHAR_SAFE)
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
