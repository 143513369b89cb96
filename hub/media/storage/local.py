"""Blobs as files under one directory: the embedded default (HUB_DATA_DIR/blobs)."""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .base import (
    BlobBatch,
    BlobNotFound,
    InvalidKey,
    StoredBlob,
    copy_and_hash,
    fsync_dir,
    is_sha256,
    key_for,
    resolve_range,
    validate_sha256,
)

# Blobs are immutable and may be served by a reverse proxy running as another user;
# mkstemp's 0600 would hide them from it.
_BLOB_MODE = 0o644


class LocalStorage:
    """Blob files at `root/ab/cd/<sha256>`, temporary files in `root/tmp`.

    On a school server this directory is production, so every name is validated and
    every resolved path is checked to stay inside `root`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        # Inside root, hence on the same filesystem: os.replace from here is atomic.
        self.tmp_dir = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, sha256: str) -> Path:
        path = (self.root / key_for(validate_sha256(sha256))).resolve()
        # A symlinked shard directory could still lead elsewhere; refuse rather than follow.
        if not path.is_relative_to(self.root) or path.parent.parent.parent != self.root:
            raise InvalidKey(f"blob path escapes the storage root: {sha256!r}")
        return path

    def store(self, fileobj: IO[bytes]) -> StoredBlob:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, prefix="store-")
        tmp = Path(tmp_name)
        moved = False
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, size = copy_and_hash(fileobj, out)
                out.flush()
                # Durable before it becomes visible under its name: a crash must not leave
                # a truncated file that claims to be a complete blob.
                os.fsync(out.fileno())
            target = self._path(sha256)
            if target.exists():
                # Same name means same bytes: keep the copy we already have.
                return StoredBlob(sha256=sha256, size=size, created=False)
            os.chmod(tmp, _BLOB_MODE)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Atomic: readers see no file or the whole file. Two concurrent stores of the
            # same bytes both succeed (and both report created=True); either copy is right.
            os.replace(tmp, target)
            moved = True
            fsync_dir(target.parent)
            return StoredBlob(sha256=sha256, size=size, created=True)
        finally:
            if not moved:
                tmp.unlink(missing_ok=True)

    def store_file(self, path: Path) -> StoredBlob:
        # A copy, not a rename or hard link: the caller still owns (and may delete or
        # rewrite) its file, and it may live on another filesystem.
        with Path(path).open("rb") as f:
            return self.store(f)

    @contextmanager
    def batch(self) -> Iterator[BlobBatch]:
        batch = _LocalBatch(self)
        try:
            yield batch
        except BaseException:
            batch.abandon()
            raise
        batch.publish()

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int:
        path = self._path(sha256)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = 65536,
    ) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        # Validate now, open later: errors surface at the call (before a response has
        # started) and an iterator that is never consumed holds no open file.
        path = self._path(sha256)
        first, stop = resolve_range(start, end, self.size(sha256))
        return self._read_range(path, sha256, first, stop, chunk_size)

    @staticmethod
    def _read_range(path: Path, sha256: str, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        remaining = stop - start
        if remaining <= 0:
            return
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        with f:
            f.seek(start)
            while remaining > 0:
                chunk = f.read(min(chunk_size, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    def fetch_to(self, sha256: str, dest: Path) -> None:
        src = self._path(sha256)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                shutil.copyfile(src, tmp)
            except FileNotFoundError:
                raise BlobNotFound(sha256) from None
            # A killed worker leaves either the old `dest` or a complete copy, never half.
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def local_path(self, sha256: str) -> Path | None:
        path = self._path(sha256)
        if not path.is_file():
            raise BlobNotFound(sha256)
        return path

    def presigned_url(
        self,
        sha256: str,
        *,
        filename: str | None = None,
        expires: int | None = None,
    ) -> str | None:
        validate_sha256(sha256)
        return None  # the app serves local blobs itself (with Range support)

    def delete(self, sha256: str) -> None:
        path = self._path(sha256)
        path.unlink(missing_ok=True)
        # Empty shard directories stay: removing them would race a concurrent store
        # that has just created the directory and is about to rename into it.

    def iter_hashes(self) -> Iterator[str]:
        # Only names that fit the layout count; root/tmp and strays are not blobs.
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        name = entry.name
                        if (
                            is_sha256(name)
                            and name[:2] == first.name
                            and name[2:4] == second.name
                            and entry.is_file(follow_symlinks=False)
                        ):
                            yield name


class _LocalBatch:
    """Blobs written to root/tmp without an fsync each, published together by `publish`.

    A blob becomes visible under its name only after its bytes are durable, as with
    store(): one barrier for the whole batch (syncfs(2) of the storage filesystem, or
    an fsync per file where that is unavailable), then the renames, then one more
    barrier for the names. A sync pull's 6,000 small blobs cost two barriers per
    batch instead of two fsyncs each. Thread-safe: several threads may add at once.
    """

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage
        self._staged: dict[str, tuple[Path, Path]] = {}  # sha256 -> (staged file, its place)
        self._lock = threading.Lock()
        storage.tmp_dir.mkdir(parents=True, exist_ok=True)

    def add(self, fileobj: IO[bytes]) -> StoredBlob:
        tmp = self._storage.tmp_dir / f"batch-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _BLOB_MODE)
        try:
            os.fchmod(fd, _BLOB_MODE)  # whatever the umask, as store() does
            with os.fdopen(fd, "wb") as out:
                sha256, size = copy_and_hash(fileobj, out)
            # Not _path(): resolving every component costs a dozen lstat per blob. The root is
            # resolved and the name validated, so only the two shard directories could lead
            # elsewhere; publish() refuses them before renaming into them.
            target = self._storage.root / key_for(validate_sha256(sha256))
            with self._lock:
                if sha256 not in self._staged and not target.exists():
                    self._staged[sha256] = (tmp, target)
                    return StoredBlob(sha256=sha256, size=size, created=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.unlink(missing_ok=True)
        return StoredBlob(sha256=sha256, size=size, created=False)

    def discard(self, sha256: str) -> None:
        with self._lock:
            staged = self._staged.pop(sha256, None)
        if staged is not None:
            staged[0].unlink(missing_ok=True)

    def abandon(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, {}
        for tmp, _target in staged.values():
            tmp.unlink(missing_ok=True)

    def publish(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, {}
        if not staged:
            return
        root = self._storage.root
        try:
            if not _syncfs(root):
                for tmp, _target in staged.values():
                    _fsync_file(tmp)
            touched: set[Path] = set()
            for sha256, (tmp, target) in staged.items():
                if target.exists():
                    continue  # stored meanwhile by someone else: same name, same bytes
                if target.parent not in touched:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.parent.is_symlink() or target.parent.parent.is_symlink():
                        raise InvalidKey(f"blob path escapes the storage root: {sha256!r}")
                os.replace(tmp, target)
                touched.update((target.parent, target.parent.parent))
            if touched and not _syncfs(root):
                for directory in sorted(touched, reverse=True):
                    fsync_dir(directory)
                fsync_dir(root)
        finally:
            for tmp, _target in staged.values():
                tmp.unlink(missing_ok=True)


def _load_syncfs() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None  # not Linux (or no syncfs): the fsync-per-file fallback
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()


def _syncfs(path: Path) -> bool:
    """Flush every file and name of the filesystem holding `path` in one call; False if not possible."""
    if _SYNCFS is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return int(_SYNCFS(fd)) == 0
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return sorted(Path(e.path) for e in entries if len(e.name) == 2 and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
