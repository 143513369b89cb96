"""Chapter starts from the moments the picture changed: merged, capped, validated."""

from __future__ import annotations

from hub.media.chapters import MAX_CHAPTERS, chapter_starts, clean_chapters


def test_changes_of_a_still_picture_become_starts_after_zero() -> None:
    assert chapter_starts([0.0, 17.0, 8.0], 48, 24.0) == [0.0, 8.0, 17.0]


def test_changes_close_together_are_one_chapter_from_the_first() -> None:
    # An animation step 2 s after a slide change; a 10 s clip (a change every 0.5 s); a flick at the end.
    clip = [60.0 + i / 2 for i in range(20)]
    changes = [0.0, 1.0, 30.0, 32.0, *clip, 118.0]
    assert chapter_starts(changes, 240, 120.0) == [0.0, 30.0, 60.0]


def test_a_picture_that_keeps_changing_gets_none() -> None:
    camera = [i / 2 for i in range(240)]
    assert chapter_starts(camera, 240, 120.0) == []
    assert chapter_starts([i * 6.0 for i in range(61)], 240, 400.0) == []  # more than a quarter of the frames


def test_one_slide_is_no_chapter_list() -> None:
    assert chapter_starts([0.0], 600, 300.0) == [] and chapter_starts([0.0, 2.0], 600, 300.0) == []


def test_at_most_the_longest_held_are_kept() -> None:
    # 99 slides; every third one held 30 s, the others 10 s.
    times, at = [0.0], 0.0
    for i in range(1, 100):
        at += 30.0 if i % 3 == 0 else 10.0
        times.append(at)
    starts = chapter_starts(times, 100_000, at + 30.0)
    assert len(starts) == MAX_CHAPTERS and starts == sorted(starts) and starts[0] == 0
    # The slides held 30 s (followed by a 30 s gap) are all kept.
    long_held = [times[i] for i in range(1, len(times) - 1) if times[i + 1] - times[i] == 30.0]
    assert len(long_held) == 33 and set(long_held) <= set(starts)


def test_only_a_sorted_list_of_finite_times_is_used() -> None:
    assert clean_chapters([0, 8.5, 17]) == [0.0, 8.5, 17.0]
    for bad in (None, "0,8", [0, "8"], [8, 0], [0, float("nan")], [0, True], [-1, 2], list(range(MAX_CHAPTERS + 1))):
        assert clean_chapters(bad) == []
