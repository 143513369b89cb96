"""Move each fragment's first sound back to its first picture in a fragmented MP4 (issue 14).

Why. ffmpeg's mp4 muxer (``frag_keyframe``) cuts a video rendition's fragments
at the keyframes' decode times and hands it the packets in decode-time order, so
the AAC frame that is playing when a keyframe comes up (it began up to one frame,
46-64 ms, earlier) closes the previous fragment, and every fragment's sound starts
a little after its picture. A seek in Chromium (FFmpegDemuxer, so in FFmpeg's mov
demuxer) finds the keyframe at or before the target, then seeks the audio track to
that keyframe's time, backwards: to the AAC frame at or before it, which is in the
previous fragment. The player then reads that fragment's index and its audio run
(up to a GOP before the keyframe) and only then the fragment it needs: at
256 kbit/s and 300 ms, a seek to 45 s in a 150 s 360p lesson made three range
requests (one backwards) and resumed after 5.3 s; the same file without its audio
track, or with the AAC frame moved as here, needs one request (the figures are in
hub/media/ffmpeg.py).

What. :func:`align_audio` rewrites such a file once after the encode: while a
fragment's audio run begins after its video run, the previous fragment's last
audio sample moves to the front of this fragment's audio run (its bytes to the
front of this fragment's audio data, its entry to the front of the ``trun``, the
``tfdt`` one frame earlier), and the ``sidx`` sizes and durations follow. No
sample is re-encoded, dropped or retimed: the file decodes to the same sound and
pictures, and only which fragment holds the frame changes.

The file is our own encoder's output, but the walk still checks the layout it
expects (one audio and one video track, one ``traf`` and ``trun`` per track per
fragment with sample data in ``traf`` order right after its ``moof``, ``sidx``
references one per fragment); anything else is left untouched. It streams: one
fragment's index in memory at a time, the sample data copied through, so a
four-hour rendition costs no more memory than a short one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# trun flags (ISO/IEC 14496-12 8.8.8)
_DATA_OFFSET = 0x1
_FIRST_SAMPLE_FLAGS = 0x4
_DURATION = 0x100
_SIZE = 0x200
_FLAGS = 0x400
_CTO = 0x800
# tfhd flags (8.8.7)
_BASE_DATA_OFFSET = 0x1
_SAMPLE_DESCRIPTION = 0x2
_DEFAULT_DURATION = 0x8
_DEFAULT_SIZE = 0x10
_DEFAULT_FLAGS = 0x20
_DEFAULT_BASE_IS_MOOF = 0x20000

_COPY_CHUNK = 1 << 20


class _Unexpected(Exception):
    """The file is not laid out as this module expects: it is left as it is."""


@dataclass
class _Sample:
    duration: int
    size: int
    flags: int
    cto: int
    offset: int
    """Where its bytes are in the original file."""


@dataclass
class _Traf:
    track: int
    tfhd: bytes
    """The whole box, copied unchanged."""
    tfdt_version: int
    decode_time: int
    trun_version: int
    trun_flags: int
    first_sample_flags: int | None
    samples: list[_Sample]
    default_duration: int | None
    default_size: int | None
    default_flags: int | None


@dataclass
class _Fragment:
    moof_offset: int
    mfhd: bytes
    trafs: list[_Traf]
    mdat_header: int
    size: int = 0
    """moof + mdat, as rewritten."""
    moof: bytes = b""
    sources: list[tuple[int, int]] = field(default_factory=list)
    """(offset, length) ranges of the original file that make up the new mdat's payload."""


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _children(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of the boxes in data[start:end]."""
    found = []
    while start < end:
        if end - start < 8:
            raise _Unexpected("truncated box")
        size, kind = struct.unpack_from(">I4s", data, start)
        if size < 8 or start + size > end:
            raise _Unexpected(f"bad {kind!r} box size")
        found.append((kind, start, start + size))
        start += size
    return found


def _read_header(file: BinaryIO) -> tuple[bytes, int, int] | None:
    """(type, header length, total size) of the box at the file's position, or None at the end."""
    head = file.read(8)
    if not head:
        return None
    if len(head) < 8:
        raise _Unexpected("truncated box header")
    size, kind = struct.unpack(">I4s", head)
    header = 8
    if size == 1:
        (size,) = struct.unpack(">Q", file.read(8))
        header = 16
    elif size == 0:
        raise _Unexpected("box to the end of the file")
    if size < header:
        raise _Unexpected("bad box size")
    return kind, header, size


def _tracks(moov: bytes) -> tuple[dict[int, bytes], dict[int, tuple[int, int, int]]]:
    """{track ID: handler type} and {track ID: trex defaults (duration, size, flags)}."""
    handlers: dict[int, bytes] = {}
    defaults: dict[int, tuple[int, int, int]] = {}
    for kind, start, end in _children(moov, 8, len(moov)):
        if kind == b"trak":
            track, handler = 0, b""
            for sub, s, e in _children(moov, start + 8, end):
                if sub == b"tkhd":
                    version = moov[s + 8]
                    (track,) = struct.unpack_from(">I", moov, s + 12 + (16 if version == 1 else 8))
                elif sub == b"mdia":
                    for inner, s2, _ in _children(moov, s + 8, e):
                        if inner == b"hdlr":
                            handler = moov[s2 + 16 : s2 + 20]
            handlers[track] = handler
        elif kind == b"mvex":
            for sub, s, _ in _children(moov, start + 8, end):
                if sub == b"trex":
                    track, _, duration, size, flags = struct.unpack_from(">5I", moov, s + 12)
                    defaults[track] = (duration, size, flags)
    return handlers, defaults


def _parse_traf(data: bytes, start: int, end: int, trex: dict[int, tuple[int, int, int]], moof_offset: int) -> _Traf:
    tfhd = tfdt = trun = None
    for kind, s, e in _children(data, start, end):
        if kind == b"tfhd" and tfhd is None:
            tfhd = (s, e)
        elif kind == b"tfdt" and tfdt is None:
            tfdt = (s, e)
        elif kind == b"trun" and trun is None:
            trun = (s, e)
        else:
            raise _Unexpected(f"{kind!r} in a traf")
    if tfhd is None or tfdt is None or trun is None:
        raise _Unexpected("a traf without tfhd, tfdt or trun")
    s, e = tfhd
    (flags,) = struct.unpack_from(">I", data, s + 8)
    flags &= 0xFFFFFF
    if flags & _BASE_DATA_OFFSET or not flags & _DEFAULT_BASE_IS_MOOF:
        raise _Unexpected("sample data not addressed from its moof")
    (track,) = struct.unpack_from(">I", data, s + 12)
    at = s + 16 + (4 if flags & _SAMPLE_DESCRIPTION else 0)
    base = trex.get(track, (0, 0, 0))
    duration, size, sample_flags = base
    default_duration = default_size = default_flags = None
    if flags & _DEFAULT_DURATION:
        (default_duration,) = struct.unpack_from(">I", data, at)
        duration, at = default_duration, at + 4
    if flags & _DEFAULT_SIZE:
        (default_size,) = struct.unpack_from(">I", data, at)
        size, at = default_size, at + 4
    if flags & _DEFAULT_FLAGS:
        (default_flags,) = struct.unpack_from(">I", data, at)
        sample_flags = default_flags
    s, e = tfdt
    tfdt_version = data[s + 8]
    decode_time = struct.unpack_from(">Q" if tfdt_version == 1 else ">I", data, s + 12)[0]
    s, e = trun
    trun_version = data[s + 8]
    (trun_flags,) = struct.unpack_from(">I", data, s + 8)
    trun_flags &= 0xFFFFFF
    (count,) = struct.unpack_from(">I", data, s + 12)
    at = s + 16
    if not trun_flags & _DATA_OFFSET:
        raise _Unexpected("a trun without a data offset")
    (data_offset,) = struct.unpack_from(">i", data, at)
    at += 4
    first_sample_flags = None
    if trun_flags & _FIRST_SAMPLE_FLAGS:
        (first_sample_flags,) = struct.unpack_from(">I", data, at)
        at += 4
    samples = []
    position = moof_offset + data_offset
    for index in range(count):
        d, z, f, c = duration, size, sample_flags, 0
        if trun_flags & _DURATION:
            (d,) = struct.unpack_from(">I", data, at)
            at += 4
        if trun_flags & _SIZE:
            (z,) = struct.unpack_from(">I", data, at)
            at += 4
        if trun_flags & _FLAGS:
            (f,) = struct.unpack_from(">I", data, at)
            at += 4
        elif index == 0 and first_sample_flags is not None:
            f = first_sample_flags
        if trun_flags & _CTO:
            (c,) = struct.unpack_from(">i" if trun_version else ">I", data, at)
            at += 4
        samples.append(_Sample(d, z, f, c, position))
        position += z
    if at != e:
        raise _Unexpected("trun length does not match its samples")
    return _Traf(
        track=track,
        tfhd=data[tfhd[0] : tfhd[1]],
        tfdt_version=tfdt_version,
        decode_time=decode_time,
        trun_version=trun_version,
        trun_flags=trun_flags,
        first_sample_flags=first_sample_flags,
        samples=samples,
        default_duration=default_duration,
        default_size=default_size,
        default_flags=default_flags,
    )


def _trun(traf: _Traf, data_offset: int) -> bytes:
    """The traf's trun for its samples now; a per-sample field is added when the defaults no longer fit."""
    flags = traf.trun_flags
    samples = traf.samples
    if traf.first_sample_flags is None:
        if not flags & _DURATION and any(s.duration != traf.default_duration for s in samples):
            flags |= _DURATION
        if not flags & _SIZE and any(s.size != traf.default_size for s in samples):
            flags |= _SIZE
        if not flags & _FLAGS and any(s.flags != traf.default_flags for s in samples):
            flags |= _FLAGS
    body = struct.pack(">II", (traf.trun_version << 24) | flags, len(samples)) + struct.pack(">i", data_offset)
    if flags & _FIRST_SAMPLE_FLAGS:
        assert traf.first_sample_flags is not None
        body += struct.pack(">I", traf.first_sample_flags)
    entry = ">" + "".join(
        code
        for bit, code in ((_DURATION, "I"), (_SIZE, "I"), (_FLAGS, "I"), (_CTO, "i" if traf.trun_version else "I"))
        if flags & bit
    )
    for sample in samples:
        values = [
            value
            for bit, value in (
                (_DURATION, sample.duration),
                (_SIZE, sample.size),
                (_FLAGS, sample.flags),
                (_CTO, sample.cto),
            )
            if flags & bit
        ]
        body += struct.pack(entry, *values)
    return _box(b"trun", body)


def _moof(fragment: _Fragment) -> bytes:
    """The fragment's moof, with every trun's data offset pointing at its run in the mdat that follows."""

    def build(offsets: list[int]) -> bytes:
        trafs = b""
        for traf, offset in zip(fragment.trafs, offsets, strict=True):
            tfdt = struct.pack(">I", traf.tfdt_version << 24) + struct.pack(
                ">Q" if traf.tfdt_version == 1 else ">I", traf.decode_time
            )
            trafs += _box(b"traf", traf.tfhd + _box(b"tfdt", tfdt) + _trun(traf, offset))
        return _box(b"moof", fragment.mfhd + trafs)

    # The offsets depend on the moof's own length, which does not depend on their values.
    size = len(build([0] * len(fragment.trafs)))
    offsets, at = [], size + fragment.mdat_header
    for traf in fragment.trafs:
        offsets.append(at)
        at += sum(s.size for s in traf.samples)
    return build(offsets)


def _sidx(box: bytes, fragments: list[_Fragment], durations: dict[int, list[int]]) -> bytes:
    """A sidx with one reference per fragment, its sizes (and its track's durations) as rewritten."""
    version = box[8]
    (track,) = struct.unpack_from(">I", box, 12)
    head = 12 + 8 + (16 if version == 1 else 8)  # header+version, ID+timescale, time+first offset
    _reserved, count = struct.unpack_from(">HH", box, head)
    if count != len(fragments) or len(box) != head + 4 + 12 * count:
        raise _Unexpected("sidx references are not one per fragment")
    out = bytearray(box[: head + 4])
    for index, fragment in enumerate(fragments):
        kind_size, duration, sap = struct.unpack_from(">III", box, head + 4 + 12 * index)
        if kind_size >> 31:
            raise _Unexpected("a sidx referencing a sidx")
        if track in durations:
            duration = durations[track][index]
        out += struct.pack(">III", fragment.size, duration, sap)
    return bytes(out)


def align_audio(path: Path) -> int:
    """Rewrite the fragmented MP4 at ``path`` so no fragment's sound starts after its picture.

    Returns how many audio samples moved (0: nothing to do, or a layout this
    module does not rewrite, and the file is untouched).
    """
    try:
        with path.open("rb") as file:
            plan = _plan(file)
            if plan is None:
                return 0
            moved, head, sidxs, fragments = plan
            temp = path.with_name(path.name + ".align")
            before = os.stat(file.fileno())
            try:
                with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "wb") as out:
                    out.write(head)
                    for sidx in sidxs:
                        out.write(sidx)
                    for fragment in fragments:
                        out.write(fragment.moof)
                        payload = fragment.size - len(fragment.moof) - 8
                        out.write(struct.pack(">I4s", payload + 8, b"mdat"))
                        for offset, length in fragment.sources:
                            _copy(file, out, offset, length)
                    # The same owner and mode as ffmpeg's file: the sandboxed decoders read it next
                    # (as their own user, see hub.media.sandbox).
                    if hasattr(os, "fchown"):
                        with contextlib.suppress(PermissionError):
                            os.fchown(out.fileno(), before.st_uid, before.st_gid)
                    os.fchmod(out.fileno(), stat.S_IMODE(before.st_mode))
                os.replace(temp, path)
            finally:
                temp.unlink(missing_ok=True)
            return moved
    except _Unexpected:
        return 0


def _copy(file: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    file.seek(offset)
    while length > 0:
        chunk = file.read(min(_COPY_CHUNK, length))
        if not chunk:
            raise _Unexpected("sample data past the end of the file")
        out.write(chunk)
        length -= len(chunk)


def _plan(file: BinaryIO) -> tuple[int, bytes, list[bytes], list[_Fragment]] | None:
    head = b""
    moov = b""
    sidxs: list[bytes] = []
    fragments: list[_Fragment] = []
    mdat_expected = False
    size_on_disk = os.fstat(file.fileno()).st_size
    while (found := _read_header(file)) is not None:
        kind, header, size = found
        start = file.tell() - header
        if start + size > size_on_disk:
            raise _Unexpected("a box past the end of the file")
        if kind in (b"ftyp", b"moov", b"free", b"skip") and not sidxs and not fragments:
            box = file.read(size - header)
            raw = struct.pack(">I4s", size, kind) + box if header == 8 else None
            if raw is None:
                raise _Unexpected("a large header box")
            head += raw
            if kind == b"moov":
                moov = raw
        elif kind == b"sidx" and not fragments:
            sidxs.append(struct.pack(">I4s", size, kind) + file.read(size - header))
        elif kind == b"moof" and not mdat_expected and moov:
            data = struct.pack(">I4s", size, kind) + file.read(size - header)
            fragments.append(_fragment(data, start, _tracks(moov)[1]))
            mdat_expected = True
        elif kind == b"mdat" and mdat_expected:
            fragment = fragments[-1]
            fragment.mdat_header = header
            expected = start + header
            for traf in fragment.trafs:
                for sample in traf.samples:
                    if sample.offset != expected:
                        raise _Unexpected("sample data not in traf order after its moof")
                    expected += sample.size
            if expected != start + size:
                raise _Unexpected("an mdat with more than its moof's samples")
            file.seek(start + size)
            mdat_expected = False
        else:
            raise _Unexpected(f"unexpected {kind!r} box")
    if mdat_expected or len(fragments) < 2:
        return None
    handlers, _ = _tracks(moov)
    audio = [t for t, h in handlers.items() if h == b"soun"]
    video = [t for t, h in handlers.items() if h == b"vide"]
    if len(audio) != 1 or len(video) != 1 or len(handlers) != 2:
        return None
    timescales = _timescales(moov)
    moved = _move(fragments, audio[0], video[0], timescales)
    if not moved:
        return None
    for fragment in fragments:
        fragment.mdat_header = 8
        fragment.moof = _moof(fragment)
        payload = sum(s.size for t in fragment.trafs for s in t.samples)
        fragment.size = len(fragment.moof) + 8 + payload
        fragment.sources = _ranges([s for t in fragment.trafs for s in t.samples])
    durations = {
        audio[0]: [sum(s.duration for s in _traf(f, audio[0]).samples) for f in fragments],
    }
    return moved, head, [_sidx(s, fragments, durations) for s in sidxs], fragments


def _fragment(data: bytes, offset: int, trex: dict[int, tuple[int, int, int]]) -> _Fragment:
    mfhd = b""
    trafs = []
    for kind, start, end in _children(data, 8, len(data)):
        if kind == b"mfhd":
            mfhd = data[start:end]
        elif kind == b"traf":
            trafs.append(_parse_traf(data, start + 8, end, trex, offset))
        else:
            raise _Unexpected(f"{kind!r} in a moof")
    if not mfhd or len({t.track for t in trafs}) != len(trafs):
        raise _Unexpected("a moof without mfhd or with a track twice")
    return _Fragment(moof_offset=offset, mfhd=mfhd, trafs=trafs, mdat_header=8)


def _timescales(moov: bytes) -> dict[int, int]:
    found: dict[int, int] = {}
    for kind, start, end in _children(moov, 8, len(moov)):
        if kind != b"trak":
            continue
        track = scale = 0
        for sub, s, e in _children(moov, start + 8, end):
            if sub == b"tkhd":
                version = moov[s + 8]
                (track,) = struct.unpack_from(">I", moov, s + 12 + (16 if version == 1 else 8))
            elif sub == b"mdia":
                for inner, s2, _ in _children(moov, s + 8, e):
                    if inner == b"mdhd":
                        version = moov[s2 + 8]
                        (scale,) = struct.unpack_from(">I", moov, s2 + 12 + (16 if version == 1 else 8))
        if not scale:
            raise _Unexpected("a track without a timescale")
        found[track] = scale
    return found


def _traf(fragment: _Fragment, track: int) -> _Traf:
    for traf in fragment.trafs:
        if traf.track == track:
            return traf
    raise _Unexpected("a fragment without one of the tracks")


def _move(fragments: list[_Fragment], audio: int, video: int, scales: dict[int, int]) -> int:
    """Move audio samples forward a fragment while a fragment's sound starts after its picture."""
    moved = 0
    a_scale, v_scale = scales[audio], scales[video]
    for previous, fragment in itertools.pairwise(fragments):
        before, sound, picture = _traf(previous, audio), _traf(fragment, audio), _traf(fragment, video)
        # Exact: audio time a / a_scale later than video time v / v_scale.
        while sound.decode_time * v_scale > picture.decode_time * a_scale and len(before.samples) > 1:
            sample = before.samples.pop()
            sound.samples.insert(0, sample)
            sound.decode_time -= sample.duration
            moved += 1
    return moved


def _ranges(samples: list[_Sample]) -> list[tuple[int, int]]:
    """The samples' bytes as few (offset, length) copies as they allow."""
    ranges: list[tuple[int, int]] = []
    for sample in samples:
        if ranges and ranges[-1][0] + ranges[-1][1] == sample.offset:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + sample.size)
        else:
            ranges.append((sample.offset, sample.size))
    return ranges
