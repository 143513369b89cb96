"""Chapter starts from scene changes: merged, capped, validated."""

from __future__ import annotations

from hub.media.chapters import MAX_CHAPTERS, MIN_GAP_S, chapter_starts, clean_chapters


def test_changes_become_starts_after_zero() -> None:
    assert chapter_starts([(17.0, 0.09), (8.0, 0.06)], 24.0) == [0.0, 8.0, 17.0]


def test_changes_close_together_merge_into_the_first() -> None:
    # An animation step 2 s after a slide change, and a flick at the very start and end.
    changes = [(1.0, 0.2), (30.0, 0.1), (32.0, 0.3), (60.0, 0.1), (118.0, 0.5)]
    assert chapter_starts(changes, 120.0) == [0.0, 30.0, 60.0]
    assert all(b - a >= MIN_GAP_S for a, b in zip([0.0, 30.0], [30.0, 60.0], strict=True))


def test_one_slide_is_no_chapter_list() -> None:
    assert chapter_starts([], 300.0) == [] and chapter_starts([(2.0, 0.5)], 300.0) == []


def test_at_most_the_strongest_changes_are_kept() -> None:
    changes = [(10.0 * i, 0.02 + (i % 7) / 100) for i in range(1, 200)]
    starts = chapter_starts(changes, 2000.0)
    assert len(starts) == MAX_CHAPTERS and starts == sorted(starts) and starts[0] == 0
    strongest = sorted(changes, key=lambda c: c[1], reverse=True)[: MAX_CHAPTERS - 1]
    assert set(starts[1:]) == {t for t, _ in strongest}


def test_only_a_sorted_list_of_finite_times_is_used() -> None:
    assert clean_chapters([0, 8.5, 17]) == [0.0, 8.5, 17.0]
    for bad in (None, "0,8", [0, "8"], [8, 0], [0, float("nan")], [0, True], [-1, 2], list(range(MAX_CHAPTERS + 1))):
        assert clean_chapters(bad) == []
