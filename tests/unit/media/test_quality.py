"""The per-title decisions of hub.media.quality, as pure functions: no ffmpeg runs here."""

from __future__ import annotations

from fractions import Fraction

import pytest
from flask import Flask

from hub import i18n
from hub.media import quality
from hub.media.profiles import PROFILES
from hub.media.quality import Plan, Trial

P360 = PROFILES["video-360p"]
P240 = PROFILES["video-240p"]
CAMERA360 = P360.camera
CAMERA240 = P240.camera
assert CAMERA360 is not None and CAMERA240 is not None
FPS30 = Fraction(30)


def _next(trials: list[Trial], width: int = 1280, height: int = 720, profile=P360, encoding=CAMERA360) -> Plan | None:  # type: ignore[no-untyped-def]
    return quality.next_plan(profile, encoding, width, height, FPS30, trials)


def test_the_first_trial_is_the_profiles_own_settings() -> None:
    assert _next([]) == Plan(640, 360, Fraction(15), "", CAMERA360.crf)
    assert _next([], profile=P240, encoding=CAMERA240) == Plan(426, 240, Fraction(15), "", CAMERA240.crf)


def test_a_trial_above_the_floor_ends_the_search_and_is_chosen() -> None:
    nominal = quality.nominal(P360, CAMERA360, 1280, 720, FPS30)
    trials = [Trial(nominal, P360.ssim_floor + quality.MARGIN, 150)]
    assert _next(trials) is None
    assert quality.choose(trials, P360.ssim_floor) == quality.Choice(nominal, trials[0].ssim, True, 1)


def test_under_the_cap_the_crf_is_lowered_before_anything_is_traded() -> None:
    nominal = quality.nominal(P360, CAMERA360, 1280, 720, FPS30)
    low = CAMERA360.maxrate_kbps * quality.UNDER_CAP - 1  # the CRF limited it, not the budget
    following = _next([Trial(nominal, 0.93, low)])
    assert following == Plan(640, 360, Fraction(15), "", CAMERA360.crf - quality.CRF_STEP)


def test_at_the_cap_the_trades_come_in_order() -> None:
    at_cap = CAMERA360.maxrate_kbps
    trials: list[Trial] = []
    seen = []
    while (plan := _next(trials)) is not None:
        seen.append((plan.width, plan.height, plan.rate, plan.denoise))
        trials.append(Trial(plan, 0.90 + 0.01 * len(trials), at_cap))  # each step helps, never enough
    assert seen == [
        (640, 360, 15, ""),
        (640, 360, 10, ""),  # 30 fps divided by 3, not 2
        (512, 288, 10, ""),
        (426, 240, 10, ""),
        (426, 240, 10, "light"),
        (426, 240, 10, "strong"),
    ]
    assert len(trials) <= quality.MAX_TRIALS
    chosen = quality.choose(trials, P360.ssim_floor)
    assert not chosen.met and chosen.plan == trials[-1].plan  # the best SSIM when none held the floor


def test_a_stage_that_gains_nothing_is_not_kept() -> None:
    # Grain-limited: fewer frames and fewer pixels lose SSIM; the search goes on from the nominal plan.
    nominal = quality.nominal(P360, CAMERA360, 1280, 720, FPS30)
    trials = [Trial(nominal, 0.880, 160)]
    slower = _next(trials)
    assert slower == Plan(640, 360, Fraction(10), "", CAMERA360.crf, slower=True)
    trials.append(Trial(slower, 0.879, 150))
    smaller = _next(trials)
    assert smaller is not None and (smaller.width, smaller.height, smaller.rate, smaller.denoise) == (512, 288, 15, "")
    trials.append(Trial(smaller, 0.870, 150))
    light = _next(trials)  # "smallest" only follows a "smaller" that helped
    assert light == Plan(640, 360, Fraction(15), "light", CAMERA360.crf)
    trials.append(Trial(light, 0.881, 158))
    assert _next(trials) is None  # "strong" only follows a "light" that helped
    assert quality.choose(trials, P360.ssim_floor) == quality.Choice(nominal, 0.880, False, 4)  # +0.001: no trade
    better = [Trial(nominal, 0.880, 160), Trial(light, 0.885, 158)]
    assert quality.choose(better, P360.ssim_floor).plan == light


def test_a_clean_picture_at_the_cap_trades_frame_rate() -> None:
    # Detailed motion without grain (a zoom into a fractal): fewer frames, more bits for each.
    nominal = quality.nominal(P360, CAMERA360, 854, 480, FPS30)
    trials = [Trial(nominal, 0.9505, 187)]
    slower = _next(trials, 854, 480)
    assert slower == Plan(640, 360, Fraction(10), "", CAMERA360.crf, slower=True)
    trials.append(Trial(slower, 0.9601, 170))
    assert _next(trials, 854, 480) is None
    assert quality.choose(trials, P360.ssim_floor) == quality.Choice(slower, 0.9601, True, 2)


@pytest.mark.parametrize(("duration", "trials"), [(10, 2), (120, 2), (180, 3), (360, 6), (2700, 6)])
def test_longer_lessons_get_more_trials(duration: float, trials: int) -> None:
    assert quality.max_trials(duration, 6.0) == trials
    nominal = quality.nominal(P360, CAMERA360, 1280, 720, FPS30)
    done = [Trial(nominal, 0.90, 160)] * trials
    assert quality.next_plan(P360, CAMERA360, 1280, 720, FPS30, done, limit=trials) is None


def test_the_240p_trades_and_a_25_fps_source() -> None:
    smaller = quality.plan_for(P240, CAMERA240, 1280, 720, Fraction(25), slower=True, scale=Fraction(4, 5))
    assert smaller == Plan(340, 192, Fraction(25, 3), "", CAMERA240.crf, True, Fraction(4, 5))
    assert quality.plan_for(P240, CAMERA240, 1280, 720, Fraction(25), scale=Fraction(2, 3)).height == 160


def test_trades_that_make_the_same_picture_are_not_tried_twice() -> None:
    # A 320x180 source is never upscaled: 360p, 288p and 240p boxes all give 320x180.
    at_cap = CAMERA360.maxrate_kbps
    trials: list[Trial] = []
    while (plan := _next(trials, 320, 180)) is not None:
        trials.append(Trial(plan, 0.90 + 0.01 * len(trials), at_cap))
    encodes = [trial.plan.encode for trial in trials]
    assert len(encodes) == len(set(encodes))
    assert {(width, height) for width, height, *_ in encodes} == {(320, 180)}
    assert [trial.plan.denoise for trial in trials] == ["", "", "light", "strong"]  # no 288p, no 240p


@pytest.mark.parametrize(
    ("duration", "windows"),
    [
        (8.0, [(0.0, 8.0)]),  # short: sampled whole
        (60.0, [(9.0, 2.0), (29.0, 2.0), (49.0, 2.0)]),
        (2700.0, [(449.0, 2.0), (1349.0, 2.0), (2249.0, 2.0)]),  # 45 min: 6 s, whatever the length
    ],
)
def test_the_sample_is_a_few_seconds_from_across_the_file(duration: float, windows: list[tuple[float, float]]) -> None:
    assert quality.sample_windows(duration) == windows


def test_what_is_recorded_and_said_about_a_trade(app: Flask) -> None:
    full = Plan(640, 360, Fraction(15), "", 28)
    reduced = Plan(512, 288, Fraction(10), "strong", 28, True, Fraction(4, 5))
    record = quality.describe(reduced, full, ssim=0.941, floor=0.95, budget_kbps=200)
    assert record["met"] is False and record["denoise"] == "strong"
    assert quality.traded(record)
    assert not quality.traded(quality.describe(full, full, ssim=0.96, floor=0.95, budget_kbps=200))
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert i18n.quality_note(record, 0.941) == (
            "Reduced to 10 fps, 288p to keep 200 kbit/s; SSIM 0.941, below the 0.95 target."
        )
        kept = quality.describe(reduced, full, ssim=0.955, floor=0.95, budget_kbps=200)
        assert i18n.quality_note(kept, 0.955) == "Reduced to 10 fps, 288p to keep 200 kbit/s; SSIM 0.955 (target 0.95)."
        assert i18n.quality_note(quality.describe(full, full, ssim=0.96, floor=0.95, budget_kbps=200), 0.96) == ""
        missed = quality.describe(full, full, ssim=0.884, floor=0.95, budget_kbps=200)
        assert i18n.quality_note(missed, 0.884).startswith("SSIM 0.884 at 200 kbit/s, below the 0.95 target")
    with app.test_request_context(headers={"Accept-Language": "zh"}):
        assert i18n.quality_note(record, 0.941) == (
            "为保持 200 kbit/s，已降到 10 帧/秒、288p；SSIM 0.941，低于目标 0.95。"
        )
