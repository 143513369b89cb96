"""Benchmark: the quality floor (issue 14) on clips of different character, beside ricecooker's ``--compress``.

    .venv/bin/python -m benchmarks.media.floor [--workdir DIR] [--clips NAME,...] [--long SECONDS] [--no-write]

For each generated clip of ``tests/support/clips.py`` (grain low and high, a zoom,
handwriting on a board, slide changes, a fractal zoom; which were held out while
tuning is said there) and each video profile:

- **fixed**: the profile's own settings for every title, as before issue 14
  (``hub.media.quality.nominal``);
- **per title**: what the workers do now, :func:`hub.media.ffmpeg.plan_video` (trial
  encodes of a sample) then the transcode with the chosen plan;
- **ricecooker**: Kolibri's ``--compress`` settings at the same height
  (:func:`benchmarks.media.run.reference_argv`).

Bytes and kbit/s are the whole file (video + audio + container). SSIM is
:func:`hub.media.ffmpeg.ssim` against the original at the profile's full size
(640x360 or 426x240 for these sources): a rendition made smaller is scaled up
with bicubic, as a player shows it; the original is never denoised. CPU seconds
are the child processes' (``getrusage``), with the decoder sandbox off
(``Sandbox(mode="none")``: bubblewrap's PID namespace hides its children's CPU
time from the parent); the inputs are generated here, so nothing untrusted runs.
The probe's cost is reported against the transcode's on the clips and on a
longer cut of the held-out 720p camera (``--long``, 120 s by default), since on
a 10 s clip the sample is most of the file.

The results go into their own block of ``benchmarks/media/RESULTS.md`` (unless
``--no-write``), leaving the ladder benchmark's block alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.media.run import RESULTS, Source, machine, reference_argv, say, timed
from hub.media import ffmpeg, quality
from hub.media.profiles import PROFILES, Profile
from hub.media.sandbox import Sandbox
from tests.support import clips as generated

LIMITS = ffmpeg.MediaLimits(sandbox=Sandbox(mode="none"))
BEGIN = "<!-- floor results: written by `python -m benchmarks.media.floor`; edit above or below -->"
END = "<!-- end of floor results -->"
VIDEO_PROFILES = ("video-360p", "video-240p")


@dataclass
class Row:
    clip: generated.Clip
    profile: Profile
    fixed_kbps: float
    fixed_ssim: float
    kbps: float
    ssim: float
    plan: quality.Plan
    full: quality.Plan
    trials: int
    probe_cpu: float
    transcode_cpu: float
    reference_kbps: float
    reference_ssim: float

    @property
    def record(self) -> dict[str, object]:
        return quality.describe(
            self.plan, self.full, ssim=self.ssim, floor=self.profile.ssim_floor, budget_kbps=self.profile.budget_kbps
        )


def _kbps(path: Path, duration: float) -> float:
    return path.stat().st_size * 8 / duration / 1000


def _picture(plan: quality.Plan) -> str:
    return f"{plan.width}x{plan.height} @ {float(plan.rate):g}" + (f", denoise {plan.denoise}" if plan.denoise else "")


def measure(clip: generated.Clip, source: Path, profile: Profile, work: Path) -> Row:
    probe = ffmpeg.probe(source, LIMITS)
    duration = probe.duration or 0.0
    full = ffmpeg._full_plan(probe, profile)
    fixed = work / f"{clip.name}-{profile.name}-fixed.mp4"
    ffmpeg.transcode(source, probe, profile, fixed, limits=LIMITS, plan=full)
    fixed_ssim = ffmpeg.ssim(source, fixed, probe, full.width, full.height, limits=LIMITS)
    choice, _, probe_cpu = timed(lambda: ffmpeg.plan_video(source, probe, profile, work, LIMITS))
    chosen = work / f"{clip.name}-{profile.name}.mp4"
    info, _, transcode_cpu = timed(
        lambda: ffmpeg.transcode(source, probe, profile, chosen, limits=LIMITS, plan=choice.plan)
    )
    assert info is not None
    ssim = ffmpeg.ssim(source, chosen, probe, full.width, full.height, limits=LIMITS)
    reference = work / f"{clip.name}-{profile.name}-ricecooker.mp4"
    key = Source(key=clip.name, label=clip.character, path=source, probe=probe)
    subprocess.run(reference_argv(key, reference, full.height), check=True, capture_output=True)
    reference_ssim = ffmpeg.ssim(source, reference, probe, full.width, full.height, limits=LIMITS)
    row = Row(
        clip=clip,
        profile=profile,
        fixed_kbps=_kbps(fixed, duration),
        fixed_ssim=fixed_ssim,
        kbps=_kbps(chosen, duration),
        ssim=ssim,
        plan=choice.plan,
        full=full,
        trials=choice.trials,
        probe_cpu=probe_cpu,
        transcode_cpu=transcode_cpu,
        reference_kbps=_kbps(reference, duration),
        reference_ssim=reference_ssim,
    )
    say(
        f"{clip.name} {profile.name}: fixed {row.fixed_kbps:.1f} kbit/s SSIM {fixed_ssim:.4f}; per title "
        f"{_picture(choice.plan)} {row.kbps:.1f} kbit/s SSIM {ssim:.4f} ({choice.trials} trials, probe "
        f"{probe_cpu:.1f} CPU-s, transcode {transcode_cpu:.1f}); ricecooker {row.reference_kbps:.1f} kbit/s "
        f"SSIM {reference_ssim:.4f}"
    )
    return row


def _outcome(row: Row) -> str:
    record = row.record
    held = "held" if record["met"] else "**missed**"
    budget = "in budget" if row.kbps <= row.profile.budget_kbps else "**over budget**"
    traded = []
    if row.plan.rate < row.full.rate:
        traded.append(f"{float(row.plan.rate):g} fps")
    if row.plan.height < row.full.height:
        traded.append(f"{row.plan.height}p")
    if row.plan.denoise:
        traded.append(f"denoise {row.plan.denoise}")
    if row.plan.crf != row.full.crf:
        traded.append(f"CRF {row.plan.crf}")
    return f"{held}, {budget}" + (f"; traded: {', '.join(traded)}" if traded else "")


def report(rows: list[Row], long_rows: list[Row], started: datetime, minutes: float) -> str:
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine()}; the run took {minutes:.0f} min.",
        "",
        "Floors: `video-360p` ≤ 200 kbit/s total at SSIM ≥ 0.95; `video-240p` ≤ 120 kbit/s at ≥ 0.93. "
        "SSIM against the original (never denoised) at the profile's full size; kbit/s of the whole file. "
        "*fixed* = the profile's settings for every title (before); *per title* = trial encodes of a sample, "
        "then the chosen plan (now); ricecooker = `--compress` at the same height.",
        "",
        "| clip | character | tuned on | profile | fixed: kbit/s, SSIM | per title: picture | kbit/s | SSIM "
        "| floor | trials | probe / transcode CPU-s | ricecooker: kbit/s, SSIM |",
        "| --- | --- | --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows + long_rows:
        lines.append(
            f"| {row.clip.name} | {row.clip.character}, {row.clip.size}, {row.clip.seconds:g} s "
            f"| {'yes' if row.clip.tuned else 'held out'} | {row.profile.name} "
            f"| {row.fixed_kbps:.1f}, {row.fixed_ssim:.4f} | {_picture(row.plan)} | {row.kbps:.1f} | {row.ssim:.4f} "
            f"| {_outcome(row)} | {row.trials} | {row.probe_cpu:.1f} / {row.transcode_cpu:.1f} "
            f"({row.probe_cpu / row.transcode_cpu:.2f}×) | {row.reference_kbps:.1f}, {row.reference_ssim:.4f} |"
        )
    held = sum(1 for row in rows + long_rows if row.record["met"])
    lines += [
        "",
        f"Floor held on {held} of {len(rows) + len(long_rows)} renditions; every one within its budget: "
        f"{'yes' if all(row.kbps <= row.profile.budget_kbps for row in rows + long_rows) else '**no**'}.",
    ]
    for row in long_rows:
        lines.append(
            f"Probe cost on the {row.clip.seconds:g} s cut ({row.profile.name}): {row.probe_cpu:.1f} CPU-s for "
            f"{row.trials} trials against {row.transcode_cpu:.1f} CPU-s for the transcode = "
            f"{row.probe_cpu / row.transcode_cpu:.2f}× (the sample is 6 s whatever the length)."
        )
    return "\n".join(lines) + "\n"


def write(text: str) -> None:
    current = RESULTS.read_text(encoding="utf-8")
    block = f"{BEGIN}\n\n{text}\n{END}"
    if BEGIN in current and END in current:
        current = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, current, flags=re.S)
    else:
        current = current.rstrip("\n") + "\n\n## The quality floor on clips of different character (issue 14)\n\n"
        current += block + "\n"
    RESULTS.write_text(current, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="keep and reuse the generated clips here")
    parser.add_argument("--clips", default=",".join(generated.CLIPS), help="comma-separated clip names")
    parser.add_argument("--long", type=float, default=120, help="seconds of the long held-out cut; 0: none")
    parser.add_argument("--no-write", action="store_true", help="print only; do not rewrite RESULTS.md")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for name in args.clips.split(","):
            clip = generated.CLIPS[name]
            source = generated.make(clip, work)
            for profile in VIDEO_PROFILES:
                rows.append(measure(clip, source, PROFILES[profile], work))
        long_rows = []
        if args.long:
            held_out = generated.CLIPS["camera-grain-high-720p"]
            clip = dataclasses.replace(held_out, name=f"{held_out.name}-{args.long:g}s", seconds=args.long)
            source = generated.make(clip, work)
            long_rows = [measure(clip, source, PROFILES[profile], work) for profile in VIDEO_PROFILES]
    text = report(rows, long_rows, started, (datetime.now(UTC) - started).total_seconds() / 60)
    print(text)
    if not args.no_write:
        write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
