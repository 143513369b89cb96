"""Per-title choices for a video rendition: what to trade so that it keeps its SSIM floor inside its budget.

A rendition has a budget (``Profile.budget_kbps``, video + audio + container) and
a floor (``Profile.ssim_floor``). The VBV cap in :mod:`hub.media.profiles` keeps
every encode inside the budget whatever the picture; what it cannot keep is the
quality: fixed settings tuned on one camera clip gave SSIM 0.953 on it and 0.908
on a noisier one (issue 14). So each title is measured, not guessed:
:func:`hub.media.ffmpeg.plan_video` encodes a sample of the source (three 2 s
windows from across the file, or the whole of a file under 9 s) with the
rendition's own encoder settings, measures each trial's SSIM, and stops at the
first that holds the floor with a margin. The functions here are the decisions,
pure and database-free; ffmpeg.py runs the trials through ``_run`` like every
other encode (one x264 thread: the trials are deterministic too).

The stages (:data:`STAGES`), in the order tried, each at most once and each on
top of the best plan so far; a stage is kept only if it raised the SSIM by
:data:`MIN_GAIN`:

1. **A lower CRF** (twice at most) when the trial came out well under the cap:
   the picture was limited by the quality target, not by the budget, and more
   bits are free within the budget.
2. **A lower frame rate** (the source divided by a whole number: 30 -> 10 instead
   of 15): more bits per picture; motion is less fluid.
3. **A smaller picture** within the profile (360p -> 288p, then 240p if 288p
   helped; 240p -> 192p -> 160p): more bits per pixel, shown at the player's size.
4. **Denoising** (``hqdn3d``, light, then strong if light helped): grain is
   detail the viewer does not need, and coding it spends the budget. Last,
   because measured against the original it rarely pays: +0.002 at best on
   the grainy clips, where fewer frames paid +0.003 on a clean, busy one.

The number of trials follows the lesson's length (:func:`max_trials`): two
for a lesson up to two minutes, up to six for six minutes and more, so that
the probe stays a small part of the transcode's CPU.

On a clean picture with detail in every frame (a zoom into a fractal) this holds
the floor: 360p measured 0.9509 with the fixed settings and 0.9540 at 10 fps
(benchmarks/media/RESULTS.md, "The quality floor").

What the SSIM is measured against, so the floor means what a viewer sees: the
*original* (never a denoised picture), scaled to the profile's full size (a
288p rendition is scaled up to 640x360 with bicubic, as the player shows it, and
compared there). Measured so, sensor grain is part of the picture, and no
budget here can code it: a 720p camera with heavy grain measured 0.884 at 160
kbit/s, 0.890 at 265 kbit/s without a cap, and 0.995 only at 11 Mbit/s, denoised
or not. Comparing against a denoised original would have met the floor on paper;
the floor is instead reported as missed, honestly, with what was tried. Frame
rate is the one trade SSIM does not see (each rendition frame is compared with
the source frame it was made from), so a reduced rate is always reported as a
trade, floor met or not (:func:`traded`).

When nothing holds the floor, the best plan the search kept is used, and the
rendition says what was traded and what it measured (``Rendition.quality``,
shown on the lesson page and in the API, in the reader's language).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from hub.media.profiles import Profile, VideoEncoding

Denoise = Literal["", "light", "strong"]

DENOISE_FILTERS: dict[str, dict[str, float]] = {
    # hqdn3d's spatial and temporal strengths (its default is 4 : 3 : 6 : 4.5). Temporal
    # smoothing is what removes grain (it changes from frame to frame); spatial is kept lower
    # so that chalk strokes and text edges survive.
    "light": {"luma_spatial": 2, "chroma_spatial": 1.5, "luma_tmp": 4, "chroma_tmp": 3},
    "strong": {"luma_spatial": 4, "chroma_spatial": 3, "luma_tmp": 7, "chroma_tmp": 5},
}
MARGIN = 0.004
"""A sample must beat the floor by this much: the whole file is measured afterwards, and
the sample (a few seconds) is not the whole lesson."""
UNDER_CAP = 0.75
"""A trial below this share of the video cap was limited by its CRF, not by the budget."""
CRF_STEP = 4
MIN_CRF = 20
MIN_GAIN = 0.002
"""A stage is kept only when it raised the sample's SSIM by at least this much; otherwise
the search goes on from the plan before it. Sensor grain is why: measured against the
original, grain is detail that no budget here can code (a 720p clip with heavy grain measured
0.884 at 160 kbit/s, 0.890 at 265 and 0.995 at 11 Mbit/s, denoised or not), so the trades
gain nothing on it and none is taken."""
MAX_TRIALS = 6
"""At most this many sample encodes per rendition, however long the lesson."""
TRIAL_SHARE = 0.1
"""The trials' sample seconds together stay within this share of the lesson's length (but at
least two trials): a trial costs about twice its seconds of transcode (the encode, then the
SSIM's decode of the original), so the probe stays near a fifth of the transcode's CPU or less."""


def max_trials(duration: float, sample_seconds: float) -> int:
    """How many trials a lesson of ``duration`` seconds gets: 2 for 2 minutes, 6 from 6 minutes."""
    if sample_seconds <= 0:
        return 2
    return max(2, min(MAX_TRIALS, math.floor(TRIAL_SHARE * duration / sample_seconds)))


Stage = Literal["crf", "light", "strong", "slower", "smaller", "smallest"]
STAGES: tuple[Stage, ...] = ("crf", "crf", "slower", "smaller", "smallest", "light", "strong")
"""Tried in this order, each at most once, each on top of the best plan so far (see the module's doc)."""
SCALES: dict[str, Fraction] = {"smaller": Fraction(4, 5), "smallest": Fraction(2, 3)}
"""Of the profile's box: 4/5 makes 360p into 288p, 2/3 into 240p."""


@dataclass(frozen=True)
class Plan:
    """What one encode of a video rendition uses: size, frame rate, denoising, CRF."""

    width: int
    height: int
    rate: Fraction
    denoise: Denoise
    crf: int
    slower: bool = False
    """Frame rate cut to about two thirds of the profile's cap (30 fps sources: 10 instead of 15)."""
    scale: Fraction = Fraction(1)
    """Of the profile's box."""

    @property
    def encode(self) -> tuple[int, int, Fraction, str, int]:
        """What the encoder gets: two plans equal in this make the same file (a 180p source at 288p is 180p)."""
        return (self.width, self.height, self.rate, self.denoise, self.crf)


@dataclass(frozen=True)
class Trial:
    """A plan as measured on the sample."""

    plan: Plan
    ssim: float
    """Against the original, at the profile's full size."""
    kbps: float
    """The sample's video bit rate."""


@dataclass(frozen=True)
class Choice:
    plan: Plan
    ssim: float
    """The sample's; the rendition's own is measured on the whole file afterwards."""
    met: bool
    trials: int


def output_rate(rate: Fraction | None, max_fps: float) -> Fraction:
    """The source rate divided by the smallest whole number that brings it under the cap.

    30 -> 15 and 25 -> 12.5 keep every other frame, evenly; a plain cap of 15
    on 25 fps would drop frames irregularly and judder.
    """
    cap = Fraction(max_fps).limit_denominator(1001)
    if rate is None:
        return cap
    return rate / math.ceil(rate / cap)


def plan_for(
    profile: Profile,
    encoding: VideoEncoding,
    width: int,
    height: int,
    rate: Fraction | None,
    *,
    denoise: Denoise = "",
    crf: int | None = None,
    slower: bool = False,
    scale: Fraction = Fraction(1),
) -> Plan:
    """The plan with these trades for a ``width`` x ``height`` source at ``rate``."""
    box = dataclasses.replace(
        profile,
        long_side=math.floor(profile.long_side * scale),
        short_side=math.floor(profile.short_side * scale),
    )
    out_width, out_height = box.fit(width, height)
    out_rate = output_rate(rate, encoding.max_fps * 2 / 3 if slower else encoding.max_fps)
    return Plan(out_width, out_height, out_rate, denoise, encoding.crf if crf is None else crf, slower, scale)


def nominal(profile: Profile, encoding: VideoEncoding, width: int, height: int, rate: Fraction | None) -> Plan:
    """The profile's own settings: what every title got before the per-title choices."""
    return plan_for(profile, encoding, width, height, rate)


def _stage_plan(
    stage: Stage, base: Trial, profile: Profile, encoding: VideoEncoding, width: int, height: int, rate: Fraction | None
) -> Plan | None:
    """``base``'s plan with ``stage`` applied, or None when the stage does not apply to it."""
    plan = base.plan
    trades: dict[str, Any] = {"denoise": plan.denoise, "crf": plan.crf, "slower": plan.slower, "scale": plan.scale}
    if stage == "crf":
        # Under the cap: the CRF limited the picture; spend the budget before giving anything up.
        if base.kbps >= UNDER_CAP * encoding.maxrate_kbps or plan.crf <= MIN_CRF:
            return None
        trades["crf"] = max(MIN_CRF, plan.crf - CRF_STEP)
    elif stage == "light":
        if plan.denoise:
            return None
        trades["denoise"] = "light"
    elif stage == "strong":
        if plan.denoise != "light":  # only when light denoising helped
            return None
        trades["denoise"] = "strong"
    elif stage == "slower":
        trades["slower"] = True
    elif stage == "smaller":
        trades["scale"] = SCALES["smaller"]
    elif plan.scale != SCALES["smaller"]:  # "smallest", only when "smaller" helped
        return None
    else:
        trades["scale"] = SCALES["smallest"]
    return plan_for(profile, encoding, width, height, rate, **trades)


def next_plan(
    profile: Profile,
    encoding: VideoEncoding,
    width: int,
    height: int,
    rate: Fraction | None,
    trials: list[Trial],
    *,
    limit: int = MAX_TRIALS,
) -> Plan | None:
    """The plan to try next after ``trials`` (in the order tried), or None when the search is over.

    ``limit`` is the number of trials allowed (:func:`max_trials`).

    Pure: the trials so far are replayed through :data:`STAGES` to find where the
    search stands, so the worker keeps no state but the list.
    """
    if not trials:
        return nominal(profile, encoding, width, height, rate)
    if trials[-1].ssim >= profile.ssim_floor + MARGIN or len(trials) >= min(limit, MAX_TRIALS):
        return None
    base, done, stages = trials[0], 1, iter(STAGES)
    for stage in stages:
        candidate = _stage_plan(stage, base, profile, encoding, width, height, rate)
        if candidate is None or candidate.encode in {trial.plan.encode for trial in trials[:done]}:
            continue  # not applicable, or the same picture as one tried (a small source at 288p is 180p)
        if done == len(trials):
            return candidate
        if trials[done].ssim >= base.ssim + MIN_GAIN:
            base = trials[done]
        done += 1
    return None


def choose(trials: list[Trial], floor: float) -> Choice:
    """The first trial that holds the floor (with the margin), else the best plan the search kept.

    When nothing holds the floor, a trade worth less than MIN_GAIN is not taken: on
    a grainy board a lower CRF doubled the bytes for +0.001, and the earlier trial
    has fewer trades and fewer bytes.
    """
    if not trials:
        raise ValueError("no trials to choose from")
    for trial in trials:
        if trial.ssim >= floor + MARGIN:
            return Choice(trial.plan, trial.ssim, True, len(trials))
    kept = trials[0]
    for trial in trials[1:]:  # the search's own rule: a stage is kept when it gained MIN_GAIN
        if trial.ssim >= kept.ssim + MIN_GAIN:
            kept = trial
    return Choice(kept.plan, kept.ssim, False, len(trials))


def sample_windows(duration: float, *, windows: int = 3, seconds: float = 2.0) -> list[tuple[float, float]]:
    """(start, length) of the stretches a trial encodes: ``windows`` spread evenly across the file.

    A short file is sampled whole: three windows would be most of it anyway.
    """
    if duration <= windows * seconds * 1.5:
        return [(0.0, duration)]
    return [(round(duration * (index + 0.5) / windows - seconds / 2, 3), seconds) for index in range(windows)]


def describe(plan: Plan, nominal_plan: Plan, *, ssim: float | None, floor: float, budget_kbps: int) -> dict[str, Any]:
    """What goes on the rendition (``Rendition.quality``): the floor, whether it held, and what was traded.

    Structured, so the lesson page can say it in the reader's language and API
    clients can read it without parsing a sentence.
    """
    return {
        "floor": floor,
        "budget_kbps": budget_kbps,
        "met": ssim is not None and ssim >= floor,
        "width": plan.width,
        "height": plan.height,
        "full_width": nominal_plan.width,
        "full_height": nominal_plan.height,
        "fps": round(float(plan.rate), 2),
        "full_fps": round(float(nominal_plan.rate), 2),
        "denoise": plan.denoise,
        "crf": plan.crf,
    }


def traded(quality: dict[str, Any] | None) -> bool:
    """Whether a rendition gave up size or frame rate against its profile, or missed its floor.

    Denoising and a lower CRF are not listed: the first removes grain, not the
    lesson, and the SSIM against the original counts what it costs; the second
    only spends more of the budget.
    """
    if not quality:
        return False
    return (
        not quality.get("met", True)
        or quality.get("height", 0) < quality.get("full_height", 0)
        or quality.get("fps", 0) < quality.get("full_fps", 0)
    )
