"""The rendition ladder as data: what each profile makes, from what, and how.

:mod:`hub.media.ffmpeg` turns a row of this table into one command line; adding
or retuning a profile is an edit here, followed by
``hub media reprocess --profile NAME``. Nothing in this module runs a process or
touches the database.

Choices that hold for the whole ladder, and why:

- **Video is H.264 in MP4.** The one codec every old Android phone, old PC and
  browser decodes in hardware or in its stock player. ``video-240p`` uses
  Baseline@3.0, the only profile Android guarantees on every version (Main is
  guaranteed from Android 6.0): it is the rendition for the worst links, which
  tend to come with the oldest phones. ``video-360p`` uses Main@3.0: CABAC and
  B-frames save bytes (Baseline took 7 % more at equal SSIM on a 720p camera
  clip), and Main is decoded by every desktop browser and by the hardware
  decoder of practically every phone still in use. Level 3.0 covers 640x360 at
  30 fps with room to spare.
- **Rate control is CRF capped by VBV** (``-maxrate``/``-bufsize``): quiet slides
  cost a few kbit/s, and a noisy camera cannot blow the link budget, because the
  cap is a hard per-window ceiling, not an average.
- **Slides are detected, not declared** (``Probe.slides``) and get their own
  settings: 15 fps, a keyframe at most every 20 s, and x264's scene-cut detection
  putting keyframes where slides change (a keyframe forced every 4 s cost 19 % in
  size on a slides lesson; scene cuts land seek points where a viewer wants them).
- **Audio is AAC-LC, mono, speech-grade**, in MP4 (``.m4a`` for the audio
  profile). AAC-LC in MP4 plays in every mainstream browser since well before
  2016 (Chrome, Firefox, Safari, Edge, IE11) and in every Android version. Opus
  would be better at 24-32 kbit/s but Safari only plays it since 2021; MP3 at
  32 kbit/s sounds worse than AAC-LC. HE-AAC would beat AAC-LC at these rates,
  but its only good encoder (libfdk_aac) is non-free and absent from Debian's
  ffmpeg, whose native encoder cannot write it. A lower sample rate
  (16-22 kHz) spends the few bits on the speech band instead of on treble the
  encoder would throw away anyway.
- **Never upscale** (:meth:`Profile.fit`) and keep document and image renditions
  only when they are smaller than the original.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Literal, Protocol

ENCODER_REVISION = 5
"""Goes up when hub.media.ffmpeg (or hub.media.quality's per-title choices) changes what a
profile's command writes (muxing, filters) without a setting here changing: it is part of
every :attr:`Profile.fingerprint`. 2: per-title plans (issue 14's quality floor). 3: each
fragment's audio starts at its keyframe (hub.media.fmp4, issue 14's seeks). 4: a keyframe at
4 s in long-GOP (slides) renditions, so the first fragment is short (issue 14's first frame).
5: keyframes at 2, 4 and 7 s in short-GOP (camera) renditions, for the same through MSE."""

MediaKind = Literal["video", "audio", "image", "document"]
"""What an original is, as :func:`hub.media.ffmpeg.probe` classifies it."""

RenditionKind = Literal["video", "audio", "poster", "image", "document"]
"""What a profile makes; selects the command builder in :mod:`hub.media.ffmpeg`."""


@dataclass(frozen=True)
class VideoEncoding:
    """H.264 settings for one kind of picture (camera or slides) in one profile."""

    h264_profile: Literal["baseline", "main"]
    h264_level: str
    max_fps: float
    """Frame-rate cap; sources above it are divided by a whole number (30 -> 15, 25 -> 12.5)."""
    crf: int
    """Quality target; the VBV cap below overrides it when a scene is expensive."""
    maxrate_kbps: int
    bufsize_kbit: int
    """VBV buffer: bufsize / maxrate is the window (s) over which the peak is capped."""
    keyint_s: float
    """Longest keyframe interval; scene cuts add keyframes in between."""
    preset: str
    """x264 preset: the CPU spent per frame for a given quality."""


@dataclass(frozen=True)
class AudioEncoding:
    """AAC-LC mono settings."""

    bitrate_kbps: int
    """The encoder's nominal rate. ffmpeg's native AAC encoder overshoots it on speech
    (measured on espeak-ng speech: 16k -> 21, 20k -> 27, 22k -> 30 kbit/s) while music
    and noise land within 5 %, so the nominal rates are chosen for what speech measures."""
    sample_rate: int


@dataclass(frozen=True)
class Profile:
    """One rung of the ladder."""

    name: str
    kind: RenditionKind
    sources: frozenset[MediaKind]
    """The kinds of original this profile applies to."""
    mime_type: str
    extension: str
    long_side: int = 0
    """Largest output size along the picture's longer side (px); the source is never upscaled."""
    short_side: int = 0
    """Largest output size along the shorter side, so portrait videos get a portrait box."""
    camera: VideoEncoding | None = None
    slides: VideoEncoding | None = None
    audio: AudioEncoding | None = None
    jpeg_quality: int = 0
    """ffmpeg's ``-q:v`` for JPEG output: 2 (best) .. 31 (smallest)."""
    pdf_settings: str = ""
    """Ghostscript ``-dPDFSETTINGS`` preset for documents."""
    keep_only_if_smaller: bool = False
    budget_kbps: int = 0
    """What a video rendition may cost in all (video + audio + container), on average over the file."""
    ssim_floor: float = 0.0
    """The SSIM a video rendition must keep against the original at the profile's full size;
    :mod:`hub.media.quality` trades denoising, size and frame rate to hold it inside the budget."""

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The output size for a ``width`` x ``height`` picture: inside the box, never larger.

        The short side sets the scale (360p means 360 lines); the long side may
        exceed the box by 1 % so that near-16:9 sources (854x480, and 1280x720 at
        426.7 px for 240 lines) keep all their lines, while wider pictures are
        fitted to the long side. Both sides are rounded down to even numbers, as
        4:2:0 chroma needs, so an odd side loses a pixel rather than growing one.
        """
        short, long = min(width, height), max(width, height)
        # Exact fractions: 720 * (240 / 720) in floating point can come out as 239.99...
        scale = min(Fraction(1), Fraction(self.short_side, short))
        if long * scale > self.long_side * Fraction(101, 100):
            scale = Fraction(self.long_side, long)
        return max(2, math.floor(width * scale) // 2 * 2), max(2, math.floor(height * scale) // 2 * 2)

    @property
    def fingerprint(self) -> str:
        """A short hash of every setting of this profile and of :data:`ENCODER_REVISION`.

        Stored on each rendition: a second material with the same original bytes reuses
        a rendition only while it was made with the ladder's current settings, so a
        retuned profile never hands out renditions made the old way.
        """
        settings = dataclasses.asdict(self)
        # Sets have no stable order across processes (string hashing is salted): sort them.
        canonical = json.dumps([ENCODER_REVISION, settings], sort_keys=True, default=sorted)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def applies_to(self, kind: MediaKind, *, has_audio: bool, animated: bool = False) -> bool:
        """Whether this profile makes a rendition from an original of this shape."""
        if kind not in self.sources:
            return False
        if self.kind == "audio":
            return has_audio  # a silent video gets no audio-only rendition
        if self.kind == "image":
            return not animated  # re-encoding one frame would lose the animation
        return True


class Probed(Protocol):
    """What :func:`applicable_profiles` needs from :class:`hub.media.ffmpeg.Probe`."""

    @property
    def kind(self) -> MediaKind: ...
    @property
    def has_audio(self) -> bool: ...
    @property
    def animated(self) -> bool: ...


_MP4 = "video/mp4"

LADDER: tuple[Profile, ...] = (
    Profile(
        name="video-360p",
        kind="video",
        sources=frozenset({"video"}),
        mime_type=_MP4,
        extension=".mp4",
        long_side=640,
        short_side=360,
        budget_kbps=200,
        ssim_floor=0.95,
        camera=VideoEncoding(
            h264_profile="main",
            h264_level="3.0",
            # 15 fps, like video-240p: at 30 fps a noisy 720p camera clip was cap-bound at SSIM 0.949;
            # at 15 fps it measured 0.953 with 6 % fewer bytes and 20 % less CPU (benchmarks/media).
            # The price, which SSIM does not see, is less fluid motion: fine for a teacher at a board.
            max_fps=15,
            crf=28,
            maxrate_kbps=160,  # + ~27 kbit/s audio + ~2 % container: under the 200 kbit/s budget
            bufsize_kbit=320,  # a 2 s window: short enough that the cap holds over a 256 kbit/s link
            keyint_s=5,
            preset="slow",
        ),
        slides=VideoEncoding(
            h264_profile="main",
            h264_level="3.0",
            max_fps=15,
            crf=26,
            maxrate_kbps=120,
            bufsize_kbit=480,  # a 4 s window lets the keyframe of a new slide be sharp at once
            keyint_s=20,
            preset="slow",
        ),
        audio=AudioEncoding(bitrate_kbps=20, sample_rate=22050),
    ),
    Profile(
        name="video-240p",
        kind="video",
        sources=frozenset({"video"}),
        mime_type=_MP4,
        extension=".mp4",
        long_side=426,
        short_side=240,
        budget_kbps=120,
        ssim_floor=0.93,
        camera=VideoEncoding(
            h264_profile="baseline",
            h264_level="3.0",
            max_fps=15,
            crf=29,
            maxrate_kbps=88,  # + ~21 kbit/s audio + container: under the 120 kbit/s budget
            bufsize_kbit=176,
            keyint_s=5,
            preset="slow",
        ),
        slides=VideoEncoding(
            h264_profile="baseline",
            h264_level="3.0",
            max_fps=15,
            crf=27,
            maxrate_kbps=64,
            bufsize_kbit=256,
            keyint_s=20,
            preset="slow",
        ),
        audio=AudioEncoding(bitrate_kbps=16, sample_rate=16000),
    ),
    Profile(
        name="audio",
        kind="audio",
        sources=frozenset({"video", "audio"}),
        mime_type="audio/mp4",
        extension=".m4a",
        audio=AudioEncoding(bitrate_kbps=22, sample_rate=22050),  # measured ~30 kbit/s on speech: <= 32
    ),
    Profile(
        name="poster",
        kind="poster",
        sources=frozenset({"video", "image"}),
        # JPEG, not WebP: Safari before 14 (2020) and IE11 cannot show WebP.
        mime_type="image/jpeg",
        extension=".jpg",
        long_side=480,
        short_side=480,
        jpeg_quality=5,  # ~15-30 KB at 480x270
    ),
    Profile(
        name="document",
        kind="document",
        sources=frozenset({"document"}),
        mime_type="application/pdf",
        extension=".pdf",
        pdf_settings="/ebook",  # images at 150 dpi: readable on a phone, a fraction of a scan's size
        keep_only_if_smaller=True,
    ),
    Profile(
        name="image",
        kind="image",
        sources=frozenset({"image"}),
        # JPEG unless the image has transparency; then PNG (RenditionInfo.mime_type says which).
        mime_type="image/jpeg",
        extension=".jpg",
        long_side=1280,
        short_side=1280,
        jpeg_quality=4,
        keep_only_if_smaller=True,
    ),
)

PROFILES: Mapping[str, Profile] = MappingProxyType({profile.name: profile for profile in LADDER})
"""The ladder by name, in ladder order."""


def applicable_profiles(probe: Probed) -> list[Profile]:
    """The profiles to build for an original, in ladder order."""
    return [
        profile
        for profile in LADDER
        if profile.applies_to(probe.kind, has_audio=probe.has_audio, animated=probe.animated)
    ]


def original_stands_in(status: str, ready_profiles: Iterable[str]) -> bool:
    """True for a ready material with no ready rendition but perhaps a poster: its original is its small form.

    The pipeline skips a rendition that would be bigger than its source, so such an
    original is already compact (a small PDF, a short low-bitrate clip) and is what a
    teacher gets. A school server, which otherwise mirrors renditions only, mirrors it.
    """
    return status == "ready" and all(profile == "poster" for profile in ready_profiles)
