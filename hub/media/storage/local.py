"""Blobs as files under one directory: the embedded default (HUB_DATA_DIR/blobs)."""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
    no symlinked shard directory is followed out of `root`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        # Inside root, hence on the same filesystem: os.replace from here is atomic.
        self.tmp_dir = self.root / "tmp"
        # Shard directories (root/ab, root/ab/cd) seen to be real directories, not links.
        # Checking each path with resolve() cost eight lstat() a blob: most of the CPU of
        # serving a sync batch of small blobs, and of planning a pull. A directory seen
        # once is trusted from then on; only someone with write access to the storage
        # itself could swap it for a link, and they could as well rewrite the blobs.
        self._real_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, sha256: str) -> Path:
        # A validated name is 64 hex characters: no separator or `..` can lead out of the
        # root. Only a symlinked shard directory could; refuse rather than follow it.
        key = key_for(validate_sha256(sha256))
        self._check_shard(f"{self.root}/{key[:5]}", sha256)
        return Path(f"{self.root}/{key}")

    def _check_shard(self, shard: str, sha256: str, *, create: bool = False) -> bool:
        """True if root/ab and root/ab/cd are real directories (made first if `create`); False if missing."""
        for directory in (shard[:-3], shard):
            if directory in self._real_dirs:
                continue
            if create:
                try:
                    os.mkdir(directory)
                    self._real_dirs.add(directory)  # made here: a directory, not a link
                    continue
                except FileExistsError:
                    pass
            try:
                mode = os.lstat(directory).st_mode
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(mode):
                raise InvalidKey(f"blob path escapes the storage root: {sha256!r}")
            self._real_dirs.add(directory)
        return True

    def _lstat_blob(self, sha256: str) -> os.stat_result | None:
        """The blob file's own status (a symlink is not followed, and refused); None if absent."""
        try:
            status = os.lstat(self._path(sha256))
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(status.st_mode):
            raise InvalidKey(f"not a regular file in the storage: {sha256!r}")
        return status

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
        return self._lstat_blob(sha256) is not None

    def size(self, sha256: str) -> int:
        status = self._lstat_blob(sha256)
        if status is None:
            raise BlobNotFound(sha256)
        return status.st_size

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
        if self._lstat_blob(sha256) is None:
            raise BlobNotFound(sha256)
        return self._path(sha256)

    def presigned_url(
        self,
        sha256: str,
        *,
        filename: str | None = None,
        expires: int | None = None,
        cache_control: str | None = None,
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
        self._staged: dict[str, tuple[str, str]] = {}  # sha256 -> (staged file, its place)
        self._lock = threading.Lock()
        # Staged names: one random prefix a batch and a counter (next() on a count is
        # atomic in CPython), not a uuid4 (a getrandom call) a blob.
        self._prefix = f"{storage.tmp_dir}/batch-{uuid.uuid4().hex}-"
        self._counter = itertools.count()
        storage.tmp_dir.mkdir(parents=True, exist_ok=True)

    def add(self, fileobj: IO[bytes]) -> StoredBlob:
        tmp = f"{self._prefix}{next(self._counter)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _BLOB_MODE)
        try:
            os.fchmod(fd, _BLOB_MODE)  # whatever the umask, as store() does
            with os.fdopen(fd, "wb") as out:
                sha256, size = copy_and_hash(fileobj, out)
            # The shard directories are checked (and made) by publish(), before renaming
            # into them.
            target = f"{self._storage.root}/{key_for(validate_sha256(sha256))}"
            with self._lock:
                if sha256 not in self._staged and not os.path.lexists(target):
                    self._staged[sha256] = (tmp, target)
                    return StoredBlob(sha256=sha256, size=size, created=True)
        except BaseException:
            _unlink(tmp)
            raise
        _unlink(tmp)
        return StoredBlob(sha256=sha256, size=size, created=False)

    def discard(self, sha256: str) -> None:
        with self._lock:
            staged = self._staged.pop(sha256, None)
        if staged is not None:
            _unlink(staged[0])

    def abandon(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, {}
        for tmp, _target in staged.values():
            _unlink(tmp)

    def publish(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, {}
        if not staged:
            return
        storage = self._storage
        renamed: set[str] = set()
        try:
            if not _syncfs(storage.root):
                for tmp, _target in staged.values():
                    _fsync_file(Path(tmp))
            touched: set[str] = set()
            for sha256, (tmp, target) in staged.items():
                shard = target[: -len(sha256) - 1]
                storage._check_shard(shard, sha256, create=True)
                # Stored meanwhile by someone else? Same name, same bytes: replacing is harmless.
                os.replace(tmp, target)
                renamed.add(tmp)
                touched.update((shard, shard[:-3]))
            if touched and not _syncfs(storage.root):
                for directory in sorted(touched, reverse=True):
                    fsync_dir(Path(directory))
                fsync_dir(storage.root)
        finally:
            for tmp, _target in staged.values():
                if tmp not in renamed:
                    _unlink(tmp)


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


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
