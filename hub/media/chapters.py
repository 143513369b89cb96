"""Chapters at slide changes: where a slides lesson moves to its next slide.

The pipeline (:func:`hub.media.pipeline.process_material`) looks for them once per
original, only in videos probed as slides (:attr:`hub.media.ffmpeg.Probe.slides`):

- a chapter called "Slide 3" means something only where the picture is slides; in
  camera footage a picture change is a pan, a cut or the teacher walking past, and
  a threshold low enough to catch a new board would catch those too;
- the search costs a decode of the whole original (measured in benchmarks/media:
  a few % of the renditions' CPU), which camera videos would pay for nothing.

A slide shown for a moment (an animation step, a flick through to the next slide)
is not a chapter: changes closer than :data:`MIN_GAP_S` to the last one kept are
merged into it, and a lesson keeps at most :data:`MAX_CHAPTERS`, the strongest
changes, so the list under the player stays a list.
"""

from __future__ import annotations

import math

from flask_babel import gettext

SCENE_THRESHOLD = 0.015
"""Scene score (0..1) above which a sampled frame counts as a new slide.

Measured on generated 720p slides (text on white, a moving 15 % camera inset):
a slide whose only change is its text scores 0.03, a new layout 0.12, while the
moving inset and encoding noise stay under 0.005 between slides."""

MIN_GAP_S = 5.0
"""Changes closer than this to the chapter before are merged into it (animation steps, flicks)."""

MAX_CHAPTERS = 50
"""Most chapters one material keeps (its strongest changes)."""


def chapter_starts(changes: list[tuple[float, float]], duration: float | None) -> list[float]:
    """Chapter start times (s) from scene changes ``(time, score)``: 0 first, ascending.

    Returns [] when the picture never changes (one slide is no chapter list).
    """
    end = duration if duration else float("inf")
    starts: list[tuple[float, float]] = [(0.0, 1.0)]
    for time_s, score in sorted(changes):
        # A change in the last seconds is the closing slide flashing by, not a chapter.
        if time_s - starts[-1][0] < MIN_GAP_S or end - time_s < MIN_GAP_S:
            continue
        starts.append((round(time_s, 2), score))
    if len(starts) <= 1:
        return []
    if len(starts) > MAX_CHAPTERS:
        strongest = sorted(starts[1:], key=lambda change: change[1], reverse=True)[: MAX_CHAPTERS - 1]
        starts = [starts[0], *sorted(strongest)]
    return [time_s for time_s, _ in starts]


def clean_chapters(value: object) -> list[float]:
    """Chapter starts as stored or received (a JSON list), or [] when they are not a valid list."""
    if not isinstance(value, list) or len(value) > MAX_CHAPTERS:
        return []
    starts = [
        float(v)
        for v in value
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    ]
    return starts if len(starts) == len(value) and starts == sorted(starts) else []


def chapter_list(starts: list[float] | None) -> list[dict[str, float | str]]:
    """The chapters as pages and the API show them: ``{"start": s, "title": "Slide 3"}`` (第 3 页)."""
    return [
        {"start": start, "title": str(gettext("Slide %(num)d", num=number))}
        for number, start in enumerate(clean_chapters(starts), start=1)
    ]
