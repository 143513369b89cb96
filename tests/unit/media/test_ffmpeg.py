"""Probe and transcode with the real ffmpeg and Ghostscript, on media generated per session.

Inputs are small (160-640 px, a few seconds) so that the whole module runs in
well under a minute on two cores; only the start-fast check needs a lesson-length
(150 s) video, and it is tiny.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from hub.media import ffmpeg as media
from hub.media.ffmpeg import MediaError, MediaLimits, Probe, probe, sniff, sniff_bytes, ssim, transcode
from hub.media.profiles import PROFILES, applicable_profiles
from tests.support.media import ffmpeg, ffprobe

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe") and shutil.which("gs")),
    reason="needs Debian's ffmpeg and ghostscript",
)

LIMITS = MediaLimits()
NOT_MEDIA = "This file is not a video, audio, image or PDF we can read."


# ---------------------------------------------------------------------------
# Generated inputs.


def stream(info: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((s for s in info["streams"] if s["codec_type"] == kind), None)


def speech(folder: Path, seconds: float) -> list[str]:
    """ffmpeg input arguments for a speech-like track: espeak-ng when installed, else a tone."""
    if shutil.which("espeak-ng"):
        wav = folder / "speech.wav"
        if not wav.exists():
            text = "Today we learn how green leaves turn sunlight into food. Open your books to page forty two."
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        return ["-stream_loop", "-1", "-t", str(seconds), "-i", str(wav)]
    return ["-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}"]


@pytest.fixture(scope="session")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip(gen: Path) -> Path:
    """4 s of 640x480 30 fps camera-like motion with speech: larger than both video boxes."""
    return ffmpeg(
        gen / "clip.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30:duration=4",
        *speech(gen, 4),
        "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip


@pytest.fixture(scope="session")
def slides(gen: Path) -> Path:
    """12 s of still pictures changing every 3 s, 30 fps, with speech: a slides lesson."""
    return ffmpeg(
        gen / "slides.mp4",
        "-f", "lavfi", "-i", "testsrc=size=640x360:rate=1/3:duration=12,fps=30",
        *speech(gen, 12),
        "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip


@pytest.fixture(scope="session")
def moving(gen: Path) -> Path:
    """6 s of testsrc2 motion, no audio."""
    return ffmpeg(
        gen / "moving.mkv",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
        "-c:v", "libx264", "-preset", "ultrafast",
    )  # fmt: skip


@pytest.fixture(scope="session")
def clip_probe(clip: Path) -> Probe:
    return probe(clip, LIMITS)


# ---------------------------------------------------------------------------
# Sniffing: the content names the demuxer, never the file name.


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "mov"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00", "mov"),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat", "mov"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", None),  # a still photo, not a movie
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "matroska"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "avi"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "webp"),
        (b"RIFF\x24\x00\x00\x00CDXAfmt ", None),
        (b"OggS\x00\x02\x00\x00", "ogg"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"GIF89a\x10\x00\x10\x00", "gif"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
        (b"\xef\xbb\xbf \r\n%PDF-1.7\n", "pdf"),  # a BOM and white space before the header, as the spec allows
        (b"%!PS-Adobe-3.0\n%PDF-1.4\n(hello) print\n", None),  # PostScript with a PDF header in a comment
        (b"\x00" * 100 + b"%PDF-1.4\n", None),  # junk before the header: not a PDF here
        (b"GIF89a\x10\x00%PDF-1.4\n", "gif"),
        (b"\xff\xfb\x90\x64\x00\x00", "mp3"),  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", "aac"),  # ADTS, AAC-LC, 44.1 kHz
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xf1\x50\x80", "aac"),  # an empty ID3 tag, then ADTS
        (b"ID3\x04\x00\x00\x00\x00\x7f\x7f", "mp3"),  # a 16 KB tag that hides what follows
        (b"\xff\xfb\xf0\x64", None),  # bitrate index 15 is reserved
        (b"", None),
        (b"hello, this is a text file renamed .mp4\n", None),
        (b"<!DOCTYPE html><html><body>", None),
        (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\nhttp://example.com/a.ts\n", None),
        (b"ffconcat version 1.0\nfile '/etc/passwd'\n", None),
        (b"file:///etc/passwd\n", None),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", None),
    ],
)
def test_sniff_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_bytes(head) == expected


def test_sniff_looks_past_a_large_id3_tag(tmp_path: Path) -> None:
    tag_size = 20_000  # cover art: bigger than the 4 KB head
    syncsafe = bytes((tag_size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    path = tmp_path / "song.bin"
    path.write_bytes(b"ID3\x04\x00\x00" + syncsafe + b"\x00" * tag_size + b"\xff\xf1\x50\x80\x02\x1f\xfc")
    assert sniff(path) == "aac"


def test_sniff_ignores_the_file_name(clip: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "lesson.pdf"
    shutil.copy(clip, renamed)
    assert sniff(renamed) == "mov"


# ---------------------------------------------------------------------------
# Probing.


def test_probe_video(clip_probe: Probe) -> None:
    assert clip_probe.kind == "video"
    assert clip_probe.format == "mov"
    assert (clip_probe.width, clip_probe.height) == (640, 480)
    assert clip_probe.has_video and clip_probe.has_audio
    assert (clip_probe.video_streams, clip_probe.audio_streams, clip_probe.streams) == (1, 1, 2)
    assert clip_probe.duration == pytest.approx(4, abs=0.2)
    assert clip_probe.fps == 30
    assert clip_probe.bitrate_kbps and clip_probe.bitrate_kbps > 100
    assert not clip_probe.slides
    assert [p.name for p in applicable_profiles(clip_probe)] == ["video-360p", "video-240p", "audio", "poster"]


def test_slides_are_detected(slides: Path, moving: Path) -> None:
    assert probe(slides, LIMITS).slides
    assert not probe(moving, LIMITS).slides


# ---------------------------------------------------------------------------
# Transcoding: every profile on a video.


def run_profile(src: Path, found: Probe, name: str, dest: Path) -> tuple[media.RenditionInfo | None, list[float]]:
    progress: list[float] = []
    info = transcode(src, found, PROFILES[name], dest, on_progress=progress.append, limits=LIMITS)
    return info, progress


@pytest.mark.parametrize(
    ("name", "size", "h264_profile"),
    [("video-360p", (480, 360), "Main"), ("video-240p", (320, 240), "Constrained Baseline")],
)
def test_video_profiles(
    clip: Path, clip_probe: Probe, tmp_path: Path, name: str, size: tuple[int, int], h264_profile: str
) -> None:
    info, progress = run_profile(clip, clip_probe, name, tmp_path / "out.mp4")
    assert info is not None
    written = ffprobe(tmp_path / "out.mp4")
    video, audio = stream(written, "video"), stream(written, "audio")
    assert video is not None and audio is not None
    assert (video["codec_name"], video["profile"], video["level"]) == ("h264", h264_profile, 30)
    assert (video["width"], video["height"]) == size == (info.width, info.height)
    assert video["pix_fmt"] == "yuv420p"
    assert (audio["codec_name"], audio["profile"], audio["channels"]) == ("aac", "LC", 1)
    assert info.mime_type == "video/mp4"
    assert info.bytes == (tmp_path / "out.mp4").stat().st_size
    assert info.duration == pytest.approx(4, abs=0.3)
    # testsrc2 is far harder than a lesson, and 4 s leaves the VBV's initial buffer
    # unamortised: plausible here means within the cap plus that buffer.
    encoding = PROFILES[name].camera
    assert encoding is not None
    assert info.kbps is not None and 20 < info.kbps < encoding.maxrate_kbps + encoding.bufsize_kbit / 4 + 40
    assert progress[-1] == 100
    assert progress == sorted(progress)


def test_audio_profile(clip: Path, clip_probe: Probe, tmp_path: Path) -> None:
    info, progress = run_profile(clip, clip_probe, "audio", tmp_path / "out.m4a")
    assert info is not None
    written = ffprobe(tmp_path / "out.m4a")
    assert [s["codec_type"] for s in written["streams"]] == ["audio"]
    audio = written["streams"][0]
    assert (audio["codec_name"], audio["profile"], audio["channels"], audio["sample_rate"]) == ("aac", "LC", 1, "22050")
    assert info.mime_type == "audio/mp4"
    assert info.kbps is not None and 10 < info.kbps <= 40  # the 32 kbit/s budget plus a short file's header
    assert progress[-1] == 100


def test_poster(clip: Path, clip_probe: Probe, tmp_path: Path) -> None:
    info, _ = run_profile(clip, clip_probe, "poster", tmp_path / "poster.jpg")
    assert info is not None
    assert (info.width, info.height, info.mime_type) == (480, 360, "image/jpeg")
    assert (tmp_path / "poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert 1_000 < info.bytes < 60_000


def test_slides_get_their_own_settings(slides: Path, tmp_path: Path) -> None:
    found = probe(slides, LIMITS)
    info, _ = run_profile(slides, found, "video-360p", tmp_path / "out.mp4")
    assert info is not None
    video = stream(ffprobe(tmp_path / "out.mp4"), "video")
    assert video is not None and video["r_frame_rate"] == "15/1"  # 30 fps halved, evenly
    assert (info.width, info.height) == (640, 360)
    assert info.kbps is not None and info.kbps < 80  # the slides budget at 360p, audio included


@pytest.mark.parametrize("name", ["video-240p", "audio", "poster"])
def test_a_redo_writes_the_same_bytes(clip: Path, clip_probe: Probe, tmp_path: Path, name: str) -> None:
    """Renditions are stored by content: a redo (killed worker, reprocess) must not make a new blob."""
    first, _ = run_profile(clip, clip_probe, name, tmp_path / "first")
    second, _ = run_profile(clip, clip_probe, name, tmp_path / "second")
    assert first is not None and first == second
    assert (tmp_path / "first").read_bytes() == (tmp_path / "second").read_bytes()


def test_ssim(clip: Path, clip_probe: Probe, tmp_path: Path) -> None:
    info, _ = run_profile(clip, clip_probe, "video-240p", tmp_path / "out.mp4")
    assert info is not None and info.width and info.height
    progress: list[float] = []
    score = ssim(
        clip, tmp_path / "out.mp4", clip_probe, info.width, info.height, limits=LIMITS, on_progress=progress.append
    )
    assert 0.5 < score <= 1
    # Reported as it goes (a worker renews its lease from it), up to the whole clip compared.
    assert progress and progress == sorted(progress) and progress[-1] > 90


def top_level_boxes(path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of each top-level ISO-BMFF box."""
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        boxes.append((kind.decode("latin-1"), offset, size or len(data) - offset))
        offset += size or len(data) - offset
    return boxes


@pytest.mark.slow
def test_video_starts_after_a_few_kilobytes(gen: Path, tmp_path: Path) -> None:
    """Bytes before the first media sample <= 120 KB: the first frame within 10 s at 128 kbit/s."""
    lesson = ffmpeg(
        gen / "lesson.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=192x108:rate=30:duration=150",
        *speech(gen, 150),
        "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip
    found = probe(lesson, LIMITS)
    info, _ = run_profile(lesson, found, "video-360p", tmp_path / "out.mp4")
    assert info is not None and info.duration == pytest.approx(150, abs=1)
    boxes = top_level_boxes(tmp_path / "out.mp4")
    kinds = [kind for kind, _, _ in boxes]
    first_mdat = kinds.index("mdat")
    assert kinds[:2] == ["ftyp", "moov"] and kinds[first_mdat - 1] == "moof"  # fragmented
    before_first_sample = boxes[first_mdat][1] + 8
    assert before_first_sample <= 120 * 1024
    # Only the fragment index grows with the length: project it to a 45-minute lesson.
    index = sum(size for kind, _, size in boxes if kind == "sidx")
    assert before_first_sample + index * (45 * 60 / 150 - 1) <= 120 * 1024


def fragments(path: Path) -> list[list[dict[str, Any]]]:
    """The packets (kind, pos, flags, dts_time) of each fragment of a fragmented MP4, in file order."""
    starts = [offset for kind, offset, _ in top_level_boxes(path) if kind == "moof"]
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pos,flags,dts_time", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    kinds = [s["codec_type"] for s in ffprobe(path)["streams"]]
    packets = sorted(
        ({**p, "pos": int(p["pos"]), "kind": kinds[p["stream_index"]]} for p in json.loads(out)["packets"]),
        key=lambda p: p["pos"],
    )
    found: list[list[dict[str, Any]]] = [[] for _ in starts]
    for packet in packets:
        found[bisect.bisect(starts, packet["pos"]) - 1].append(packet)
    return found


@pytest.mark.slow
def test_every_fragment_starts_at_a_keyframe_with_its_sound_first(gen: Path, tmp_path: Path) -> None:
    """Issue 14: a browser seeks to a fragment and decodes from its first sample.

    A camera GOP is 5 s; fragments cut every 2 s inside it made Chromium stop on
    seeks with PIPELINE_ERROR_DECODE (is_key_frame=0). Each fragment holds its
    audio before its video, so a player has sound without reading a whole GOP of
    pictures first, and no mfra trails the file (Chromium fetched the last block
    for it before playing). Each fragment's sound starts no later than its
    keyframe: a seek to the keyframe seeks the audio to the frame at or before
    it, and when that frame closed the previous fragment Chromium read backwards
    first (hub.media.fmp4: 5.3 s instead of 2.6 s for a seek at 256 kbit/s).
    """
    camera = ffmpeg(
        gen / "camera-16s.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=16",
        *speech(gen, 16),
        "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip
    found = probe(camera, LIMITS)
    assert not found.slides
    for name in ("video-360p", "video-240p"):
        out = tmp_path / f"{name}.mp4"
        run_profile(camera, found, name, out)
        parts = fragments(out)
        assert len(parts) >= 3  # 16 s of 5 s GOPs
        video = [[p for p in packets if p["kind"] == "video"] for packets in parts]
        audio = [[p for p in packets if p["kind"] == "audio"] for packets in parts]
        assert all(video) and all(audio)
        no_keyframe = [i for i, packets in enumerate(video) if not packets[0]["flags"].startswith("K")]
        assert not no_keyframe, f"{name}: fragments {no_keyframe} of {len(parts)} start without a keyframe"
        assert all(a[-1]["pos"] < v[0]["pos"] for a, v in zip(audio, video, strict=True)), f"{name}: video first"
        late = [
            (i, a[0]["dts_time"], v[0]["dts_time"])
            for i, (a, v) in enumerate(zip(audio, video, strict=True))
            if float(a[0]["dts_time"]) > float(v[0]["dts_time"])
        ]
        assert not late, f"{name}: sound starts after the keyframe in (fragment, audio, video) {late}"
        assert "mfra" not in [kind for kind, _, _ in top_level_boxes(out)]
    # Audio alone has no keyframes to cut at: still fragments of a few seconds, not one.
    out = tmp_path / "audio.m4a"
    run_profile(camera, found, "audio", out)
    assert len(fragments(out)) >= 4


@pytest.mark.slow
def test_a_slides_rendition_starts_with_a_short_fragment(gen: Path, tmp_path: Path) -> None:
    """Issue 14: the first picture comes after its fragment's audio, so the first fragment is short.

    A slide GOP runs up to 20 s, and each fragment holds its sound before its
    pictures: the first frame came after 20 s of speech (68.6 KB in all for the
    10-minute slides lesson's 360p, 5.1 s at 256 kbit/s on a loaded machine). A
    keyframe at 4 s ends the first fragment there; the GOPs after it are as long as before.
    """
    still = ffmpeg(
        gen / "still-24s.mp4",
        "-f", "lavfi", "-i", "color=c=white:s=640x360:r=30:d=24,drawtext=text='Slide':fontsize=56:x=80:y=120",
        *speech(gen, 24),
        "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip
    found = probe(still, LIMITS)
    assert found.slides
    for name in ("video-360p", "video-240p"):
        out = tmp_path / f"{name}.mp4"
        run_profile(still, found, name, out)
        parts = fragments(out)
        keyframes = [float(next(p for p in packets if p["kind"] == "video")["dts_time"]) for packets in parts]
        assert keyframes[1] == pytest.approx(4, abs=0.1), keyframes
        assert len(parts) == 2, keyframes  # then one GOP of up to 20 s: no keyframe is added after the first
        first = [p for p in parts[0] if p["kind"] == "audio"]
        assert float(first[-1]["dts_time"]) < 4.1  # the first frame waits for 4 s of sound, not 20


# ---------------------------------------------------------------------------
# Legitimately unusual inputs.


def test_video_without_audio(moving: Path, tmp_path: Path) -> None:
    found = probe(moving, LIMITS)
    assert found.kind == "video" and not found.has_audio
    assert [p.name for p in applicable_profiles(found)] == ["video-360p", "video-240p", "poster"]
    assert transcode(moving, found, PROFILES["audio"], tmp_path / "a.m4a", limits=LIMITS) is None
    info, _ = run_profile(moving, found, "video-240p", tmp_path / "out.mp4")
    assert info is not None
    # No audio track rather than a silent one: fewer bytes, and players show no useless volume control.
    assert [s["codec_type"] for s in ffprobe(tmp_path / "out.mp4")["streams"]] == ["video"]


def test_audio_without_video(gen: Path, tmp_path: Path) -> None:
    wav = ffmpeg(gen / "talk.wav", *speech(gen, 5), "-ar", "44100", "-ac", "2")
    found = probe(wav, LIMITS)
    assert (found.kind, found.format, found.has_video, found.has_audio) == ("audio", "wav", False, True)
    assert [p.name for p in applicable_profiles(found)] == ["audio"]
    for name in ("video-360p", "video-240p", "poster"):
        assert transcode(wav, found, PROFILES[name], tmp_path / "x", limits=LIMITS) is None
    info, _ = run_profile(wav, found, "audio", tmp_path / "out.m4a")
    assert info is not None and info.duration == pytest.approx(5, abs=0.3)


def test_half_second_clip_is_never_upscaled(gen: Path, tmp_path: Path) -> None:
    short = ffmpeg(
        gen / "short.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=0.5",
        "-f", "lavfi", "-i", "sine=duration=0.5",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip
    found = probe(short, LIMITS)
    assert found.duration == pytest.approx(0.5, abs=0.1) and not found.slides
    for name in ("video-360p", "poster"):
        info, progress = run_profile(short, found, name, tmp_path / name)
        assert info is not None and (info.width, info.height) == (160, 120)
        assert progress[-1] == 100


def test_portrait_phone_video_gets_a_portrait_box(gen: Path, tmp_path: Path) -> None:
    # Stored landscape with a rotation in its header, as phones record (ffmpeg 5.1 only
    # writes the rotation when copying, hence two steps).
    landscape = ffmpeg(
        gen / "landscape.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
    )  # fmt: skip
    turned = ffmpeg(gen / "turned.mp4", "-i", str(landscape), "-c", "copy", "-metadata:s:v", "rotate=90")
    found = probe(turned, LIMITS)
    assert (found.width, found.height) == (360, 640)
    info, _ = run_profile(turned, found, "video-240p", tmp_path / "out.mp4")
    assert info is not None and (info.width, info.height) == (240, 426)
    video = stream(ffprobe(tmp_path / "out.mp4"), "video")
    assert video is not None and not video.get("side_data_list")  # turned once, not turned again on playback


def test_images(gen: Path, tmp_path: Path) -> None:
    photo = ffmpeg(gen / "photo.png", "-f", "lavfi", "-i", "testsrc2=size=1600x1200,noise=alls=20", "-frames:v", "1")
    found = probe(photo, LIMITS)
    assert (found.kind, found.width, found.height, found.has_alpha) == ("image", 1600, 1200, False)
    assert [p.name for p in applicable_profiles(found)] == ["poster", "image"]
    info, _ = run_profile(photo, found, "image", tmp_path / "out.jpg")
    assert info is not None and (info.width, info.height, info.mime_type) == (1280, 960, "image/jpeg")
    assert info.bytes < found.bytes

    logo = ffmpeg(gen / "logo.png", "-f", "lavfi", "-i", "color=c=red@0.5:size=64x64,format=rgba", "-frames:v", "1")
    found = probe(logo, LIMITS)
    assert found.has_alpha
    # Already tiny: a re-encode is not smaller, so it is not kept.
    assert transcode(logo, found, PROFILES["image"], tmp_path / "logo.png", limits=LIMITS) is None
    assert not (tmp_path / "logo.png").exists()
    # Its JPEG poster lies on white: half-transparent red shows pink, not dark red.
    assert transcode(logo, found, PROFILES["poster"], tmp_path / "poster.jpg", limits=LIMITS) is not None
    pixel = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "poster.jpg"),
         "-vf", "format=rgb24,crop=1:1:32:32", "-frames:v", "1", "-f", "rawvideo", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    red, green, blue = pixel
    assert red > 230 and 100 < green < 160 and 100 < blue < 160


def test_image_with_transparency_stays_png(gen: Path, tmp_path: Path) -> None:
    layered = ffmpeg(
        gen / "layered.png",
        "-f", "lavfi", "-i", "testsrc2=size=2000x1000,noise=alls=30,format=rgba,colorchannelmixer=aa=0.5",
        "-frames:v", "1",
    )  # fmt: skip
    found = probe(layered, LIMITS)
    info, _ = run_profile(layered, found, "image", tmp_path / "out")
    assert info is not None and (info.width, info.height, info.mime_type) == (1280, 640, "image/png")
    assert (tmp_path / "out").read_bytes()[:4] == b"\x89PNG"


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment (little-endian TIFF, one IFD0 entry) after SOI."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_jpeg_exif_orientation_is_applied(gen: Path, tmp_path: Path) -> None:
    photo = ffmpeg(gen / "sideways.jpg", "-f", "lavfi", "-i", "testsrc2=size=640x480", "-frames:v", "1")
    turned = tmp_path / "turned.jpg"
    turned.write_bytes(with_exif_orientation(photo.read_bytes(), 6))  # "rotate 90 clockwise to view"
    found = probe(turned, LIMITS)
    assert (found.width, found.height, found.orientation) == (480, 640, 6)
    info, _ = run_profile(turned, found, "poster", tmp_path / "poster.jpg")
    assert info is not None and (info.width, info.height) == (360, 480)


def test_animated_gif_keeps_its_animation(gen: Path, tmp_path: Path) -> None:
    gif = ffmpeg(gen / "anim.gif", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=2")
    found = probe(gif, LIMITS)
    assert found.kind == "image" and found.animated
    assert [p.name for p in applicable_profiles(found)] == ["poster"]


def make_pdf(path: Path, *postscript: str) -> Path:
    subprocess.run(
        ["gs", "-q", "-dNOSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pdfwrite", f"-sOutputFile={path}", *postscript],
        check=True,
    )
    return path


def scanned_pdf(directory: Path) -> Path:
    """A one-page scan: a 1200 px photo on a 200 pt wide page, 430 dpi, which /ebook brings down to 150."""
    photo = ffmpeg(
        directory / "scan.jpg", "-f", "lavfi", "-i", "testsrc2=size=1200x900,noise=alls=10", "-frames:v", "1"
    )
    return make_pdf(
        directory / "scan.pdf",
        "-dDEVICEWIDTHPOINTS=200", "-dDEVICEHEIGHTPOINTS=150", "-dFIXEDMEDIA",
        "viewjpeg.ps", "-c", f"({photo}) viewJPEG showpage",
    )  # fmt: skip


def test_document_recompressed_when_smaller(gen: Path, tmp_path: Path) -> None:
    scan = scanned_pdf(gen)
    found = probe(scan, LIMITS)
    assert (found.kind, found.pages) == ("document", 1)
    assert [p.name for p in applicable_profiles(found)] == ["document"]
    progress: list[float] = []
    dest = tmp_path / "out.pdf"
    info = transcode(scan, found, PROFILES["document"], dest, on_progress=progress.append, limits=LIMITS)
    assert info is not None and info.mime_type == "application/pdf"
    assert info.bytes < found.bytes / 4
    assert dest.read_bytes().startswith(b"%PDF-")
    assert progress == [100]


def test_document_not_kept_when_not_smaller(gen: Path, tmp_path: Path) -> None:
    page = "/Helvetica findfont 24 scalefont setfont 72 700 moveto (Leaf) show showpage"
    text = make_pdf(gen / "text.pdf", "-c", page)
    found = probe(text, LIMITS)
    assert found.pages == 1
    assert transcode(text, found, PROFILES["document"], tmp_path / "out.pdf", limits=LIMITS) is None
    assert not (tmp_path / "out.pdf").exists()


def repeated_page_pdf(path: Path, count: int) -> Path:
    """A small PDF whose page tree lists one page ``count`` times."""
    kids = b" ".join([b"3 0 R"] * count)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count %d /Kids [%s] >>" % (count, kids),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    body, offsets = b"%PDF-1.4\n", []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(body)
    body += b"xref\n0 4\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    body += b"trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(body)
    return path


def test_document_time_limits_do_not_grow_with_the_pages_it_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 200,000 references to one page: the limit was once 600 s + 1 s a page (56 hours).
    claimed = repeated_page_pdf(tmp_path / "pages.pdf", 200_000)
    timeouts: list[float] = []
    real_run = media._run

    def spy(*args: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs["timeout"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(media, "_run", spy)
    hurried = MediaLimits(timeout_s=15)
    started = time.monotonic()
    with contextlib.suppress(MediaError):  # whatever becomes of it, within the same limits
        found = probe(claimed, hurried)
        transcode(claimed, found, PROFILES["document"], tmp_path / "out.pdf", limits=hurried)
    assert timeouts and max(timeouts) <= hurried.timeout_s
    assert time.monotonic() - started < len(timeouts) * hurried.timeout_s + 10


def test_a_claimed_length_buys_at_most_the_job_time_cap() -> None:
    capped = MediaLimits(max_job_s=3600)
    assert capped.media_timeout(4 * 3600) == 3600
    assert capped.media_timeout(60) == capped.timeout_s + 60 * capped.timeout_per_media_s


def test_a_postscript_program_is_never_interpreted(tmp_path: Path) -> None:
    # What an uploader sent to read other schools' drafts: PostScript that lists
    # and prints the temp directory, with "%PDF-" where a lax sniffer finds it.
    program = b"%!PS\n%PDF-1.4\n(/tmp/*) { print (\\n) print } 1024 string filenameforall showpage\n"
    postscript = tmp_path / "lesson.pdf"
    postscript.write_bytes(program)
    assert refuse(postscript).reason == NOT_MEDIA
    # The same program behind a real PDF header is not a PDF either: qpdf reads objects, runs nothing.
    disguised = tmp_path / "disguised.pdf"
    disguised.write_bytes(b"%PDF-1.4\n" + program)
    assert refuse(disguised).reason == "This PDF cannot be read; it may be damaged or password-protected."


def test_a_pdf_with_a_bom_is_read_and_compressed(tmp_path: Path) -> None:
    scan = scanned_pdf(tmp_path)
    with_bom = tmp_path / "bom.pdf"
    with_bom.write_bytes(b"\xef\xbb\xbf\n" + scan.read_bytes())
    found = probe(with_bom, LIMITS)
    assert (found.kind, found.pages) == ("document", 1)
    info = transcode(with_bom, found, PROFILES["document"], tmp_path / "out.pdf", limits=LIMITS)
    assert info is not None and (tmp_path / "out.pdf").read_bytes().startswith(b"%PDF-")


# ---------------------------------------------------------------------------
# Bad input: each ends as a MediaError with a readable reason, never a crash or a hang.


def refuse(path: Path, limits: MediaLimits = LIMITS) -> MediaError:
    with pytest.raises(MediaError) as raised:
        probe(path, limits)
    assert not raised.value.transient  # a bad file fails the same way every time
    return raised.value


@pytest.fixture
def no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is run: the file must be refused by reading its bytes."""

    def forbidden(argv: list[str], **_: object) -> None:
        raise AssertionError(f"ran {argv[0]}")

    monkeypatch.setattr(media, "_run", forbidden)


def test_text_renamed_mp4(tmp_path: Path, no_process: None) -> None:
    fake = tmp_path / "lesson.mp4"
    fake.write_text("This is my lesson plan, not a video.\n")
    assert refuse(fake).reason == NOT_MEDIA


def test_zero_bytes(tmp_path: Path, no_process: None) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert refuse(empty).reason == "The file is empty."


@pytest.mark.parametrize(
    "content",
    [
        "#EXTM3U\n#EXTINF:10,\nhttp://203.0.113.1/steal.ts\n#EXTINF:10,\nfile:///etc/passwd\n",
        "ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://203.0.113.1/x.mp4'\n",
        "file:///etc/passwd\n",
        "http://203.0.113.1/lesson.mp4\n",
        # An SDP file: a stream description that makes ffmpeg listen on (or fetch from) the network.
        "v=0\r\no=- 0 0 IN IP4 203.0.113.1\r\ns=lesson\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\n"
        "m=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
    ],
    ids=["hls", "ffconcat", "file-url", "http-url", "sdp"],
)
def test_playlists_and_urls_are_never_opened(tmp_path: Path, content: str, no_process: None) -> None:
    playlist = tmp_path / "lesson.m3u8"
    playlist.write_text(content)
    assert refuse(playlist).reason == NOT_MEDIA


@pytest.mark.parametrize("movflags", ["", "+faststart"])
def test_truncated_mp4(clip: Path, tmp_path: Path, movflags: str) -> None:
    # Without faststart the index is at the end and is lost; with it, the index survives
    # and claims 4 s that are no longer there.
    whole = ffmpeg(tmp_path / "whole.mp4", "-i", str(clip), "-c", "copy", "-movflags", movflags or "0")
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert refuse(half).reason == "The file is truncated or damaged."


def test_truncated_fragmented_mp4(clip: Path, clip_probe: Probe, tmp_path: Path) -> None:
    """Our own renditions: their index up front claims the whole length."""
    info, _ = run_profile(clip, clip_probe, "video-240p", tmp_path / "whole.mp4")
    assert info is not None
    half = tmp_path / "half.mp4"
    half.write_bytes((tmp_path / "whole.mp4").read_bytes()[: info.bytes // 2])
    assert refuse(half).reason == "The file is truncated or damaged."


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_image_bomb_is_refused_from_its_header(tmp_path: Path, no_process: None) -> None:
    # 100000 x 100000 RGB would be 30 GB decoded; the file is a few hundred bytes.
    idat = zlib.compress(b"\x00" * 100_000, 9)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000) + struct.pack(">I", len(idat)) + b"IDAT" + idat)
    reason = refuse(bomb).reason
    assert "100000x100000" in reason and "50 megapixels" in reason


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("gif", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 20),
        ("webp", b"RIFF\x00\x01\x00\x00WEBPVP8X" + b"\x0a\x00\x00\x00\x00\x00\x00\x00" + b"\xff\xff\xff" * 2),
        ("jpeg", b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60000, 60000) + b"\x03" + b"\x00" * 9),
    ],
)
def test_image_bombs_in_other_formats(tmp_path: Path, name: str, header: bytes, no_process: None) -> None:
    bomb = tmp_path / name
    bomb.write_bytes(header + b"\x00" * 256)
    assert "megapixels" in refuse(bomb).reason


def test_huge_video_resolution(gen: Path) -> None:
    # One gray 9000x9000 frame: PNG-coded in Matroska, ~100 KB on disk.
    huge = ffmpeg(
        gen / "huge.mkv",
        "-f", "lavfi", "-i", "color=c=gray:size=9000x9000:duration=0.04",
        "-frames:v", "1", "-c:v", "png", "-pix_fmt", "gray",
    )  # fmt: skip
    started = time.monotonic()
    assert refuse(huge).reason == "The video is 9000x9000; the largest we accept is 4096x4096."
    assert time.monotonic() - started < 5


def test_limits(clip: Path) -> None:
    assert refuse(clip, MediaLimits(max_duration_s=2)).reason == (
        "The recording is 4 s long; the longest we accept is 2 s."
    )
    assert refuse(clip, MediaLimits(max_width=320, max_height=240)).reason == (
        "The video is 640x480; the largest we accept is 320x240."
    )
    assert refuse(clip, MediaLimits(max_streams=1)).reason == "The file has 2 tracks; the most we accept is 1."


def test_unreadable_pdf(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\ngarbage\n%%EOF\n")
    assert refuse(broken).reason == "This PDF cannot be read; it may be damaged or password-protected."


def running(marker: str) -> bool:
    """Whether any process has ``marker`` in its command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                return True
        except OSError:  # it exited while we looked
            continue
    return False


def test_a_transcode_that_overruns_is_killed(clip: Path, clip_probe: Probe, tmp_path: Path) -> None:
    hurried = MediaLimits(timeout_s=0.2, timeout_per_media_s=0)
    dest = tmp_path / "overrun.mp4"
    started = time.monotonic()
    with pytest.raises(MediaError) as raised:
        transcode(clip, clip_probe, PROFILES["video-360p"], dest, limits=hurried)
    assert time.monotonic() - started < 5
    assert raised.value.reason == "Processing this file took longer than the 1 min allowed; it may be damaged."
    assert not raised.value.transient
    assert not running(str(dest))


class Revoked(Exception):
    pass


def test_a_failing_progress_callback_stops_the_transcode(clip: Path, clip_probe: Probe, tmp_path: Path) -> None:
    def revoked(percent: float) -> None:
        raise Revoked  # e.g. the task was revoked while ffmpeg ran

    dest = tmp_path / "revoked.mp4"
    with pytest.raises(Revoked):
        transcode(clip, clip_probe, PROFILES["video-360p"], dest, on_progress=revoked, limits=LIMITS)
    assert not running(str(dest))
