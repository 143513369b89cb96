"""Bundle containers: a directory, a ZIP file or a tar file, read as one untrusted source.

A USB bundle arrives from outside the hub, so everything in it is hostile until checked:

- Names are validated before anything is read (no ``..``, absolute paths, backslashes,
  drive letters, characters a FAT32 drive cannot hold, duplicates, a name that is both a
  file and a directory); links, devices and fifos are refused, not skipped.
- Nothing is ever extracted: a source hands out readable streams and the caller stores what
  it verifies, so no archive path can make us write anywhere.
- ``max_bytes`` bounds the bytes really produced by decompression (counted as they are read,
  never taken from the sizes an archive declares), across every stream of one source: a zip
  bomb stops when the budget is crossed, in the middle of a read. Listing a compressed tar
  has to decompress it; that listing stops at the budget or at 16 times the file's size,
  whichever is larger. ``max_entries`` bounds the entries (files and directories) a source
  may list, checked before an archive's index is loaded into memory.

FAT32 cannot hold a file of 4 GiB, so ``write_file`` splits a large logical file into
``NAME.000``, ``NAME.001``, … and a source folds them back into one logical ``NAME``. A name
whose last dot is followed by three or more digits is therefore always a part, never a
logical name of its own.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

from hub.errors import Invalid, Text
from hub.i18n import N_

FAT32_LIMIT = 4 * 1024**3 - 1
"""The largest file a FAT32 drive holds: 4 GiB minus one byte."""

# Reads from an archive member are capped at this size, so one read() call can never
# decompress more than this much beyond the budget's last check.
_CHUNK = 1024 * 1024

# Anything longer is not a name the exporter writes; FAT32's long names stop at 255.
_MAX_COMPONENT = 255
_MAX_NAME = 1024

# FAT32 (and Windows) cannot store these; ':' is also how a drive letter sneaks in.
_FORBIDDEN = set('\\:*?"<>|') | {chr(c) for c in range(32)} | {"\x7f"}

_PART = re.compile(r"(?P<name>.*[^/])\.(?P<index>[0-9]{3,})")

# A central directory record is 46 bytes plus name, extra field and comment. Names are
# capped above; real extra fields (ZIP64, timestamps, unix ids) stay far below 1 KiB.
_MAX_CENTRAL_RECORD = 46 + _MAX_NAME + 1024 + 1024

# Per tar member: a header block, its data padding, and room for a PAX or GNU long-name
# header; plus the end-of-archive blocks and the final record's padding.
_TAR_ENTRY_OVERHEAD = 4 * 512 + _MAX_NAME * 2
_TAR_END_OVERHEAD = 20 * 512

# Media is already compressed: a real bundle's tar.gz inflates to about its own size.
# A stream that grows beyond this many times the file is a bomb.
_MAX_EXPANSION = 16


class BundleError(Invalid):
    """A bundle that cannot be read safely; the message says what is wrong with it."""

    code = "invalid_bundle"


class BundleSource(Protocol):
    def names(self) -> list[str]:
        """Logical names, split parts folded into one, in the order the container stores them."""
        ...

    def open(self, name: str) -> BinaryIO:
        """A stream of the logical file's bytes (parts joined), counted against the budget."""
        ...


# -- names ---------------------------------------------------------------------


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe relative POSIX path inside a bundle, else raise BundleError."""
    if not name:
        raise BundleError(N_("The bundle holds an entry with an empty name."))
    shown = repr(name[:200])
    if len(name) > _MAX_NAME:
        raise BundleError(
            N_("The bundle entry %(name)s has a name longer than %(most)s characters."), name=shown, most=_MAX_NAME
        )
    if name.startswith("/"):
        raise BundleError(N_("The bundle entry %(name)s has an absolute path."), name=shown)
    bad = sorted(set(name) & _FORBIDDEN)
    if bad:
        raise BundleError(
            N_(
                "The bundle entry %(name)s contains %(characters)s, which is not allowed in bundle names "
                "(backslashes, drive letters, characters FAT32 cannot store)."
            ),
            name=shown,
            characters=", ".join(repr(c) for c in bad),
        )
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise BundleError(N_("The bundle entry %(name)s has an empty, '.' or '..' path component."), name=shown)
        if len(part) > _MAX_COMPONENT:
            raise BundleError(
                N_("The bundle entry %(name)s has a path component longer than %(most)s."),
                name=shown,
                most=_MAX_COMPONENT,
            )
        if part[-1] in ". ":
            # FAT32 and Windows drop a trailing dot or space: "a." and "a" would be the same file.
            raise BundleError(
                N_("The bundle entry %(name)s has a path component ending in a dot or a space."), name=shown
            )
    return name


def _part_of(name: str) -> tuple[str, int, str] | None:
    """(logical name, index, suffix) when ``name`` is a split part, else None."""
    match = _PART.fullmatch(name)
    if match is None:
        return None
    return match["name"], int(match["index"]), match["index"]


def _fold(files: list[str], directories: Iterable[str]) -> dict[str, list[str]]:
    """Map each logical name to its stored names (one file, or parts in order); refuse conflicts."""
    seen: dict[str, str] = {}
    for name in files:
        # FAT32 drives (and macOS, Windows) do not tell case apart.
        key = name.casefold()
        if key in seen:
            raise BundleError(
                N_("The bundle holds %(name)s twice (names that differ only in case count as the same)."),
                name=repr(name),
            )
        seen[key] = name

    singles: dict[str, str] = {}
    parts: dict[str, dict[int, str]] = {}
    order: dict[str, None] = {}
    for name in files:
        part = _part_of(name)
        if part is None:
            singles[name] = name
            order.setdefault(name)
            continue
        logical, index, suffix = part
        validate_name(logical)
        if suffix != f"{index:03d}":
            raise BundleError(
                N_("The bundle part %(name)s is not numbered like %(name2)s.%(index)s."),
                name=repr(name),
                name2=logical,
                index=f"{index:03d}",
            )
        parts.setdefault(logical, {})[index] = name
        order.setdefault(logical)

    folded: dict[str, list[str]] = {}
    for logical in order:
        if logical in singles and logical in parts:
            raise BundleError(N_("The bundle holds %(name)s both whole and split into parts."), name=repr(logical))
        if logical in singles:
            folded[logical] = [singles[logical]]
            continue
        numbered = parts[logical]
        for index in range(len(numbered)):
            if index not in numbered:
                raise BundleError(
                    N_("The bundle is missing %(name)s.%(index)s: the parts of %(name2)s are not contiguous."),
                    name=logical,
                    index=f"{index:03d}",
                    name2=repr(logical),
                )
        folded[logical] = [numbered[i] for i in range(len(numbered))]

    # A name that is a file and also a directory of other names (from a ZIP or tar, which
    # allow it) could not exist on a disk; refuse rather than guess which one is meant.
    parents = {name.rsplit("/", i)[0] for name in files for i in range(1, name.count("/") + 1)}
    parents.update(directories)
    clash = sorted((set(folded) | set(files)) & parents)
    if clash:
        raise BundleError(N_("The bundle entry %(name)s is both a file and a directory."), name=repr(clash[0]))
    return folded


# -- reading -------------------------------------------------------------------


class _Budget:
    """Decompressed bytes left for one source, shared by all its streams."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.left = max_bytes
        self._lock = threading.Lock()

    def spend(self, count: int, name: str) -> None:
        with self._lock:
            if count > self.left:
                self.left = 0
                raise BundleError(
                    N_(
                        "Reading %(name)s goes over the limit of %(most)s bytes for this bundle "
                        "(counted as decompressed, whatever sizes the archive declares)."
                    ),
                    name=repr(name),
                    most=f"{self.max_bytes:,}",
                )
            self.left -= count


_DAMAGED = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,  # zipfile: a compression method it cannot read
    OSError,  # gzip.BadGzipFile, bz2's "Invalid data stream", a read error on the drive
)


def _damaged(where: str, exc: BaseException) -> BundleError:
    """A bundle that cannot be read at ``where`` (a file's name, the archive, its path), and why, in a few words.

    The library's own words (zlib's, tarfile's, the drive's errno) stay as the detail for the technician.
    """
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
        why = N_("the drive could not read it (a bad sector, or the drive was pulled out)")
    else:
        why = N_("its data is damaged or it is not a bundle")
    reason = Text(why, detail=f"{type(exc).__name__}: {exc}")
    return BundleError(N_("The bundle cannot be read at %(where)s: %(reason)s."), where=where, reason=reason)


class _JoinedReader(io.RawIOBase):
    """One logical file read part after part, every byte counted against the budget."""

    def __init__(
        self,
        name: str,
        openers: list[Callable[[], IO[bytes]]],
        budget: _Budget,
        lock: AbstractContextManager[object],
    ) -> None:
        super().__init__()
        self._name = name
        self._openers = openers
        self._budget = budget
        self._lock = lock
        self._next = 0
        self._current: IO[bytes] | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        while True:
            try:
                with self._lock:
                    if self._current is None:
                        if self._next == len(self._openers):
                            return 0
                        self._current = self._openers[self._next]()
                        self._next += 1
                    data = self._current.read(min(len(view), _CHUNK))
            except BundleError:
                raise
            except _DAMAGED as exc:
                raise _damaged(repr(self._name), exc) from exc
            if not data:
                self._current.close()
                self._current = None
                continue
            self._budget.spend(len(data), self._name)
            view[: len(data)] = data
            return len(data)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


class _Source:
    """What the three containers share: the folded names, the budget and the joined reads."""

    def __init__(self, files: list[str], directories: Iterable[str], max_bytes: int) -> None:
        self._folded = _fold(files, directories)
        self._budget = _Budget(max_bytes)
        self._lock: AbstractContextManager[object] = nullcontext()

    def names(self) -> list[str]:
        return list(self._folded)

    def open(self, name: str) -> BinaryIO:
        stored = self._folded.get(name)
        if stored is None:
            raise BundleError(N_("The bundle has no file %(name)s."), name=repr(name))
        openers: list[Callable[[], IO[bytes]]] = [partial(self._open_stored, part) for part in stored]
        return io.BufferedReader(_JoinedReader(name, openers, self._budget, self._lock), buffer_size=_CHUNK)

    def _open_stored(self, name: str) -> IO[bytes]:
        raise NotImplementedError


def _count(entries: int, max_entries: int) -> None:
    if entries > max_entries:
        raise BundleError(N_("The bundle holds more than %(most)s entries."), most=f"{max_entries:,}")


class _DirectorySource(_Source):
    def __init__(self, root: Path, max_bytes: int, max_entries: int) -> None:
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            files, directories = _walk(root, max_entries)
            super().__init__(files, directories, max_bytes)
        except BaseException:
            os.close(self._root_fd)
            raise

    def _open_stored(self, name: str) -> IO[bytes]:
        # Component by component without following links, relative to the directory we
        # listed: a file swapped for a symlink after the listing is still refused.
        *parents, leaf = name.split("/")
        fds: list[int] = []
        try:
            at = self._root_fd
            for part in parents:
                at = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at)
                fds.append(at)
            # O_NONBLOCK: a fifo put in a file's place must not hang the import.
            fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at)
        except OSError as exc:
            raise BundleError(
                N_("The bundle file %(name)s cannot be opened (is it a link?)."),
                name=repr(name),
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        finally:
            for fd_ in fds:
                os.close(fd_)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BundleError(N_("The bundle entry %(name)s is not a regular file."), name=repr(name))
        return os.fdopen(fd, "rb", buffering=0)

    def close(self) -> None:
        os.close(self._root_fd)


def _walk(root: Path, max_entries: int) -> tuple[list[str], list[str]]:
    """Every file and directory under ``root`` as relative names; links and devices refused."""
    files: list[str] = []
    directories: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(root / prefix if prefix else root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            _count(len(files) + len(directories) + 1, max_entries)
            name = validate_name(f"{prefix}/{entry.name}" if prefix else entry.name)
            if entry.is_symlink():
                raise BundleError(
                    N_("The bundle entry %(name)s is a symbolic link; bundles may not contain links."), name=repr(name)
                )
            if entry.is_dir(follow_symlinks=False):
                directories.append(name)
                pending.append(name)
            elif entry.is_file(follow_symlinks=False):
                files.append(name)
            else:
                raise BundleError(
                    N_("The bundle entry %(name)s is a device, fifo or socket, not a file."), name=repr(name)
                )
    files.sort()
    return files, directories


class _ZipSource(_Source):
    def __init__(self, path: Path, max_bytes: int, max_entries: int) -> None:
        with path.open("rb") as raw:
            _check_zip_directory(raw, max_entries)
        try:
            self._zip = zipfile.ZipFile(path)
        except _DAMAGED as exc:
            raise _damaged(Path(path).name, exc) from exc
        try:
            infos = self._zip.infolist()
            _count(len(infos), max_entries)
            files: list[str] = []
            directories: list[str] = []
            self._infos: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                _check_zip_entry(info)
                if info.is_dir():
                    directories.append(validate_name(info.filename[:-1]))
                    continue
                name = validate_name(info.filename)
                files.append(name)
                self._infos.setdefault(name, info)
            super().__init__(files, directories, max_bytes)
        except BaseException:
            self._zip.close()
            raise

    def _open_stored(self, name: str) -> IO[bytes]:
        return self._zip.open(self._infos[name])

    def close(self) -> None:
        self._zip.close()


def _check_zip_entry(info: zipfile.ZipInfo) -> None:
    # zipfile turns backslashes into slashes on Windows only; look at the raw name too.
    name = info.orig_filename
    if "\\" in name:
        raise BundleError(N_("The bundle entry %(name)s contains a backslash."), name=repr(name[:200]))
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise BundleError(
            N_("The bundle entry %(name)s is a symbolic link; bundles may not contain links."),
            name=repr(name[:200]),
        )
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise BundleError(
            N_("The bundle entry %(name)s is a device, fifo or socket, not a file."), name=repr(name[:200])
        )
    if info.flag_bits & 0x1:
        raise BundleError(N_("The bundle entry %(name)s is encrypted."), name=repr(name[:200]))


def _check_zip_directory(raw: IO[bytes], max_entries: int) -> None:
    """Refuse a ZIP whose central directory is too big, before zipfile loads all of it."""
    size = raw.seek(0, os.SEEK_END)
    tail_size = min(size, 22 + 0xFFFF + 20)
    raw.seek(size - tail_size)
    tail = raw.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise BundleError(N_("The bundle is not a readable ZIP file (no end of central directory)."))
    _, _, _, _, entries, directory_size, _, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:
        # ZIP64: the real counts are in the ZIP64 end record the locator points to.
        locator = tail[at - 20 : at] if at >= 20 else b""
        if len(locator) != 20 or not locator.startswith(b"PK\x06\x07"):
            raise BundleError(N_("The bundle is not a readable ZIP file (bad ZIP64 locator)."))
        (offset,) = struct.unpack("<Q", locator[8:16])
        raw.seek(offset)
        record = raw.read(56)
        if len(record) != 56 or not record.startswith(b"PK\x06\x06"):
            raise BundleError(N_("The bundle is not a readable ZIP file (bad ZIP64 end record)."))
        entries, directory_size = struct.unpack("<2Q", record[32:48])
    _count(entries, max_entries)
    if directory_size > max_entries * _MAX_CENTRAL_RECORD:
        raise BundleError(
            N_("The bundle's ZIP directory is larger than %(most)s entries can need."), most=f"{max_entries:,}"
        )


class _TarSource(_Source):
    def __init__(self, path: Path, max_bytes: int, max_entries: int) -> None:
        self._stack = ExitStack()
        try:
            stream = self._stack.enter_context(_decompressed(path))
            # Listing a compressed tar decompresses all of it. The listing may go as far as
            # the budget (plus headers) or as far as a plausible expansion of the file,
            # whichever is larger: a caller can list a big bundle on a small budget to read
            # one small member, while a bomb stops long before its declared sizes.
            limit = max(
                max_bytes + (max_entries + 1) * _TAR_ENTRY_OVERHEAD + _TAR_END_OVERHEAD,
                _MAX_EXPANSION * path.stat().st_size,
            )
            bounded = _BoundedStream(stream, limit)
            tar = tarfile.open(fileobj=cast(IO[bytes], bounded), mode="r:")  # noqa: SIM115 -- closed by the stack
            self._tar = self._stack.enter_context(tar)
            files: list[str] = []
            directories: list[str] = []
            self._members: dict[str, tarfile.TarInfo] = {}
            entries = 0
            while True:
                try:
                    member = self._tar.next()
                except BundleError:
                    raise
                except _DAMAGED as exc:
                    raise _damaged(path.name, exc) from exc
                if member is None:
                    break
                entries += 1
                _count(entries, max_entries)
                name = _check_tar_member(member)
                if member.isdir():
                    directories.append(name)
                else:
                    files.append(name)
                    self._members.setdefault(name, member)
            super().__init__(files, directories, max_bytes)
            # Members share one underlying stream and each read seeks it first.
            self._lock = threading.Lock()
        except BaseException:
            self._stack.close()
            raise

    def _open_stored(self, name: str) -> IO[bytes]:
        stream = self._tar.extractfile(self._members[name])
        assert stream is not None  # only regular files are listed
        return stream

    def close(self) -> None:
        self._stack.close()


def _check_tar_member(member: tarfile.TarInfo) -> str:
    name = member.name
    shown = repr(name[:200])
    if member.issym() or member.islnk():
        raise BundleError(N_("The bundle entry %(name)s is a link; bundles may not contain links."), name=shown)
    if member.ischr() or member.isblk() or member.isfifo():
        raise BundleError(N_("The bundle entry %(name)s is a device or fifo, not a file."), name=shown)
    if not (member.isreg() or member.isdir()) or member.issparse():
        raise BundleError(N_("The bundle entry %(name)s is not a plain file or directory."), name=shown)
    return validate_name(name.rstrip("/") if member.isdir() else name)


@contextmanager
def _decompressed(path: Path) -> Iterator[IO[bytes]]:
    """The tar stream inside ``path``, decompressed by what its first bytes say it is."""
    with ExitStack() as stack:
        raw = stack.enter_context(path.open("rb"))
        magic = raw.read(6)
        raw.seek(0)
        if magic.startswith(b"\x1f\x8b"):
            yield cast(IO[bytes], stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")))
        elif magic.startswith(b"BZh"):
            yield cast(IO[bytes], stack.enter_context(bz2.BZ2File(raw, mode="rb")))
        elif magic.startswith(b"\xfd7zXZ\x00"):
            yield cast(IO[bytes], stack.enter_context(lzma.LZMAFile(raw, mode="rb")))
        else:
            yield raw


class _BoundedStream:
    """A seekable stream that refuses to read or seek past ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit

    def _refuse(self) -> BundleError:
        return BundleError(
            N_("The bundle's tar stream is longer than its limit of %(most)s bytes allows."), most=f"{self._limit:,}"
        )

    def read(self, size: int = -1) -> bytes:
        position = self._stream.tell()
        room = self._limit - position
        # One byte past the limit is enough to know it was crossed.
        size = room + 1 if size < 0 else min(size, room + 1)
        data = self._stream.read(max(size, 0))
        if position + len(data) > self._limit:
            raise self._refuse()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset, whence = self._stream.tell() + offset, os.SEEK_SET
        if whence != os.SEEK_SET:
            raise io.UnsupportedOperation("bundle tar streams seek from the start only")
        # A decompressing stream seeks forward by decompressing: refuse before it does.
        if offset > self._limit:
            raise self._refuse()
        return self._stream.seek(offset)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        """The stream belongs to whoever opened it."""


def _kind(path: Path) -> str:
    with path.open("rb") as raw:
        head = raw.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    raise BundleError(N_("%(path)s is not a bundle directory, ZIP file or tar file."), path=path)


@contextmanager
def open_bundle(path: Path, *, max_bytes: int, max_entries: int) -> Iterator[BundleSource]:
    """Open a bundle directory, ZIP or tar file (any compression) for reading, checked and bounded.

    Raises BundleError for anything unsafe or damaged, when opening or while reading.
    """
    path = Path(path)
    source: _DirectorySource | _ZipSource | _TarSource
    try:
        if path.is_dir():
            source = _DirectorySource(path, max_bytes, max_entries)
        elif not path.is_file():
            raise BundleError(N_("%(path)s is not a bundle directory or archive file."), path=path)
        elif _kind(path) == "zip":
            source = _ZipSource(path, max_bytes, max_entries)
        else:
            source = _TarSource(path, max_bytes, max_entries)
    except BundleError:
        raise
    except _DAMAGED as exc:
        raise _damaged(str(path), exc) from exc
    try:
        yield source
    finally:
        source.close()


# -- writing -------------------------------------------------------------------

_FILE_MODE = 0o644


def _inside(root: Path, name: str) -> Path:
    validate_name(name)
    if _part_of(name) is not None:
        raise BundleError(N_("%(name)s would be read back as a split part; choose another name."), name=repr(name))
    target = root / name
    # A directory inside root that is a symlink could still lead out of it.
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise BundleError(N_("%(name)s would be written outside %(root)s."), name=repr(name), root=root)
    return target


def write_file(root: Path, name: str, chunks: Iterable[bytes], part_bytes: int = FAT32_LIMIT) -> list[str]:
    """Write a logical file under ``root``: whole if it fits in ``part_bytes``, else as NAME.000, NAME.001, ….

    Every file goes to a temporary name first, is fsynced, then renamed, so an interrupted
    export never leaves a truncated file under a real name. Other stored forms of the same
    logical name (a whole file, or parts, from an earlier export) are removed afterwards,
    so a reused drive never holds both. Returns the relative paths written, in order.
    """
    if part_bytes < 1:
        raise ValueError("part_bytes must be positive")
    root = Path(root)
    target = _inside(root, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise BundleError(N_("%(name)s would be written outside %(root)s."), name=repr(name), root=root)

    temps: list[Path] = []
    try:
        out: IO[bytes] | None = None
        written = 0
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if out is None or written == part_bytes:
                    if out is not None:
                        _finish(out)
                    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
                    temps.append(Path(temp_name))
                    out = os.fdopen(fd, "wb")
                    written = 0
                take = min(len(view), part_bytes - written)
                out.write(view[:take])
                written += take
                view = view[take:]
        if out is None:  # an empty file is still a file
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
            temps.append(Path(temp_name))
            out = os.fdopen(fd, "wb")
        _finish(out)

        final = [target] if len(temps) == 1 else [target.with_name(f"{target.name}.{i:03d}") for i in range(len(temps))]
        for temp, path in zip(temps, final, strict=True):
            os.chmod(temp, _FILE_MODE)
            os.replace(temp, path)
        temps = []
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)

    keep = set(final)
    for stale in [target, *target.parent.glob(f"{glob.escape(target.name)}.[0-9][0-9][0-9]*")]:
        if stale not in keep and _is_form_of(stale.name, target.name):
            stale.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return [path.relative_to(root).as_posix() for path in final]


def _is_form_of(stored: str, logical: str) -> bool:
    if stored == logical:
        return True
    part = _part_of(stored)
    return part is not None and part[0] == logical


def _finish(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- packing -------------------------------------------------------------------


def pack(root: Path, archive_path: Path) -> None:
    """Pack a bundle directory into ``.zip`` (stored: media is already compressed), ``.tar``,
    ``.tar.gz`` or ``.tgz``, chosen by ``archive_path``'s suffix.

    Files are added in sorted order without owners or timestamps' noise beyond the file
    mtime; links and devices are refused as a reader would refuse them. The archive is
    written under a temporary name and renamed when complete.
    """
    root = Path(root)
    archive_path = Path(archive_path)
    suffix = archive_path.name.lower()
    if archive_path.resolve().is_relative_to(root.resolve()):
        raise BundleError(
            N_("%(path)s is inside the bundle %(root)s; write it elsewhere."), path=archive_path, root=root
        )
    files, _ = _walk(root, max_entries=2**63)
    fd, temp_name = tempfile.mkstemp(dir=archive_path.parent, prefix=".tmp-", suffix=".pack")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if suffix.endswith(".zip"):
                with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                    for name in files:
                        archive.write(root / name, arcname=name)
            elif suffix.endswith((".tar", ".tar.gz", ".tgz")):
                mode = "w:gz" if suffix.endswith((".gz", ".tgz")) else "w:"
                with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    for name in files:
                        tar.add(root / name, arcname=name, recursive=False, filter=_anonymous)
            else:
                raise BundleError(
                    N_("%(name)s: bundle archives end in .zip, .tar, .tar.gz or .tgz."), name=archive_path.name
                )
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, _FILE_MODE)
        os.replace(temp, archive_path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(archive_path.parent)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The exporting server's user names and ids mean nothing on the school server.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = _FILE_MODE
    return info
