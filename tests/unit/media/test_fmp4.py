"""hub.media.fmp4: each fragment's sound moved back to its keyframe, nothing else changed (issue 14)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hub.media.fmp4 import align_audio
from tests.support.media import ffmpeg

# The muxing of a video rendition (hub.media.ffmpeg): audio mapped first, a fragment per GOP.
FRAGMENTED = "+empty_moov+default_base_moof+global_sidx+skip_trailer+frag_keyframe"


def clip(path: Path, *, seconds: int = 12, movflags: str = FRAGMENTED, rate: int = 22050) -> Path:
    """15 fps pictures with a keyframe every 2 s (not on an AAC frame boundary), and a tone."""
    return ffmpeg(
        path,
        *("-f", "lavfi", "-i", f"testsrc2=size=160x90:rate=15:d={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}"),
        *("-map", "1:a", "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30"),
        *("-c:a", "aac", "-b:a", "20k", "-ac", "1", "-f", "mp4", "-movflags", movflags),
    )


def packets(path: Path) -> list[tuple[str, ...]]:
    """Every packet's stream, timestamps, size, flags and checksum, in timestamp order."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-show_data_hash", "MD5", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    fields = ("stream_index", "pts", "dts", "duration", "size", "flags", "data_hash")
    return sorted(tuple(str(p.get(f)) for f in fields) for p in json.loads(out)["packets"])


def fragment_starts(path: Path) -> list[tuple[float, float]]:
    """(first audio dts, first video dts) in seconds of each fragment, as a demuxer reads them."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pos,dts_time", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    data = path.read_bytes()
    moofs, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"moof":
            moofs.append(offset)
        offset += size
    firsts: dict[tuple[int, int], float] = {}
    for p in sorted(json.loads(out)["packets"], key=lambda p: int(p["pos"])):
        fragment = sum(1 for m in moofs if m < int(p["pos"])) - 1
        firsts.setdefault((fragment, p["stream_index"]), float(p["dts_time"]))
    return [(firsts[(i, 0)], firsts[(i, 1)]) for i in range(len(moofs))]


@pytest.mark.parametrize("rate", [22050, 16000])  # the renditions' two audio rates
def test_moves_the_sound_at_each_keyframe_into_its_fragment(tmp_path: Path, rate: int) -> None:
    original = clip(tmp_path / "a.mp4", rate=rate)
    late = [i for i, (audio, video) in enumerate(fragment_starts(original)) if audio > video]
    assert late, "the muxer no longer starts fragments' sound late: this test tests nothing"
    aligned = tmp_path / "b.mp4"
    aligned.write_bytes(original.read_bytes())
    aligned.chmod(0o640)

    assert align_audio(aligned) >= len(late)

    starts = fragment_starts(aligned)
    assert len(starts) == 6  # still a fragment per 2 s GOP
    assert all(audio <= video for audio, video in starts), starts
    # No more than one AAC frame early: the fragment takes the frame playing at its keyframe, no more.
    assert all(video - audio < 1024 / rate for audio, video in starts), starts
    # The same packets with the same timestamps and bytes: only where they are stored changed.
    assert packets(aligned) == packets(original)
    decoded = [
        ffmpeg(tmp_path / f"{p.stem}.framemd5", "-i", str(p), "-map", "0", "-f", "framemd5")
        for p in (original, aligned)
    ]
    assert decoded[0].read_text() == decoded[1].read_text()
    assert aligned.stat().st_mode & 0o777 == 0o640  # the sandboxed decoders read it next, as before
    # Done once: a second pass finds nothing to move.
    again = aligned.read_bytes()
    assert align_audio(aligned) == 0 and aligned.read_bytes() == again


def test_leaves_other_layouts_alone(tmp_path: Path) -> None:
    progressive = clip(tmp_path / "p.mp4", movflags="+faststart")
    silent = ffmpeg(
        tmp_path / "v.mp4", "-i", str(clip(tmp_path / "s.mp4")), "-map", "0:v", "-c", "copy", "-movflags", FRAGMENTED
    )
    sound = ffmpeg(
        tmp_path / "a.m4a", "-i", str(clip(tmp_path / "t.mp4")), "-map", "0:a", "-c", "copy",
        "-movflags", FRAGMENTED.replace("+frag_keyframe", ""), "-frag_duration", "2000000",
    )  # fmt: skip
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip(tmp_path / "whole.mp4").read_bytes()[:-5000])
    for path in (progressive, silent, sound, truncated):
        before = path.read_bytes()
        assert align_audio(path) == 0, path.name
        assert path.read_bytes() == before, path.name
