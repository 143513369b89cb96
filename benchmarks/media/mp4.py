"""A small ISO-BMFF (MP4) box walker: how many bytes a player needs before the first frame.

Only what the benchmark measures is parsed: the track handlers and IDs in
``moov``, the sample sizes and chunk offsets of a progressive file
(``stsz``/``stco``/``co64``), and the ``tfhd``/``trun`` of each ``moof`` of a
fragmented one. From them:

- ``head``: bytes before the first byte of media data, i.e. to the end of the
  header of the ``mdat`` that holds the first sample: ``ftyp`` + ``moov`` (+
  ``sidx`` + first ``moof``) + 8. For a progressive file this is the whole index;
  for a fragmented one the track headers and one fragment's index.
- ``first_frame``: bytes through the end of the first video sample (the first
  audio sample when there is no video): what must have arrived before a player
  can decode and show the first picture.
- ``first_fragment``: bytes through the end of the first ``mdat``, for players
  that wait for a whole fragment before they play it.
- per-track sample bytes (``vide``/``soun``), to split a rendition's rate into
  video, audio and container overhead.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts", b"dinf"})


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int
    """Offset of the box's first byte in the file (or in its parent's payload)."""
    header: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class Layout:
    fragmented: bool = False
    head: int = 0
    first_frame: int = 0
    first_fragment: int = 0
    track_bytes: dict[str, int] = field(default_factory=dict)
    """Handler type ("vide", "soun") -> bytes of its samples."""
    top_level: list[str] = field(default_factory=list)
    """The first top-level box types, in order (ftyp, moov, sidx, moof, mdat, ...)."""


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes directly inside ``data[start:end]``."""
    end = len(data) if end is None else end
    found: list[Box] = []
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            break
        found.append(Box(kind, offset, header, size))
        offset += size
    return found


def top_level_boxes(file: BinaryIO, file_size: int) -> list[Box]:
    """The file's top-level boxes, by seeking from header to header (mdat payloads are never read)."""
    found: list[Box] = []
    offset = 0
    while offset + 8 <= file_size:
        file.seek(offset)
        head = file.read(16)
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", head[8:16])
            header = 16
        elif size == 0:
            size = file_size - offset
        if size < header:
            raise ValueError(f"bad box {kind!r} at {offset}")
        found.append(Box(kind, offset, header, size))
        offset += size
    return found


def _child(data: bytes, parent: Box, kind: bytes) -> Box | None:
    return next((b for b in boxes(data, parent.start + parent.header, parent.end) if b.kind == kind), None)


def _full_box(data: bytes, box: Box) -> tuple[int, int, int]:
    """(version, flags, payload offset) of a full box."""
    at = box.start + box.header
    version, flags = data[at], int.from_bytes(data[at + 1 : at + 4], "big")
    return version, flags, at + 4


@dataclass
class _Track:
    track_id: int
    handler: str
    sizes: list[int]
    chunk_offsets: list[int]
    default_size: int = 0


def _tracks(moov: bytes) -> dict[int, _Track]:
    tracks: dict[int, _Track] = {}
    root = Box(b"moov", 0, 0, len(moov))
    for trak in (b for b in boxes(moov) if b.kind == b"trak"):
        tkhd, mdia = _child(moov, trak, b"tkhd"), _child(moov, trak, b"mdia")
        if tkhd is None or mdia is None:
            continue
        version, _, at = _full_box(moov, tkhd)
        at += 16 if version == 1 else 8  # creation and modification times
        (track_id,) = struct.unpack(">I", moov[at : at + 4])
        hdlr = _child(moov, mdia, b"hdlr")
        handler = moov[hdlr.start + hdlr.header + 8 : hdlr.start + hdlr.header + 12].decode("latin-1") if hdlr else ""
        track = _Track(track_id, handler, [], [])
        minf = _child(moov, mdia, b"minf")
        stbl = _child(moov, minf, b"stbl") if minf else None
        if stbl is not None:
            stsz = _child(moov, stbl, b"stsz")
            if stsz is not None:
                _, _, at = _full_box(moov, stsz)
                sample_size, count = struct.unpack(">II", moov[at : at + 8])
                if sample_size:  # every sample the same size
                    track.sizes = [sample_size] * count
                else:
                    track.sizes = list(struct.unpack(f">{count}I", moov[at + 8 : at + 8 + 4 * count]))
            stco, co64 = _child(moov, stbl, b"stco"), _child(moov, stbl, b"co64")
            if stco is not None or co64 is not None:
                box, width = (stco, "I") if stco is not None else (co64, "Q")
                assert box is not None
                _, _, at = _full_box(moov, box)
                (count,) = struct.unpack(">I", moov[at : at + 4])
                step = struct.calcsize(width)
                track.chunk_offsets = list(struct.unpack(f">{count}{width}", moov[at + 4 : at + 4 + step * count]))
        tracks[track_id] = track
    mvex = _child(moov, root, b"mvex")
    if mvex is not None:
        for trex in (b for b in boxes(moov, mvex.start + mvex.header, mvex.end) if b.kind == b"trex"):
            _, _, at = _full_box(moov, trex)
            track_id, _, _, default_size = struct.unpack(">IIII", moov[at : at + 16])
            if track_id in tracks:
                tracks[track_id].default_size = default_size
    return tracks


def _fragment_samples(moof: bytes, box: Box, tracks: dict[int, _Track]) -> list[tuple[int, int, int]]:
    """(track ID, file offset, size) of each sample the moof ``box`` (whose bytes are ``moof``) describes."""
    samples: list[tuple[int, int, int]] = []
    moof_start = box.start
    for traf in (b for b in boxes(moof, box.header) if b.kind == b"traf"):
        tfhd = _child(moof, traf, b"tfhd")
        if tfhd is None:
            continue
        _, flags, at = _full_box(moof, tfhd)
        (track_id,) = struct.unpack(">I", moof[at : at + 4])
        at += 4
        base, default_size = moof_start, tracks[track_id].default_size if track_id in tracks else 0
        if flags & 0x1:  # base-data-offset-present
            (base,) = struct.unpack(">Q", moof[at : at + 8])
            at += 8
        at += 4 if flags & 0x2 else 0  # sample-description-index
        at += 4 if flags & 0x8 else 0  # default-sample-duration
        if flags & 0x10:  # default-sample-size
            (default_size,) = struct.unpack(">I", moof[at : at + 4])
        # Without base-data-offset the base is the moof (default-base-is-moof, or the first traf).
        position = base
        for trun in (b for b in boxes(moof, traf.start + traf.header, traf.end) if b.kind == b"trun"):
            _, flags, at = _full_box(moof, trun)
            (count,) = struct.unpack(">I", moof[at : at + 4])
            at += 4
            if flags & 0x1:  # data-offset-present
                (data_offset,) = struct.unpack(">i", moof[at : at + 4])
                position = base + data_offset
                at += 4
            at += 4 if flags & 0x4 else 0  # first-sample-flags
            fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
            for _ in range(count):
                size = default_size
                for bit in fields:
                    if bit == 0x200:
                        (size,) = struct.unpack(">I", moof[at : at + 4])
                    at += 4
                samples.append((track_id, position, size))
                position += size
    return samples


def layout(path: Path) -> Layout:
    """Where the first frame is, and how the bytes split between tracks (see the module's docstring)."""
    result = Layout()
    file_size = path.stat().st_size
    totals: dict[int, int] = defaultdict(int)
    with path.open("rb") as file:
        top = top_level_boxes(file, file_size)
        result.top_level = [b.kind.decode("latin-1") for b in top[:6]]
        moov_box = next((b for b in top if b.kind == b"moov"), None)
        if moov_box is None:
            raise ValueError(f"{path} has no moov")
        file.seek(moov_box.start + moov_box.header)
        tracks = _tracks(file.read(moov_box.size - moov_box.header))
        wanted = next((t.track_id for t in tracks.values() if t.handler == "vide"), None)
        if wanted is None:
            wanted = next(iter(tracks))
        moofs = [b for b in top if b.kind == b"moof"]
        result.fragmented = bool(moofs)
        first_sample: tuple[int, int] | None = None  # (offset, size) of the wanted track's first sample
        first_media = file_size
        if result.fragmented:
            for moof in moofs:
                file.seek(moof.start)
                for track_id, offset, size in _fragment_samples(file.read(moof.size), moof, tracks):
                    totals[track_id] += size
                    first_media = min(first_media, offset)
                    if track_id == wanted and first_sample is None:
                        first_sample = (offset, size)
        else:
            for track in tracks.values():
                totals[track.track_id] = sum(track.sizes)
                if track.chunk_offsets:
                    first_media = min(first_media, track.chunk_offsets[0])
                if track.track_id == wanted and track.chunk_offsets and track.sizes:
                    first_sample = (track.chunk_offsets[0], track.sizes[0])
    if first_sample is None:
        raise ValueError(f"{path} has no samples")
    holder = next(b for b in top if b.kind == b"mdat" and b.start <= first_media < b.end)
    result.head = holder.start + holder.header
    result.first_frame = first_sample[0] + first_sample[1]
    result.first_fragment = holder.end if result.fragmented else result.first_frame
    for track_id, size in totals.items():
        handler = tracks[track_id].handler
        result.track_bytes[handler] = result.track_bytes.get(handler, 0) + size
    return result


def fragment_starts(path: Path) -> list[tuple[float, int]]:
    """(start time in s, byte offset) of each fragment, from the video track's ``sidx`` (else the first); [].

    Where a player reads from to seek to a time: the last fragment starting at or before it.
    """
    indexes: dict[int, list[tuple[float, int]]] = {}
    with path.open("rb") as file:
        top = top_level_boxes(file, path.stat().st_size)
        moov = next((b for b in top if b.kind == b"moov"), None)
        if moov is None:
            return []
        file.seek(moov.start + moov.header)
        video = [t.track_id for t in _tracks(file.read(moov.size - moov.header)).values() if t.handler == "vide"]
        for sidx in (b for b in top if b.kind == b"sidx"):
            file.seek(sidx.start)
            track, starts = _sidx(file.read(sidx.size), sidx)
            indexes.setdefault(track, starts)
    if not indexes:
        return []
    return indexes[video[0]] if video and video[0] in indexes else next(iter(indexes.values()))


def _sidx(data: bytes, sidx: Box) -> tuple[int, list[tuple[float, int]]]:
    """(track ID, [(start s, byte offset)]) of a sidx box (``data`` is the whole box)."""
    version, _, at = _full_box(data, Box(b"sidx", 0, sidx.header, sidx.size))
    track, timescale = struct.unpack(">II", data[at : at + 8])
    at += 8
    if version == 0:
        earliest, first_offset = struct.unpack(">II", data[at : at + 8])
        at += 8
    else:
        earliest, first_offset = struct.unpack(">QQ", data[at : at + 16])
        at += 16
    _, count = struct.unpack(">HH", data[at : at + 4])
    at += 4
    starts, time, offset = [], earliest, sidx.end + first_offset
    for _ in range(count):
        size, duration, _ = struct.unpack(">III", data[at : at + 12])
        at += 12
        starts.append((time / timescale, offset))
        time, offset = time + duration, offset + (size & 0x7FFFFFFF)
    return track, starts
