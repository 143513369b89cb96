"""Chapters at slide changes: where a slides lesson moves to its next slide.

The pipeline (:func:`hub.media.pipeline.process_material`) looks once per video
original at the moments its picture changes (:func:`hub.media.ffmpeg.picture_changes`:
a 2 fps, 320 px decode; a change is more than about 6 % of the picture, so a talking-head
inset in a corner is no change). What it does with them:

- only a picture that is mostly still gets chapters: changes in at most a quarter of
  the frames looked at (the probe's own measure of slides). In camera footage the
  picture changes all the time, and a "chapter" would be a pan or the teacher walking
  past, not a new topic; there the list stays empty;
- changes less than :data:`MIN_GAP_S` after the one before belong to the same chapter
  (animation steps, a flick through slides, an embedded clip): a chapter starts where
  the picture changes after holding still;
- at most :data:`MAX_CHAPTERS` are kept, those whose picture holds longest, so the
  list under the player stays a list.

Every video pays for the look (5-10 % of its two video renditions' time, measured in
hub.media.ffmpeg), because the probe's slides test, which decides the encoder's
settings, calls a slides lesson with a moving camera inset "camera".
"""

from __future__ import annotations

import math

from flask_babel import gettext

MIN_GAP_S = 5.0
"""Changes closer than this to the change before are part of the same chapter."""

MAX_CHAPTERS = 50
"""Most chapters one material keeps (those whose picture holds longest)."""

STILL_FRACTION = 0.25
"""A picture that changes in at most this share of the sampled frames is slides-like
(hub.media.ffmpeg's slides test uses the same share)."""


def chapter_starts(changes: list[float], sampled: int, duration: float | None) -> list[float]:
    """Chapter start times (s) from the moments the picture changed: 0 first, ascending.

    ``changes`` includes the first frame; ``sampled`` is how many frames were looked at.
    Returns [] for a picture that is not mostly still, or that never changes (one slide
    is no chapter list).
    """
    if len(changes) > STILL_FRACTION * max(1, sampled):
        return []
    end = duration if duration else math.inf
    chapters: list[list[float]] = [[0.0, 0.0]]  # [start, last change in it]
    for time_s in sorted(changes):
        if time_s - chapters[-1][1] < MIN_GAP_S or end - time_s < MIN_GAP_S:
            # Part of the chapter under way, or the closing picture flashing by at the end.
            chapters[-1][1] = max(chapters[-1][1], time_s)
            continue
        chapters.append([round(time_s, 2), time_s])
    if len(chapters) <= 1:
        return []
    if len(chapters) > MAX_CHAPTERS:
        # How long each chapter's picture holds: from its last change to the next chapter.
        ends = [c[0] for c in chapters[1:]] + [end if end != math.inf else chapters[-1][1]]
        held = sorted(range(1, len(chapters)), key=lambda i: ends[i] - chapters[i][1], reverse=True)
        chapters = [chapters[0], *(chapters[i] for i in sorted(held[: MAX_CHAPTERS - 1]))]
    return [start for start, _ in chapters]


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
