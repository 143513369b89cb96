"""A stored (uncompressed) ZIP laid out before a byte is read: exact size, any byte range.

Media renditions are already compressed, so deflating them again saves nothing and
costs CPU; stored entries make every offset computable from the file sizes alone.
That gives the three things a course download over a dropping 256 kbit/s link needs:
`Content-Length` before the first byte, a body streamed from storage with no temp
file, and `Range` requests that resume where the link dropped.

The CRC-32 of an entry is not known until its bytes have been read, so each entry's
local header says "sizes and CRC follow" (general-purpose flag bit 3) and a data
descriptor after the data carries them; the central directory repeats them at the
end. A range that starts after an entry's data still needs that entry's CRC for the
central directory: it comes from an in-process cache filled whenever an entry is
streamed, or else from reading the blob once more on the server (fast next to the
client's link). ZIP64 records are used per entry and for the end record only when a
size or offset needs them, so small courses stay plain ZIP for old unzip tools.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["ZipEntry", "ZipLayout", "ZipWindow", "crc_cache_clear"]

Reader = Callable[[int, int], Iterator[bytes]]
"""read(start, stop) yields the bytes [start, stop) of an entry's data."""

_LIMIT32 = 0xFFFFFFFF
_LIMIT16 = 0xFFFF
_FLAGS = 0x0008 | 0x0800  # bit 3: data descriptor follows; bit 11: names are UTF-8
_VERSION = 20  # 2.0: stored entries, data descriptors
_VERSION64 = 45  # 4.5: ZIP64
_UNIX = 3 << 8  # "version made by" host byte: external attributes are Unix modes
_FILE_MODE = 0o100644 << 16

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_DESCRIPTOR = struct.Struct("<IIII")  # 16 bytes
_DESCRIPTOR64 = struct.Struct("<IIQQ")  # 24 bytes
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_END64 = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_LOCATOR64 = struct.Struct("<IIQI")  # 20 bytes

# -- the CRC cache ---------------------------------------------------------------------

_CRC_CACHE_SIZE = 100_000  # ~100 bytes an entry: a few MB for every blob a hub serves
_crc_cache: OrderedDict[str, int] = OrderedDict()
_crc_lock = threading.Lock()


def _cached_crc(key: str) -> int | None:
    with _crc_lock:
        crc = _crc_cache.get(key)
        if crc is not None:
            _crc_cache.move_to_end(key)
        return crc


def _remember_crc(key: str, crc: int) -> None:
    with _crc_lock:
        _crc_cache[key] = crc
        _crc_cache.move_to_end(key)
        while len(_crc_cache) > _CRC_CACHE_SIZE:
            _crc_cache.popitem(last=False)


def crc_cache_clear() -> None:
    """Forget every cached CRC (tests use it to exercise the recompute path)."""
    with _crc_lock:
        _crc_cache.clear()


# -- layout ------------------------------------------------------------------------------


@dataclass
class ZipEntry:
    """One file of the archive: a name, a size, and either bytes or a reader of them.

    `key` names the content for the CRC cache (a blob's sha256); entries given as
    `data` have their CRC computed at once.
    """

    name: str
    size: int
    key: str = ""
    data: bytes | None = None
    reader: Reader | None = None
    crc: int | None = field(default=None, repr=False)
    zip64: bool = False
    offset: int = 0  # of the local header

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            self.crc = zlib.crc32(self.data)
        elif self.reader is None:
            raise ValueError(f"{self.name}: an entry needs data or a reader")
        elif self.key:
            self.crc = _cached_crc(self.key)

    def read(self, start: int, stop: int) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data[start:stop]
        elif stop > start:
            assert self.reader is not None
            yield from self.reader(start, stop)

    def ensure_crc(self) -> int:
        """The entry's CRC-32, reading all of its data if nobody has yet."""
        if self.crc is None:
            crc = 0
            for chunk in self.read(0, self.size):
                crc = zlib.crc32(chunk, crc)
            self._set_crc(crc)
        assert self.crc is not None
        return self.crc

    def _set_crc(self, crc: int) -> None:
        self.crc = crc
        if self.key:
            _remember_crc(self.key, crc)


def _dos_time(when: datetime) -> tuple[int, int]:
    year = min(max(when.year, 1980), 2107)
    date = ((year - 1980) << 9) | (when.month << 5) | when.day
    time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    return time, date


@dataclass(frozen=True)
class _Span:
    """Bytes [start, stop) of the archive produced by one piece of the layout."""

    start: int
    stop: int
    kind: str  # "header" | "data" | "descriptor" | "central"
    entry: int  # index into entries; -1 for the central directory and end records


class ZipLayout:
    """The archive's layout: every offset and the total size, before reading any data.

    `zip64_limit` is the size or offset from which ZIP64 records are needed; tests
    lower it to exercise the ZIP64 framing without writing 4 GiB.
    """

    def __init__(self, entries: list[ZipEntry], modified: datetime, zip64_limit: int = _LIMIT32) -> None:
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("ZIP entry names must be unique")
        self.entries = entries
        self._time, self._date = _dos_time(modified)
        self._limit = zip64_limit
        self._headers: list[bytes] = []
        spans: list[_Span] = []
        offset = 0
        for index, entry in enumerate(entries):
            entry.offset = offset
            entry.zip64 = entry.size >= zip64_limit
            header = self._local_header(entry)
            self._headers.append(header)
            for kind, length in (("header", len(header)), ("data", entry.size), ("descriptor", self._desc_len(entry))):
                spans.append(_Span(offset, offset + length, kind, index))
                offset += length
        self.central_offset = offset
        self.central_size = sum(_CENTRAL.size + len(e.name.encode()) + len(self._central_extra(e)) for e in entries)
        self._end64 = (
            len(entries) >= min(_LIMIT16, zip64_limit)
            or self.central_offset >= zip64_limit
            or self.central_size >= zip64_limit
        )
        tail = self.central_size + (_END64.size + _LOCATOR64.size if self._end64 else 0) + _END.size
        spans.append(_Span(offset, offset + tail, "central", -1))
        self.size = offset + tail
        self._spans = spans
        self._central_bytes: bytes | None = None

    # -- records -------------------------------------------------------------------

    @staticmethod
    def _desc_len(entry: ZipEntry) -> int:
        return _DESCRIPTOR64.size if entry.zip64 else _DESCRIPTOR.size

    def _local_header(self, entry: ZipEntry) -> bytes:
        name = entry.name.encode()
        if entry.zip64:
            # Sizes "in the extra field", zero there too: the data descriptor has them.
            extra = struct.pack("<HHQQ", 0x0001, 16, 0, 0)
            sizes, version = _LIMIT32, _VERSION64
        else:
            extra, sizes, version = b"", 0, _VERSION
        fixed = _LOCAL.pack(
            0x04034B50, version, _FLAGS, 0, self._time, self._date, 0, sizes, sizes, len(name), len(extra)
        )
        return fixed + name + extra

    def _central_extra(self, entry: ZipEntry) -> bytes:
        values = []
        if entry.zip64:
            values += [entry.size, entry.size]  # uncompressed, then compressed
        if entry.offset >= self._limit:
            values.append(entry.offset)
        if not values:
            return b""
        return struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values)

    def _descriptor(self, entry: ZipEntry) -> bytes:
        crc = entry.ensure_crc()
        if entry.zip64:
            return _DESCRIPTOR64.pack(0x08074B50, crc, entry.size, entry.size)
        return _DESCRIPTOR.pack(0x08074B50, crc, entry.size, entry.size)

    def _central(self) -> bytes:
        parts = []
        for entry in self.entries:
            name = entry.name.encode()
            extra = self._central_extra(entry)
            needs64 = entry.zip64 or entry.offset >= self._limit
            sizes = _LIMIT32 if entry.zip64 else entry.size
            parts.append(
                _CENTRAL.pack(
                    0x02014B50,
                    _UNIX | (_VERSION64 if needs64 else _VERSION),
                    _VERSION64 if needs64 else _VERSION,
                    _FLAGS,
                    0,
                    self._time,
                    self._date,
                    entry.ensure_crc(),
                    sizes,
                    sizes,
                    len(name),
                    len(extra),
                    0,
                    0,
                    0,
                    _FILE_MODE,
                    entry.offset if entry.offset < self._limit else _LIMIT32,
                )
                + name
                + extra
            )
        count = len(self.entries)
        if self._end64:
            end64_offset = self.central_offset + self.central_size
            parts.append(
                _END64.pack(
                    0x06064B50,
                    _END64.size - 12,
                    _UNIX | _VERSION64,
                    _VERSION64,
                    0,
                    0,
                    count,
                    count,
                    self.central_size,
                    self.central_offset,
                )
            )
            parts.append(_LOCATOR64.pack(0x07064B50, 0, end64_offset, 1))
            small_count = min(count, _LIMIT16)
            parts.append(_END.pack(0x06054B50, 0, 0, small_count, small_count, _LIMIT32, _LIMIT32, 0))
        else:
            parts.append(_END.pack(0x06054B50, 0, 0, count, count, self.central_size, self.central_offset, 0))
        return b"".join(parts)

    # -- reading -------------------------------------------------------------------

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield archive bytes `start`..`end` inclusive (all of it by default)."""
        stop = self.size if end is None else min(end + 1, self.size)
        if not 0 <= start <= stop:
            raise ValueError(f"bad range {start}-{end} of {self.size} bytes")
        for span in self._spans:
            if span.stop <= start or span.start >= stop:
                continue
            lo, hi = max(start, span.start) - span.start, min(stop, span.stop) - span.start
            if span.kind == "data":
                yield from self._data(self.entries[span.entry], lo, hi)
            else:
                record = self._record(span)
                yield record[lo:hi]

    def _record(self, span: _Span) -> bytes:
        if span.kind == "header":
            return self._headers[span.entry]
        if span.kind == "descriptor":
            return self._descriptor(self.entries[span.entry])
        if self._central_bytes is None:
            self._central_bytes = self._central()
        return self._central_bytes

    def _data(self, entry: ZipEntry, lo: int, hi: int) -> Iterator[bytes]:
        """Entry bytes [lo, hi), learning the CRC on the way when this read can give it."""
        if entry.crc is not None or hi < entry.size:
            # Known already, or this read stops short of the descriptor that needs it.
            yield from entry.read(lo, hi)
            return
        # The CRC runs from byte 0: a resumed read first hashes the part the client
        # already has (server-side, not sent), then keeps hashing what it sends.
        crc = 0
        if lo:
            for chunk in entry.read(0, lo):
                crc = zlib.crc32(chunk, crc)
        for chunk in entry.read(lo, hi):
            crc = zlib.crc32(chunk, crc)
            yield chunk
        if hi == entry.size:
            entry._set_crc(crc)


class ZipWindow:
    """Archive bytes [start, stop) as a read-only file, for a WSGI server's file_wrapper.

    waitress sends a file_wrapper from its I/O loop as the socket drains, so a slow
    client holds no worker thread; it reads forward in small steps, re-reading a
    step when the socket took only part of it. The CRC of each entry is learnt on
    that forward pass (a frontier per entry, so re-reads are not hashed twice); what
    the pass cannot learn, the part of the archive before `start`, is hashed here, in
    the request's thread. Only for local storage: entry reads must be quick file
    reads, never network round trips, inside the I/O loop.
    """

    def __init__(self, layout: ZipLayout, start: int, stop: int, on_done: Callable[[], None] | None = None) -> None:
        if not 0 <= start <= stop <= layout.size:
            raise ValueError(f"bad window {start}-{stop} of {layout.size} bytes")
        self._layout = layout
        self._start, self._stop, self._pos = start, stop, start
        self._on_done = on_done
        self._closed = False
        self._frontier: dict[int, tuple[int, int]] = {}  # entry → (bytes hashed, crc so far)
        for index, entry in enumerate(layout.entries):
            data_start = entry.offset + len(layout._headers[index])
            if entry.crc is not None or data_start >= start:
                continue
            if data_start + entry.size <= start:
                if stop > data_start + entry.size:  # its descriptor or the directory is to be sent
                    entry.ensure_crc()
                continue
            crc = 0
            for chunk in entry.read(0, start - data_start):
                crc = zlib.crc32(chunk, crc)
            self._frontier[index] = (start - data_start, crc)

    def read(self, size: int = -1) -> bytes:
        left = self._stop - self._pos
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        lo_abs, hi_abs = self._pos, self._pos + want
        parts: list[bytes] = []
        for span in self._layout._spans:
            if span.stop <= lo_abs or span.start >= hi_abs:
                continue
            lo, hi = max(lo_abs, span.start) - span.start, min(hi_abs, span.stop) - span.start
            if span.kind == "data":
                parts.append(self._data(span.entry, lo, hi))
            else:
                parts.append(self._layout._record(span)[lo:hi])
        data = b"".join(parts)
        self._pos += len(data)
        return data

    def _data(self, index: int, lo: int, hi: int) -> bytes:
        entry = self._layout.entries[index]
        data = b"".join(entry.read(lo, hi))
        if entry.crc is None:
            done, crc = self._frontier.get(index, (0, 0))
            if lo <= done < hi:
                crc = zlib.crc32(data[done - lo :], crc)
                done = hi
                if done == entry.size:
                    entry._set_crc(crc)
                self._frontier[index] = (done, crc)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            target = offset
        elif whence == 1:
            target = self._pos + offset
        else:
            target = self._stop + offset  # the end of the window is the end of "the file"
        self._pos = min(max(target, self._start), self._stop)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pos >= self._stop and self._on_done is not None:
            self._on_done()
