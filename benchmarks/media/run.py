"""Benchmark: the rendition ladder on a 10-minute slides lesson and a 2-minute camera clip.

    .venv/bin/python -m benchmarks.media [--quick] [--workdir DIR] [--variants] [--keep]

1. Generates the inputs (:mod:`benchmarks.media.inputs`) into a work directory
   outside the repository: a temp dir, or ``--workdir`` (where they are kept and
   reused). ``--quick`` makes them 1 min and 20 s long, for a smoke run.
2. Timed, one encode at a time: each video profile on each input and the audio
   profile on the slides lesson, through :func:`hub.media.ffmpeg.transcode` (the
   code the workers run), then the reference: the settings Kolibri's ricecooker
   uses for ``--compress`` (``ricecooker/utils/videos.py``, ``compress_video``:
   H.264 Baseline@3.0, CRF 32, preset slow, height <= 480, AAC 32 kbit/s mono,
   ``+faststart``), at its default 480 lines and, for a like-for-like view, at
   360 and 240 lines (its ``max_height`` option).
3. Timed: the whole ladder for the slides lesson as per-rendition processes, two
   at a time, as two Celery worker processes run it: once the encodes alone, and
   once as the workers do it (``pipeline.process_material`` probes the original,
   then each ``pipeline.build_rendition`` probes its own copy, transcodes and, for
   a video rendition, measures the SSIM it stores on the row).
4. Untimed, two at a time: SSIM at the rendition's own size
   (:func:`hub.media.ffmpeg.ssim`, the number stored on a rendition) and at the
   source's size (the rendition upscaled with bicubic, here).

Wall time is ``time.perf_counter``; CPU time is the user + system time of the
finished child processes (``getrusage(RUSAGE_CHILDREN)`` deltas), so it counts
every ffmpeg/ffprobe the step ran and nothing else. Bytes before the first frame
come from the MP4 box structure (:mod:`benchmarks.media.mp4`). The results block
of ``benchmarks/media/RESULTS.md`` is rewritten by full runs (not by ``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from benchmarks.media import inputs, mp4
from hub.media import ffmpeg
from hub.media.profiles import PROFILES, Profile, VideoEncoding, applicable_profiles

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN = "<!-- results: written by `python -m benchmarks.media`; edit above or below -->"
END = "<!-- end of results -->"
LIMITS = ffmpeg.MediaLimits()
KB = 1000
REFERENCE = "ricecooker --compress"
T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    key: str
    """"slides" or "camera"."""
    label: str
    path: Path
    probe: ffmpeg.Probe

    @property
    def minutes(self) -> float:
        return (self.probe.duration or 0.0) / 60


@dataclass
class Encoded:
    """One encode of one input, with what it cost and (later) how good it is."""

    source: Source
    name: str
    group: str
    """"ours", "reference" or "variant"."""
    path: Path
    bytes: int
    duration: float
    width: int | None
    height: int | None
    fps: float | None
    wall: float
    cpu: float
    layout: mp4.Layout
    profile: str = ""
    """The ladder profile this is (or is a variant of); empty for the reference."""
    ssim_own: float | None = None
    ssim_source: float | None = None

    @property
    def kbps(self) -> float:
        return self.bytes * 8 / self.duration / 1000

    def track_kbps(self, handler: str) -> float:
        return self.layout.track_bytes.get(handler, 0) * 8 / self.duration / 1000

    @property
    def mb_per_minute(self) -> float:
        return self.bytes / 1e6 / (self.duration / 60)

    @property
    def realtime(self) -> float:
        return (self.source.probe.duration or 0.0) / self.wall

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu / self.source.minutes


@dataclass
class Ladder:
    source: Source
    profiles: list[str]
    wall: float
    cpu: float
    identical: bool
    """Whether the parallel run wrote the same bytes as the one-at-a-time runs."""
    sequential_wall: float
    sequential_cpu: float
    poster_bytes: int | None
    decode_cpu: float = 0.0
    """CPU seconds of decoding the source's video alone, as each per-rendition process does."""
    worker_wall: float = 0.0
    worker_cpu: float = 0.0
    """The same ladder as the workers run it: with the probes and the stored SSIM."""

    @property
    def realtime(self) -> float:
        return (self.source.probe.duration or 0.0) / self.wall

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu / self.source.minutes

    @property
    def worker_realtime(self) -> float:
        return (self.source.probe.duration or 0.0) / self.worker_wall

    @property
    def worker_cpu_per_minute(self) -> float:
        return self.worker_cpu / self.source.minutes


@dataclass
class Run:
    quick: bool
    started: datetime
    load_before: tuple[float, float, float]
    sources: list[Source] = field(default_factory=list)
    encodes: list[Encoded] = field(default_factory=list)
    ladder: Ladder | None = None
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0


# ---------------------------------------------------------------------------
# Measuring.


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(action: Callable[[], T]) -> tuple[T, float, float]:
    """``action()``, its wall seconds and the CPU seconds of the child processes it ran."""
    cpu, started = children_cpu(), time.perf_counter()
    result = action()
    return result, time.perf_counter() - started, children_cpu() - cpu


def video_stream(path: Path) -> tuple[int | None, int | None, Fraction | None]:
    """(width, height, r_frame_rate) of the first video stream, all None for audio only."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate",
         "-of", "default=noprint_wrappers=1", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    values = dict(line.split("=", 1) for line in out.split())
    if "width" not in values:
        return None, None, None
    return int(values["width"]), int(values["height"]), Fraction(values["r_frame_rate"])


def media_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(out)


def encode_ours(source: Source, profile: Profile, out: Path, group: str = "ours", name: str = "") -> Encoded:
    info, wall, cpu = timed(lambda: ffmpeg.transcode(source.path, source.probe, profile, out, limits=LIMITS))
    if info is None:
        raise SystemExit(f"{profile.name} does not apply to {source.path}")
    _, _, rate = video_stream(out)
    encoded = Encoded(
        source=source,
        name=name or profile.name,
        group=group,
        path=out,
        bytes=info.bytes,
        duration=info.duration or 0.0,
        width=info.width,
        height=info.height,
        fps=float(rate) if rate else None,
        wall=wall,
        cpu=cpu,
        layout=mp4.layout(out),
        profile=profile.name,
    )
    say(f"{source.key} {encoded.name}: {encoded.kbps:.1f} kbit/s, {wall:.1f} s wall, {cpu:.1f} CPU-s")
    return encoded


def reference_argv(source: Source, out: Path, max_height: int) -> list[str]:
    """ricecooker's ``compress_video`` for an .mp4 target, with its defaults (CRF 32)."""
    assert source.probe.video_index is not None and source.probe.audio_index is not None
    return [
        "ffmpeg", "-nostdin", "-nostats", "-y",
        "-i", str(source.path),
        "-vf", f"scale='w=-2:h=trunc(min(ih,{max_height})/2)*2'",
        "-pix_fmt", "yuv420p",
        "-map", f"0:{source.probe.video_index}", "-map", f"0:{source.probe.audio_index}",
        "-b:a", "32k", "-ac", "1",
        "-crf", "32",
        "-v", "error", "-strict", "-2",
        "-profile:v", "baseline", "-level", "3.0", "-preset", "slow",
        "-movflags", "faststart",
        str(out),
    ]  # fmt: skip


def encode_reference(source: Source, out: Path, max_height: int) -> Encoded:
    argv = reference_argv(source, out, max_height)
    _, wall, cpu = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
    width, height, rate = video_stream(out)
    encoded = Encoded(
        source=source,
        name=REFERENCE if max_height == 480 else f"{REFERENCE}, max_height {max_height}",
        group="reference",
        path=out,
        bytes=out.stat().st_size,
        duration=media_duration(out),
        width=width,
        height=height,
        fps=float(rate) if rate else None,
        wall=wall,
        cpu=cpu,
        layout=mp4.layout(out),
    )
    say(f"{source.key} {encoded.name}: {encoded.kbps:.1f} kbit/s, {wall:.1f} s wall, {cpu:.1f} CPU-s")
    return encoded


def ssim_at_source(encoded: Encoded) -> float:
    """SSIM of the rendition upscaled (bicubic) to the source's size against the source.

    As in :func:`hub.media.ffmpeg.ssim`, a source whose frame rate the rendition
    halved is compared at the rendition's rate, frame for frame.
    """
    probe = encoded.source.probe
    assert probe.width and probe.height
    rendition = f"[0:v]scale={probe.width}:{probe.height}:flags=bicubic,setsar=1,format=yuv420p,setpts=PTS-STARTPTS[r]"
    reduce = ""
    if encoded.fps and probe.frame_rate and encoded.fps < float(probe.frame_rate) * 0.9:
        reduce = f"fps={Fraction(encoded.fps).limit_denominator(1001)},"
    original = f"[1:v]{reduce}setsar=1,format=yuv420p,setpts=PTS-STARTPTS[s]"
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats",
        "-i", str(encoded.path), "-i", str(encoded.source.path),
        "-filter_complex", f"{rendition};{original};[r][s]ssim",
        "-f", "null", "-",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    found = re.search(r"SSIM .* All:([0-9.]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"ssim failed for {encoded.path}:\n{result.stderr[-2000:]}")
    return float(found[1])


def score(encoded: Encoded) -> None:
    if encoded.width is None or encoded.height is None:
        return  # audio only
    # Ours at the profile's full size (a rendition made smaller is scaled up, as hub.media.quality says).
    width, height = encoded.width, encoded.height
    probe = encoded.source.probe
    if encoded.profile in PROFILES and probe.width and probe.height:
        width, height = PROFILES[encoded.profile].fit(probe.width, probe.height)
    encoded.ssim_own = ffmpeg.ssim(encoded.source.path, encoded.path, probe, width, height, limits=LIMITS)
    encoded.ssim_source = ssim_at_source(encoded)
    say(f"{encoded.source.key} {encoded.name}: SSIM {encoded.ssim_own:.4f} own size, {encoded.ssim_source:.4f} source")


def decode_cpu(source: Source) -> float:
    """CPU seconds to decode the source's video with the decoder threads a transcode uses."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-threads", str(ffmpeg.DECODER_THREADS), "-i", str(source.path),
            "-map", f"0:{source.probe.video_index}", "-f", "null", "-"]  # fmt: skip
    _, _, cpu = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
    return cpu


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_ladder(source: Source, out: Path, sequential: dict[str, Path]) -> Ladder:
    """The whole ladder, a process per rendition, two at a time (two Celery worker processes)."""
    profiles = applicable_profiles(source.probe)
    out.mkdir(exist_ok=True)
    targets = {p.name: out / f"{p.name}{p.extension}" for p in profiles}

    def build(profile: Profile) -> ffmpeg.RenditionInfo | None:
        return ffmpeg.transcode(source.path, source.probe, profile, targets[profile.name], limits=LIMITS)

    def both() -> list[ffmpeg.RenditionInfo | None]:
        with ThreadPoolExecutor(max_workers=2) as pool:  # each transcode runs in its own ffmpeg process
            return list(pool.map(build, profiles))

    _, wall, cpu = timed(both)
    identical = all(sha256(targets[name]) == sha256(path) for name, path in sequential.items() if name in targets)
    poster = targets.get("poster")
    ladder = Ladder(
        source=source,
        profiles=[p.name for p in profiles],
        wall=wall,
        cpu=cpu,
        identical=identical,
        sequential_wall=0.0,
        sequential_cpu=0.0,
        poster_bytes=poster.stat().st_size if poster is not None and poster.exists() else None,
    )
    say(f"ladder {source.key}: {wall:.1f} s wall ({ladder.realtime:.1f}x realtime), {cpu:.1f} CPU-s")
    return ladder


def run_worker_ladder(source: Source, out: Path) -> tuple[float, float]:
    """(wall, CPU) of the ladder as the workers run it, two renditions at a time.

    The ffmpeg/ffprobe steps of ``pipeline.process_material`` (one probe) and of
    each ``pipeline.build_rendition`` (a probe of its own fetched copy, the
    transcode, and the SSIM a video rendition stores), without the database and
    the storage, whose cost is not in child processes.
    """
    out.mkdir(exist_ok=True)

    def build(profile: Profile) -> None:
        probe = ffmpeg.probe(source.path, LIMITS)
        target = out / f"{profile.name}{profile.extension}"
        info = ffmpeg.transcode(source.path, probe, profile, target, limits=LIMITS)
        if info is not None and profile.kind == "video":
            full = info.full_plan  # measured as the pipeline does, at the profile's full size
            width, height = (full.width, full.height) if full else (info.width or 0, info.height or 0)
            ffmpeg.ssim(source.path, target, probe, width, height, limits=LIMITS)

    def everything() -> None:
        probe = ffmpeg.probe(source.path, LIMITS)
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(build, applicable_profiles(probe)))

    _, wall, cpu = timed(everything)
    say(f"ladder {source.key} as the workers run it: {wall:.1f} s wall, {cpu:.1f} CPU-s")
    return wall, cpu


# ---------------------------------------------------------------------------
# Profile variants: candidate retunings, measured on the same inputs in the same run.


def variants() -> list[tuple[str, str, Profile]]:
    """(input key, label, profile) for each candidate change to the ladder.

    On the camera clip ``video-360p`` is bound by its VBV cap and its SSIM barely
    moves with the rate settings (sensor noise that changes every frame cannot be
    kept at these rates), so the variants show what the cheap changes give and
    what SSIM 0.95 costs at 30 fps (the setting before 2026-12-01's run moved it
    to 15 fps); on the slides lesson, what a lower CRF gives at the source's size.
    """
    video_360 = PROFILES["video-360p"]
    assert video_360.camera and video_360.slides
    camera, slides = video_360.camera, video_360.slides
    return [
        ("camera", "video-360p, camera at 30 fps", _with(video_360, camera=_enc(camera, max_fps=30))),
        ("camera", "video-360p, camera preset veryslow", _with(video_360, camera=_enc(camera, preset="veryslow"))),
        (
            "camera",
            "video-360p, camera 15 fps, crf 24, maxrate 170k, veryslow",
            _with(
                video_360,
                camera=_enc(camera, max_fps=15, crf=24, maxrate_kbps=170, bufsize_kbit=340, preset="veryslow"),
            ),
        ),
        (
            "camera",
            "video-360p, camera at 30 fps, crf 26, maxrate 320k (what SSIM 0.95 costs at 30 fps)",
            _with(video_360, camera=_enc(camera, max_fps=30, crf=26, maxrate_kbps=320, bufsize_kbit=640)),
        ),
        ("slides", "video-360p, slides crf 24", _with(video_360, slides=_enc(slides, crf=24))),
        ("slides", "video-360p, slides crf 22", _with(video_360, slides=_enc(slides, crf=22))),
    ]


def _with(profile: Profile, **changes: object) -> Profile:
    return dataclasses.replace(profile, **changes)  # type: ignore[arg-type]


def _enc(encoding: VideoEncoding, **changes: object) -> VideoEncoding:
    return dataclasses.replace(encoding, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Reporting.


def kb(value: int) -> str:
    return f"{value / KB:.1f}"


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def reference_for(run: Run, encoded: Encoded, same_height: bool = False) -> Encoded | None:
    for other in run.encodes:
        if other.group != "reference" or other.source is not encoded.source:
            continue
        if same_height and other.height == encoded.height and other.name != REFERENCE:
            return other
        if not same_height and other.name == REFERENCE:
            return other
    return None


def picture(encoded: Encoded) -> str:
    if encoded.width is None:
        return "audio only"
    return f"{encoded.width}x{encoded.height} @ {encoded.fps:g}"


def table(run: Run, rows: Iterable[Encoded]) -> list[str]:
    lines = [
        "| input | encoding | picture | kbit/s total (video + audio) | MB/min | SSIM own size | SSIM at 720p "
        "| × realtime | CPU-s / media-min | KB before 1st frame: index / +frame / 1st fragment "
        "| bytes vs ref | SSIM 720p vs ref |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for encoded in rows:
        reference = reference_for(run, encoded)
        ratio = ssim_vs = "–"
        if reference is not None and encoded is not reference:
            ratio = f"{encoded.bytes / reference.bytes:.2f}"
            if encoded.ssim_source is not None and reference.ssim_source is not None:
                ssim_vs = f"{encoded.ssim_source - reference.ssim_source:+.4f}"
        split = f"{encoded.kbps:.1f} ({encoded.track_kbps('vide'):.1f} + {encoded.track_kbps('soun'):.1f})"
        lines.append(
            f"| {encoded.source.key} | {encoded.name} | {picture(encoded)} | {split} | {encoded.mb_per_minute:.3f} "
            f"| {fmt(encoded.ssim_own)} | {fmt(encoded.ssim_source)} | {encoded.realtime:.1f} "
            f"| {encoded.cpu_per_minute:.1f} | {kb(encoded.layout.head)} / {kb(encoded.layout.first_frame)} "
            f"/ {kb(encoded.layout.first_fragment)} | {ratio} | {ssim_vs} |"
        )
    return lines


@dataclass(frozen=True)
class Target:
    text: str
    met: bool
    detail: str


def _find(run: Run, key: str, name: str) -> Encoded | None:
    return next((e for e in run.encodes if e.source.key == key and e.name == name and e.group == "ours"), None)


def _split(encoded: Encoded) -> str:
    video, audio = encoded.track_kbps("vide"), encoded.track_kbps("soun")
    return (
        f"{encoded.kbps:.1f} kbit/s = video {video:.1f} + audio {audio:.1f} + container "
        f"{encoded.kbps - video - audio:.1f}"
    )


def targets(run: Run) -> list[Target]:
    found: list[Target] = []
    budgets = [
        ("video-360p", "camera", 200, 0.95),
        ("video-360p", "slides", 80, 0.99),
        ("video-240p", "camera", 120, None),
        ("video-240p", "slides", 50, None),
    ]
    for name, key, kbps, min_ssim in budgets:
        encoded = _find(run, key, name)
        if encoded is None:
            continue
        text = f"`{name}` ≤ {kbps} kbit/s total on the {key} input" + (
            f", SSIM ≥ {min_ssim} at its own size" if min_ssim else ""
        )
        met = encoded.kbps <= kbps and (min_ssim is None or (encoded.ssim_own or 0) >= min_ssim)
        detail = _split(encoded) + (f"; SSIM {fmt(encoded.ssim_own)}" if min_ssim else "")
        found.append(Target(text, met, detail))
    audio = _find(run, "slides", "audio")
    if audio is not None:
        found.append(Target("`audio` ≤ 32 kbit/s total on the slides lesson's speech", audio.kbps <= 32, _split(audio)))
    videos = [e for e in run.encodes if e.group == "ours" and e.width is not None]
    worst = max(videos, key=lambda e: e.layout.first_frame)
    found.append(
        Target(
            "bytes before the first frame ≤ 120 KB (every video rendition; through the end of the first frame's data)",
            all(e.layout.first_frame <= 120 * KB for e in videos),
            f"largest: {worst.source.key} {worst.name}, {kb(worst.layout.first_frame)} KB "
            f"(index {kb(worst.layout.head)} KB + the first keyframe)",
        )
    )
    if run.ladder is not None:
        ladder = run.ladder
        found.append(
            Target(
                "whole ladder for the slides lesson ≤ 15 CPU-s per media-minute",
                ladder.cpu_per_minute <= 15,
                f"{ladder.cpu_per_minute:.1f} CPU-s per media-minute "
                f"({ladder.cpu:.0f} CPU-s for {ladder.source.minutes:g} min)",
            )
        )
        found.append(
            Target(
                "whole ladder for the slides lesson ≥ 8× realtime wall on 2 cores",
                ladder.realtime >= 8,
                f"{ladder.realtime:.1f}× ({ladder.wall:.0f} s for {ladder.source.minutes:g} min, "
                f"load average {run.load_before[0]:.1f} at the start)",
            )
        )
        found.append(
            Target(
                "the same, as the workers run it (with their probes and the SSIM stored on each video rendition): "
                "≤ 15 CPU-s per media-minute",
                ladder.worker_cpu_per_minute <= 15,
                f"{ladder.worker_cpu_per_minute:.1f} CPU-s per media-minute ({ladder.worker_cpu:.0f} CPU-s)",
            )
        )
        found.append(
            Target(
                "the same, as the workers run it: ≥ 8× realtime wall on 2 cores",
                ladder.worker_realtime >= 8,
                f"{ladder.worker_realtime:.1f}× ({ladder.worker_wall:.0f} s)",
            )
        )
    for encoded in videos:
        reference = reference_for(run, encoded)
        if reference is None or encoded.ssim_source is None or reference.ssim_source is None:
            continue
        fewer = encoded.bytes < reference.bytes
        better = encoded.ssim_source >= reference.ssim_source
        detail = (
            f"bytes {encoded.bytes / reference.bytes:.2f}× the reference's; SSIM at 720p "
            f"{encoded.ssim_source:.4f} vs {reference.ssim_source:.4f} ({reference.height} lines)"
        )
        same = reference_for(run, encoded, same_height=True)
        if same is not None and same.ssim_source is not None:
            # A 240-line rendition cannot match a 480-line one scaled back to 720p; the
            # same-height reference (ricecooker's max_height) is the like-for-like verdict.
            like = encoded.bytes < same.bytes and encoded.ssim_source >= same.ssim_source
            detail += (
                f"; against the reference at the same {same.height} lines: bytes {encoded.bytes / same.bytes:.2f}×, "
                f"SSIM at 720p {encoded.ssim_source:.4f} vs {same.ssim_source:.4f} "
                f"({'met' if like else '**missed**'} at the same height)"
            )
        found.append(
            Target(
                f"{encoded.source.key} `{encoded.name}`: fewer bytes than {REFERENCE} at equal or better SSIM at 720p",
                fewer and better,
                detail,
            )
        )
    return found


def same_height_table(run: Run) -> list[str]:
    lines = [
        "| input | ours | reference at the same height | bytes ours / ref | SSIM own size ours / ref "
        "| SSIM at 720p ours / ref | CPU-s / media-min ours / ref |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for encoded in (e for e in run.encodes if e.group == "ours" and e.width is not None):
        same = reference_for(run, encoded, same_height=True)
        if same is None:
            continue
        lines.append(
            f"| {encoded.source.key} | {encoded.name} ({picture(encoded)}) | {picture(same)} "
            f"| {encoded.bytes / same.bytes:.2f} | {fmt(encoded.ssim_own)} / {fmt(same.ssim_own)} "
            f"| {fmt(encoded.ssim_source)} / {fmt(same.ssim_source)} "
            f"| {encoded.cpu_per_minute:.1f} / {same.cpu_per_minute:.1f} |"
        )
    return lines


def machine() -> str:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout.split()[2]
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, ffmpeg {version}"


def variant_rows(run: Run, tried: list[Encoded]) -> list[Encoded]:
    """Each profile a variant changes, as it is, followed by its variants."""
    rows: list[Encoded] = []
    for encoded in run.encodes:
        changed = [v for v in tried if v.source is encoded.source and v.profile == encoded.name]
        if encoded.group == "ours" and changed:
            rows += [encoded, *changed]
    return rows


def report(run: Run) -> str:
    lines = [
        f"Measured {run.started:%Y-%m-%d %H:%M} UTC on {machine()}; load average (1/5/15 min) "
        f"{'/'.join(f'{x:.1f}' for x in run.load_before)} at the start, "
        f"{'/'.join(f'{x:.1f}' for x in run.load_after)} at the end; the run took {run.seconds / 60:.0f} min"
        + (" (**--quick**: 1-minute and 20-second inputs)." if run.quick else "."),
        "",
        "Inputs: "
        + "; ".join(
            f"**{s.key}** {s.label}, {s.probe.width}x{s.probe.height} @ {s.probe.fps:g} fps, "
            f"{(s.probe.duration or 0) / 60:.2f} min, {s.probe.bytes / 1e6:.1f} MB, "
            f"detected as {'slides' if s.probe.slides else 'camera'}"
            for s in run.sources
        )
        + ".",
        "",
        "One encode at a time (nothing else of the benchmark running); ref = "
        f"{REFERENCE} (480 lines). SSIM at 720p: the rendition upscaled with bicubic to the source's size. "
        "KB = 1000 bytes; index = bytes before the first media byte, +frame = through the end of the first "
        "video frame's data.",
        "",
        *table(run, (e for e in run.encodes if e.group in ("ours", "reference"))),
        "",
        "Against the reference at the same height (ricecooker's `max_height` option):",
        "",
        *same_height_table(run),
        "",
    ]
    if run.ladder is not None:
        ladder = run.ladder
        lines += [
            f"Whole ladder for the slides lesson ({', '.join(ladder.profiles)}), a process per rendition, two at a "
            f"time: **{ladder.wall:.1f} s wall = {ladder.realtime:.1f}× realtime, {ladder.cpu:.1f} CPU-s = "
            f"{ladder.cpu_per_minute:.1f} CPU-s per media-minute**. The same renditions one at a time: "
            f"{ladder.sequential_wall:.1f} s wall, {ladder.sequential_cpu:.1f} CPU-s. Parallel outputs byte-identical "
            f"to the one-at-a-time ones: {'yes' if ladder.identical else 'NO'}."
            + (f" Poster: {kb(ladder.poster_bytes)} KB." if ladder.poster_bytes is not None else "")
            + f" Decoding the source's video alone (2 decoder threads, nothing else) costs "
            f"{ladder.decode_cpu / ladder.source.minutes:.1f} CPU-s per media-minute; each video rendition's "
            "process pays it once. As the workers run it (a probe of the original, then per rendition a probe, "
            "the transcode and, for video, the SSIM stored on the row), two at a time: "
            f"**{ladder.worker_wall:.1f} s wall = {ladder.worker_realtime:.1f}× realtime, {ladder.worker_cpu:.1f} "
            f"CPU-s = {ladder.worker_cpu_per_minute:.1f} CPU-s per media-minute**.",
            "",
        ]
    tried = [e for e in run.encodes if e.group == "variant"]
    if tried:
        lines += [
            "Candidate profile changes (not in `hub/media/profiles.py`; measured in this run):",
            "",
            *table(run, variant_rows(run, tried)),
            "",
        ]
    lines += ["Targets (the ladder as it is in `hub/media/profiles.py`):", ""]
    for target in targets(run):
        lines.append(f"- {'met' if target.met else '**missed**'}: {target.text} — {target.detail}")
    return "\n".join(lines) + "\n"


def write_results(text: str) -> None:
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else f"# Media benchmark\n\n{BEGIN}\n{END}\n"
    if BEGIN not in current or END not in current:
        current = current.rstrip("\n") + f"\n\n## Results\n\n{BEGIN}\n{END}\n"
    before, rest = current.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    RESULTS.write_text(f"{before}{BEGIN}\n\n{text}\n{END}{after}", encoding="utf-8")


# ---------------------------------------------------------------------------
# The run.


INPUTS: tuple[tuple[str, str, Callable[[Path, float], Path]], ...] = (
    ("slides", "slides + speech lesson", inputs.slides_lesson),
    ("camera", "hand-held classroom camera with sensor noise", inputs.camera_clip),
)


def measure_ladder(run: Run, slides: Source, work: Path, out: Path, sequential: dict[str, Path]) -> Ladder:
    """The poster one at a time, then the whole slides ladder two at a time, alone and as the workers run it."""
    poster = PROFILES["poster"]
    _, poster_wall, poster_cpu = timed(
        lambda: ffmpeg.transcode(slides.path, slides.probe, poster, out / "slides-poster.jpg", limits=LIMITS)
    )
    sequential["poster"] = out / "slides-poster.jpg"
    say("the slides ladder, two renditions at a time")
    ladder = run_ladder(slides, work / "ladder", sequential)
    mine = [e for e in run.encodes if e.group == "ours" and e.source is slides]
    ladder.sequential_wall = sum(e.wall for e in mine) + poster_wall
    ladder.sequential_cpu = sum(e.cpu for e in mine) + poster_cpu
    ladder.decode_cpu = decode_cpu(slides)
    say("the slides ladder as the workers run it, two renditions at a time")
    ladder.worker_wall, ladder.worker_cpu = run_worker_ladder(slides, work / "worker-ladder")
    return ladder


def workdir(requested: str | None) -> tuple[Path, bool]:
    """The work directory and whether it is a temp dir to remove; never inside the repository."""
    path = Path(requested).resolve() if requested else Path(tempfile.mkdtemp(prefix="oer-media-bench-")).resolve()
    if path == ROOT or ROOT in path.parents:
        raise SystemExit(f"--workdir {path} is inside the repository {ROOT}: generated media must stay out of it")
    path.mkdir(parents=True, exist_ok=True)
    return path, requested is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.media", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-minute and 20-second inputs (a smoke run)")
    parser.add_argument("--workdir", help="where inputs (kept, reused) and outputs go; default: a temp dir")
    parser.add_argument("--variants", action="store_true", help="also measure candidate profile changes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument(
        "--input",
        choices=("slides", "camera"),
        help="only this input (re-measuring one part after a profile change; prints, never rewrites RESULTS.md)",
    )
    args = parser.parse_args(argv)
    for tool in ("ffmpeg", "ffprobe", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install -y ffmpeg espeak-ng")
    work, temporary = workdir(args.workdir)
    say(f"work directory: {work}")
    run = Run(quick=args.quick, started=datetime.now(UTC), load_before=os.getloadavg())
    clock = time.perf_counter()
    try:
        slides_s, camera_s = (60, 20) if args.quick else (600, 120)
        say("generating inputs")
        wanted = [(key, label, make) for key, label, make in INPUTS if args.input in (None, key)]
        made = [(key, label, make(work, slides_s if key == "slides" else camera_s)) for key, label, make in wanted]
        for key, label, path in made:
            run.sources.append(Source(key, label, path, ffmpeg.probe(path, LIMITS)))
        out = work / "out"
        out.mkdir(exist_ok=True)
        sequential: dict[str, Path] = {}
        say("one encode at a time")
        for source in run.sources:
            for profile in applicable_profiles(source.probe):
                if profile.kind == "video" or (profile.kind == "audio" and source.key == "slides"):
                    target = out / f"{source.key}-{profile.name}{profile.extension}"
                    run.encodes.append(encode_ours(source, profile, target))
                    if source.key == "slides":
                        sequential[profile.name] = target
            for height in (480, 360, 240):
                run.encodes.append(encode_reference(source, out / f"{source.key}-reference-{height}.mp4", height))
        if args.variants:
            for key, label, profile in variants():
                chosen = next((s for s in run.sources if s.key == key), None)
                if chosen is not None:
                    target = out / f"{key}-variant-{len(run.encodes)}{profile.extension}"
                    run.encodes.append(encode_ours(chosen, profile, target, group="variant", name=label))
        slides = next((s for s in run.sources if s.key == "slides"), None)
        if slides is not None:
            run.ladder = measure_ladder(run, slides, work, out, sequential)
        say("SSIM, two at a time (untimed)")
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(score, run.encodes))
        run.load_after = os.getloadavg()
        run.seconds = time.perf_counter() - clock
        text = report(run)
        print(text)
        if args.quick or args.no_write or args.input:
            say("RESULTS.md not rewritten (quick run, one input, or --no-write)")
        else:
            write_results(text)
            say(f"wrote {RESULTS.relative_to(ROOT)}")
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif temporary:
            say(f"kept {work}")
    return 0
