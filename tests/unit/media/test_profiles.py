"""The ladder as data: names, boxes, and the promises each profile makes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest

from hub.media.profiles import LADDER, PROFILES, MediaKind, Profile, VideoEncoding, applicable_profiles

VIDEO = [p for p in LADDER if p.kind == "video"]
SIZES = [
    (7680, 4320), (3840, 2160), (1920, 1080), (1280, 720), (854, 480), (640, 480), (720, 576), (2560, 1080),
    (1080, 1920), (720, 1280), (640, 360), (426, 240), (321, 241), (320, 240), (160, 120), (3, 3),
]  # fmt: skip


def encodings(profile: Profile) -> list[VideoEncoding]:
    return [e for e in (profile.camera, profile.slides) if e is not None]


def test_the_ladder() -> None:
    assert list(PROFILES) == ["video-360p", "video-240p", "audio", "poster", "document", "image"]
    assert all(PROFILES[p.name] is p for p in LADDER)
    with pytest.raises(TypeError):
        PROFILES["video-144p"] = LADDER[0]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        LADDER[0].name = "video-720p"  # type: ignore[misc]


@pytest.mark.parametrize("profile", [p for p in LADDER if p.long_side], ids=lambda p: p.name)
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_fit_never_upscales_and_stays_in_the_box(profile: Profile, width: int, height: int) -> None:
    out_w, out_h = profile.fit(width, height)
    assert out_w % 2 == 0 and out_h % 2 == 0
    assert out_w <= max(width, 2) and out_h <= max(height, 2)  # 2x2 is the smallest picture
    assert min(out_w, out_h) <= profile.short_side
    assert max(out_w, out_h) <= profile.long_side * 1.01
    if min(width, height) >= 100:
        assert out_w / out_h == pytest.approx(width / height, rel=0.02)


def test_fit_keeps_the_nominal_lines() -> None:
    assert PROFILES["video-360p"].fit(1920, 1080) == (640, 360)
    assert PROFILES["video-360p"].fit(854, 480) == (640, 360)
    assert PROFILES["video-240p"].fit(1280, 720) == (426, 240)
    assert PROFILES["video-240p"].fit(640, 480) == (320, 240)
    assert PROFILES["video-240p"].fit(720, 1280) == (240, 426)  # portrait
    assert PROFILES["video-360p"].fit(2560, 1080) == (640, 270)  # ultra-wide: the long side binds
    assert PROFILES["poster"].fit(1280, 720) == (480, 270)
    assert PROFILES["image"].fit(4000, 3000) == (1280, 960)


@pytest.mark.parametrize("profile", VIDEO, ids=lambda p: p.name)
def test_video_plays_on_old_phones(profile: Profile) -> None:
    assert profile.mime_type == "video/mp4" and profile.extension == ".mp4"
    for encoding in encodings(profile):
        assert encoding.h264_profile in ("baseline", "main")
        assert encoding.h264_level == "3.0"
        # H.264 level 3.0 (Annex A): at most 1620 macroblocks a frame, 40500 a second, 10 Mbit/s.
        w, h = profile.fit(profile.long_side, profile.short_side)
        macroblocks = math.ceil(w / 16) * math.ceil(h / 16)
        assert macroblocks <= 1620
        assert macroblocks * encoding.max_fps <= 40500
        assert encoding.maxrate_kbps <= 10_000
        assert encoding.bufsize_kbit >= encoding.maxrate_kbps  # at least a 1 s window


def test_the_worst_link_profile_is_baseline() -> None:
    assert {e.h264_profile for e in encodings(PROFILES["video-240p"])} == {"baseline"}


@pytest.mark.parametrize(("name", "budget"), [("video-360p", 200), ("video-240p", 120)])
def test_camera_peak_fits_the_link_budget(name: str, budget: int) -> None:
    profile = PROFILES[name]
    assert profile.camera is not None and profile.audio is not None
    # The AAC encoder overshoots its nominal rate on speech by up to ~40 %; MP4 adds ~2 %.
    assert (profile.camera.maxrate_kbps + 1.4 * profile.audio.bitrate_kbps) * 1.02 <= budget


@pytest.mark.parametrize("profile", VIDEO, ids=lambda p: p.name)
def test_slides_have_their_own_settings(profile: Profile) -> None:
    assert profile.camera is not None and profile.slides is not None
    assert profile.slides.max_fps == 15
    assert profile.slides.keyint_s >= 3 * profile.camera.keyint_s  # long GOPs; scene cuts add keyframes
    assert profile.slides.maxrate_kbps <= profile.camera.maxrate_kbps


def test_audio_is_speech_grade() -> None:
    for profile in LADDER:
        if profile.audio is not None:
            assert profile.audio.sample_rate in (16000, 22050, 24000)
    audio = PROFILES["audio"]
    assert audio.mime_type == "audio/mp4" and audio.extension == ".m4a"
    assert audio.audio is not None and 1.4 * audio.audio.bitrate_kbps <= 32


def test_pictures_and_documents() -> None:
    poster = PROFILES["poster"]
    assert (poster.mime_type, poster.long_side) == ("image/jpeg", 480)
    assert PROFILES["document"].pdf_settings == "/ebook"
    assert PROFILES["image"].long_side == 1280
    assert {p.name for p in LADDER if p.keep_only_if_smaller} == {"document", "image"}


@dataclass(frozen=True)
class Found:
    kind: MediaKind
    has_audio: bool = True
    animated: bool = False


@pytest.mark.parametrize(
    ("found", "names"),
    [
        (Found("video"), ["video-360p", "video-240p", "audio", "poster"]),
        (Found("video", has_audio=False), ["video-360p", "video-240p", "poster"]),
        (Found("audio"), ["audio"]),
        (Found("image", has_audio=False), ["poster", "image"]),
        (Found("image", has_audio=False, animated=True), ["poster"]),
        (Found("document", has_audio=False), ["document"]),
    ],
)
def test_applicable_profiles(found: Found, names: list[str]) -> None:
    assert [p.name for p in applicable_profiles(found)] == names
