"""Download counts: what the upstream takes from a school server's report, and how the school server sends it.

Through HTTP: test_counts_api.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from pydantic import ValidationError
from sqlalchemy import func, select

from hub.catalog.models import Course, Lesson, Material
from hub.db import Database, get_database, utcnow
from hub.media.models import DownloadCount, Rendition
from hub.reach.models import PendingDay, UsageCount
from hub.sync import client, counts, services
from hub.sync.models import CountReport, MirrorCourse
from tests.conftest import Accounts
from tests.unit.sync.conftest import Upstream

TODAY = utcnow().date()
LIMITS = counts.CountLimits(max_rows=1000, daily=500, max_age_days=366)


def report(rows: list[tuple[str, date, int]], report_id: str = "a" * 32) -> counts.CountReportIn:
    return counts.CountReportIn.model_validate(
        {"id": report_id, "counts": [{"sha256": s, "day": d.isoformat(), "count": n} for s, d, n in rows]}
    )


def receive(up: Upstream, rows: list[tuple[str, date, int]], report_id: str = "a" * 32, **limits: int) -> Any:
    return counts.receive_counts(up.db, up.rural, report(rows, report_id), replace(LIMITS, **limits))


# -- what the upstream takes ----------------------------------------------------------


def test_only_blobs_the_schools_subscriptions_select_are_counted(up: Upstream) -> None:
    rendition, _poster, original = up.subscribed
    received = receive(
        up,
        [
            (rendition, TODAY, 3),
            (original, TODAY, 2),
            (up.unsubscribed, TODAY, 40),
            (up.draft, TODAY, 50),
            ("f" * 64, TODAY, 60),
        ],
    )
    assert (received.added, received.ignored) == (5, 150)
    assert up.downloads() == {(rendition, TODAY): 3, (original, TODAY): 2}


def test_unknown_and_invisible_hashes_get_the_same_answer(up: Upstream) -> None:
    """Nothing in the answer tells a draft's blob (or another course's) from a hash that names nothing."""
    answers = [
        receive(up, [(sha, TODAY, 10_000_000)], report_id=f"{n:032x}")
        for n, sha in enumerate([up.draft, up.unsubscribed, "f" * 64, "0" * 64], start=1)
    ]
    assert all(answer == answers[0] for answer in answers) and answers[0].added == 0
    assert up.downloads() == {}


def test_a_blob_and_day_take_at_most_the_daily_bound_the_rest_of_the_report_still_counts(up: Upstream) -> None:
    rendition, poster, _ = up.subscribed
    yesterday = TODAY - timedelta(days=1)
    first = receive(up, [(rendition, TODAY, 10_000_000), (poster, TODAY, 7), (rendition, yesterday, 20)], daily=500)
    assert (first.added, first.ignored) == (500 + 7 + 20, 10_000_000 - 500)
    # A second report, or the same rows split over many reports, adds nothing past the bound.
    second = receive(up, [(rendition, TODAY, 1), (rendition, TODAY, 1)], report_id="b" * 32, daily=500)
    assert second.added == 0
    assert up.downloads() == {(rendition, TODAY): 500, (poster, TODAY): 7, (rendition, yesterday): 20}


def test_downloads_counted_by_the_upstream_itself_count_against_the_bound(up: Upstream, app: Flask) -> None:
    from hub.media.downloads import record_download

    rendition = up.subscribed[0]
    for _ in range(3):
        record_download(get_database(app), rendition, up.rural.id)
    assert receive(up, [(rendition, TODAY, 9)], daily=10).added == 7
    assert up.downloads(rendition) == {(rendition, TODAY): 10}


def test_days_out_of_range_are_ignored(up: Upstream) -> None:
    rendition = up.subscribed[0]
    received = receive(
        up,
        [
            (rendition, date(1970, 1, 1), 5),
            (rendition, TODAY - timedelta(days=31), 6),
            (rendition, TODAY - timedelta(days=30), 7),
            (rendition, TODAY + timedelta(days=1), 8),  # a school server's clock ahead by a time zone
            (rendition, TODAY + timedelta(days=2), 9),
            (rendition, date(9999, 12, 31), 10),
        ],
        max_age_days=30,
    )
    assert (received.added, received.ignored) == (15, 30)
    assert up.downloads() == {(rendition, TODAY - timedelta(days=30)): 7, (rendition, TODAY + timedelta(days=1)): 8}


def test_a_report_over_the_row_bound_is_refused_whole_and_a_resend_after_the_bound_shrank_is_acknowledged(
    up: Upstream,
) -> None:
    rendition = up.subscribed[0]
    rows = [(rendition, TODAY - timedelta(days=n), 1) for n in range(11)]
    with pytest.raises(counts.ReportTooLarge) as refused:
        receive(up, rows, max_rows=10)
    assert refused.value.status == 413 and "at most 10 rows" in refused.value.message
    assert up.downloads() == {}
    assert receive(up, rows[:10], report_id="c" * 32, max_rows=10).added == 10
    # Received whole before the bound was lowered: its resend is acknowledged, not refused.
    assert receive(up, rows[:10], report_id="c" * 32, max_rows=5).added == 0


def test_a_resent_report_adds_nothing_and_another_school_cannot_shadow_its_id(up: Upstream, make: Accounts) -> None:
    rendition = up.subscribed[0]
    assert receive(up, [(rendition, TODAY, 4)]).added == 4
    assert receive(up, [(rendition, TODAY, 4)]).added == 0
    other = make.school("另一所小学", "rural")
    course_id = up.db.scalar(select(Course.id).where(Course.status == "published").order_by(Course.id))
    services.subscribe(up.db, other, course_id=course_id)
    up.db.commit()
    # The same report id from another school's server is that school's report.
    assert counts.receive_counts(up.db, other, report([(rendition, TODAY, 4)]), LIMITS).added == 4
    assert up.downloads(rendition) == {(rendition, TODAY): 4}


def _rows(up: Upstream, n: int) -> list[tuple[str, date, int]]:
    """`n` distinct (blob, day) rows of subscribed blobs, each one download."""
    return [(up.subscribed[i % 3], TODAY - timedelta(days=i // 3), 1) for i in range(n)]


def test_a_report_cut_between_batches_and_sent_again_adds_each_batch_once(
    up: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(up, 3 * counts.COUNT_BATCH + 10)
    real = counts._add_batch
    calls = []

    def dies_on_the_third(*args: Any) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the server died here")
        return real(*args)

    monkeypatch.setattr(counts, "_add_batch", dies_on_the_third)
    with pytest.raises(RuntimeError):
        receive(up, rows, max_age_days=400)
    up.db.rollback()
    assert sum(up.downloads().values()) == 2 * counts.COUNT_BATCH  # two batches committed, the third undone
    monkeypatch.setattr(counts, "_add_batch", real)
    again = receive(up, rows, max_age_days=400)
    assert again.added == len(rows)  # what the report added in all, the earlier attempt's batches included
    assert sum(up.downloads().values()) == len(rows)
    assert up.db.scalar(select(func.count()).select_from(CountReport)) == 1  # batch markers give way to one row
    assert receive(up, rows, max_age_days=400).added == 0


# -- what the school server sends -----------------------------------------------------


@pytest.fixture
def mirror(up: Upstream, app: Flask) -> Database:
    """This database playing a school server too: the subscribed course is "mirrored", its blobs downloaded."""
    course_id = up.db.scalar(select(Course.id).where(Course.status == "published").order_by(Course.id))
    assert course_id is not None
    up.db.add(MirrorCourse(upstream_id=course_id, course_id=course_id, version=1, revision="0" * 64))
    for n in range(25):
        for sha in up.subscribed[:2]:
            up.db.add(DownloadCount(blob_sha256=sha, day=TODAY - timedelta(days=n), school_id=None, count=n + 1))
    up.db.commit()
    return get_database(app)


def test_the_mirror_reports_new_downloads_once(up: Upstream, mirror: Database) -> None:
    pending = counts.pending_count_report(up.db)
    assert pending is not None and len(pending["counts"]) == 50
    assert counts.pending_count_report(up.db) == pending  # unacknowledged: the same report, same id
    assert counts.acknowledge_count_report(up.db, pending) is None
    assert counts.pending_count_report(up.db) is None
    up.db.add(DownloadCount(blob_sha256=up.subscribed[0], day=TODAY, school_id=up.rural.id, count=2))
    up.db.flush()
    again = counts.pending_count_report(up.db)
    assert again is not None and again["id"] != pending["id"] and [c["count"] for c in again["counts"]] == [2]


def test_report_parts_have_ids_that_a_resend_repeats(up: Upstream, mirror: Database) -> None:
    pending = counts.pending_count_report(up.db)
    assert pending is not None
    first = counts.report_part(pending, 20)
    assert len(first["counts"]) == 20 and first["id"] != pending["id"]
    assert counts.report_part(pending, 20) == first  # the same part again: the same id
    assert counts.report_part(pending, 50) == {"id": pending["id"], "counts": pending["counts"]}
    rest = counts.acknowledge_count_report(up.db, first)
    assert rest is not None and rest["id"] == pending["id"] and rest["counts"] == pending["counts"][20:]
    assert counts.pending_count_report(up.db) == rest  # kept: a new run goes on from here


class FakeUpstream:
    """The upstream's counts endpoint in-process, with its bound on rows and a link that may drop."""

    def __init__(self, up: Upstream, max_rows: int, drop_after: int | None = None) -> None:
        self.up, self.max_rows, self.drop_after = up, max_rows, drop_after
        self.sizes: list[int] = []  # rows of each request
        self.accepted: list[int] = []  # rows of each request answered 200

    def json(self, method: str, path: str, body: Any = None) -> Any:
        assert (method, path) == ("POST", "/api/v1/sync/counts")
        if self.drop_after is not None and len(self.sizes) >= self.drop_after:
            raise client.SyncError("The upstream could not be reached (connection reset).")
        self.sizes.append(len(body["counts"]))
        limits = counts.CountLimits(max_rows=self.max_rows, daily=10_000, max_age_days=366)
        try:
            received = counts.receive_counts(self.up.db, self.up.rural, counts.CountReportIn(**body), limits)
        except counts.ReportTooLarge as exc:
            raise client.UpstreamRefused(exc.message, 413) from None
        self.accepted.append(len(body["counts"]))
        return {"added": received.added, "ignored": received.ignored}


def test_the_school_server_splits_its_report_below_the_upstreams_bound_and_nothing_is_lost(
    up: Upstream, mirror: Database
) -> None:
    expected = sum(n + 1 for n in range(25)) * 2
    upstream = FakeUpstream(up, max_rows=12)
    note = client.send_counts(mirror, upstream, rows=30)  # type: ignore[arg-type]
    assert upstream.sizes[:3] == [30, 15, 7]  # 413, 413, then parts that fit
    assert sum(upstream.accepted) == 50 and max(upstream.accepted) <= 12
    assert f"sent {expected} downloads upstream ({expected} counted)" in note
    assert sum(up.downloads().values()) == expected
    assert services.mirror_state(up.db).pending_report is None


def test_a_link_cut_between_parts_resends_only_what_was_not_acknowledged(up: Upstream, mirror: Database) -> None:
    expected = sum(n + 1 for n in range(25)) * 2
    cut = FakeUpstream(up, max_rows=20, drop_after=2)
    note = client.send_counts(mirror, cut, rows=20)  # type: ignore[arg-type]
    assert "they go with the next pull" in note and cut.sizes == [20, 20]
    rest = FakeUpstream(up, max_rows=20)
    client.send_counts(mirror, rest, rows=20)  # type: ignore[arg-type]
    assert rest.sizes == [10]
    assert sum(up.downloads().values()) == expected


# -- usage per lesson (hub.reach) in the same report -----------------------------------


def _ids(up: Upstream, sha: str) -> tuple[int, int, int]:
    """(course, lesson, material) of the material whose rendition is `sha`."""
    row = up.db.execute(
        select(Lesson.course_id, Lesson.id, Material.id)
        .join(Material, Material.lesson_id == Lesson.id)
        .join(Rendition, Rendition.material_id == Material.id)
        .where(Rendition.blob_sha256 == sha)
    ).one()
    return row[0], row[1], row[2]


def _usage_row(ids: tuple[int, int, int], kind: str, count: int, day: date = TODAY) -> dict[str, Any]:
    course, lesson, material = ids
    row = {"day": day.isoformat(), "course": course, "lesson": lesson, "material": material, "kind": kind}
    return row | {"count": count}


def test_usage_rows_count_for_the_schools_subscribed_lessons_once(up: Upstream) -> None:
    mine, other = _ids(up, up.subscribed[0]), _ids(up, up.unsubscribed)
    course, lesson, material = mine
    rows = [
        {"sha256": up.subscribed[0], "day": TODAY.isoformat(), "count": 2},
        _usage_row(mine, "play", 5),
        _usage_row(mine, "download", 2),
        _usage_row((course, 0, 0), "zip", 1),
        _usage_row(other, "play", 7),  # a course it does not subscribe to
        _usage_row((course, lesson, other[2]), "play", 11),  # another course's material under this lesson
        _usage_row((course, lesson, 0), "zip", 13),  # a ZIP names no lesson
        _usage_row(mine, "play", 17, TODAY - timedelta(days=400)),  # too old
        _usage_row(mine, "download", 600),  # past the daily bound: 498 more fit
    ]
    body = counts.CountReportIn.model_validate({"id": "b" * 32, "counts": rows})
    received = counts.receive_counts(up.db, up.rural, body, LIMITS, source="usb")
    assert (received.added, received.ignored) == (2, 0)
    assert (received.usage_added, received.usage_ignored) == (5 + 2 + 1 + 498, 7 + 11 + 13 + 17 + 102)
    found = {
        (r.lesson_id, r.material_id, r.kind, r.source, r.school_id): r.count for r in up.db.scalars(select(UsageCount))
    }
    assert found == {
        (lesson, material, "play", "usb", up.rural.id): 5,
        (lesson, material, "download", "usb", up.rural.id): 500,
        (0, 0, "zip", "usb", up.rural.id): 1,
    }
    assert set(up.db.scalars(select(PendingDay.day))) == {TODAY}  # the roll-up re-makes the day
    again = counts.receive_counts(up.db, up.rural, body, LIMITS, source="lan")
    assert again.usage_added == 0 and up.db.scalar(select(func.sum(UsageCount.count))) == 506


@pytest.mark.parametrize(
    "row",
    [
        {"day": "2026-12-01", "count": 1, "course": 1, "lesson": 1, "material": 1},  # no kind
        {"day": "2026-12-01", "count": 1, "sha256": "a" * 64, "course": 1, "lesson": 1, "material": 1, "kind": "play"},
        {"day": "2026-12-01", "count": 1, "course": 1, "lesson": 1, "material": 1, "kind": "play", "device": "x"},
    ],
)
def test_a_row_is_a_download_or_a_usage_and_names_nobody(row: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        counts.CountReportIn.model_validate({"id": "c" * 32, "counts": [row]})
