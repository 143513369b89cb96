"""Download counts and usage counts from school servers to their upstream.

A school server counts the downloads of the blobs it mirrors per blob and day
(who downloaded never leaves the school) and sends the new ones upstream on each
pull; the upstream adds them to the school's own counts
(:class:`hub.media.models.DownloadCount`). In the same report go its plays,
downloads and course ZIPs per lesson and material (hub.reach, counted on its LAN
in the upstream's ids): rows of another shape in the same list, so parts, ids,
batches and acknowledgements treat both alike. The upstream adds those to
:class:`hub.reach.models.UsageCount` for the school, with source ``lan`` (over the
link) or ``usb`` (a state file). Nothing in a row says who: no user, address or
device.

A report is only as honest as the server that sends it, so what the upstream
takes from one is bounded:

- rows per request (``HUB_SYNC_REPORT_MAX_ROWS``; 413 beyond it): the school
  server sends a bigger report in parts, each acknowledged on its own;
- only blobs of the published courses the school's subscriptions select. Any
  other hash (unknown, a draft's, a course it does not subscribe to) is ignored
  the same way, and the answer counts downloads only in aggregate, so it never
  tells whether a hash exists; usage rows alike, for lessons and materials of
  those courses only;
- only days from ``HUB_SYNC_REPORT_MAX_AGE_DAYS`` ago to tomorrow, and at most
  ``HUB_SYNC_DAILY_DOWNLOADS`` per blob (or usage row), day and school: the excess is ignored,
  not refused, so one implausible row does not cost the rest of a report;
- written in transactions of :data:`COUNT_BATCH` rows with set-based upserts, so
  a big report never holds SQLite's one write lock for long (100,000 rows written
  row by row in one transaction held it for 20 s). Each transaction also records
  that its batch is in, so a report resent after a cut, or after the upstream
  died between two batches, adds every batch exactly once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import case, delete, func, literal, select, union
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.catalog.models import Course, Lesson, Material
from hub.config import Settings
from hub.db import utcnow
from hub.errors import HubError
from hub.i18n import N_
from hub.media.models import DownloadCount, Rendition
from hub.reach import rollup
from hub.reach import services as reach
from hub.reach.models import UsageCount
from hub.sync import manifest as mf
from hub.sync.models import CountReport, MirrorCourse, ReportedCount, ReportedUsage, Subscription

MAX_ROWS_CEILING = 100_000
"""Rows the request schema parses at most, whatever HUB_SYNC_REPORT_MAX_ROWS says."""

COUNT_BATCH = 200
"""Rows per transaction on the upstream: a few milliseconds of write lock each."""

_CHUNK = 500
"""Hashes per IN (...) list: well under SQLite's bound-parameter limit."""


# -- upstream: receiving reports ------------------------------------------------------


class CountIn(BaseModel):
    """One row: downloads of a blob on a day (`sha256`), or usage of a lesson's material on a day (the rest).

    One model rather than a union of two, so a refused field is named by its place
    in the list (``counts.3.count``) whichever shape the row has.
    """

    model_config = ConfigDict(extra="forbid")

    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="A download row: the blob")
    day: date
    # Past the daily bound is ignored, not refused; this only keeps the number an integer column holds.
    count: int = Field(ge=1, le=2**31 - 1)
    course: int | None = Field(None, ge=1, le=2**31 - 1, description="A usage row: the upstream's course id")
    lesson: int | None = Field(None, ge=0, le=2**31 - 1, description="A usage row: lesson id, 0 for a course ZIP")
    material: int | None = Field(None, ge=0, le=2**31 - 1, description="A usage row: material id, 0 for a course ZIP")
    kind: Literal["play", "download", "zip"] | None = Field(None, description="A usage row: what was done")

    @model_validator(mode="after")
    def _one_shape(self) -> CountIn:
        usage = (self.course, self.lesson, self.material, self.kind)
        if self.sha256 is not None and any(v is not None for v in usage):
            raise ValueError("a row is a download of a blob (sha256) or a usage of a lesson, not both")
        if self.sha256 is None and any(v is None for v in usage):
            raise ValueError("a usage row names course, lesson, material and kind")
        return self

    @property
    def is_usage(self) -> bool:
        return self.sha256 is None

    def key(self) -> reach.UsageKey:
        assert self.course is not None and self.lesson is not None and self.material is not None and self.kind
        return (self.day, self.course, self.lesson, self.material, self.kind)


class CountReportIn(BaseModel):
    """What a school server sends: aggregated downloads per blob and day, and usage per lesson and day; never who."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Report id: resending the same report adds nothing")
    counts: list[CountIn] = Field(
        max_length=MAX_ROWS_CEILING,
        description="Downloads per blob and usage per lesson; at most HUB_SYNC_REPORT_MAX_ROWS rows (413 beyond)",
    )


class ReportTooLarge(HubError):
    status = 413
    code = "too_large"


@dataclass(frozen=True)
class CountLimits:
    """What one school's reports may add (see the module docstring)."""

    max_rows: int
    daily: int
    max_age_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CountLimits:
        return cls(
            max_rows=settings.sync_report_max_rows,
            daily=settings.sync_daily_downloads,
            max_age_days=settings.sync_report_max_age_days,
        )


@dataclass(frozen=True)
class CountsReceived:
    added: int  # downloads counted
    ignored: int  # downloads not counted, for whatever reason (never said per row)
    # Plays, downloads and ZIPs per lesson counted and not, by this request (a resent
    # report's batches written by an earlier attempt are in neither).
    usage_added: int = 0
    usage_ignored: int = 0


def _marker(school_id: int, report_id: str, batch: int | None = None) -> str:
    """The CountReport id recording a school's report (batch None) or one batch of it as received.

    Keyed by school too: a report id chosen by one school server can never shadow another's.
    """
    name = f"counts/{school_id}/{report_id}" if batch is None else f"counts/{school_id}/{report_id}/{batch}"
    return hashlib.sha256(name.encode()).hexdigest()


def receive_counts(
    session: Session,
    school: School,
    report: CountReportIn,
    limits: CountLimits,
    *,
    today: date | None = None,
    source: str = "lan",
) -> CountsReceived:
    """Add a school server's counts to `school`'s, committing batch by batch.

    Unlike most services this one commits (:data:`COUNT_BATCH` rows per
    transaction; see the module docstring), so the caller must have nothing
    pending it would not want committed with the first batch. `source` is how
    the report came: ``lan`` over the link, ``usb`` in a state file.

    A report arrives once or many times (a lost acknowledgement makes the school
    server send it again), so a repeat adds nothing; that is checked before the
    size, so a report sent before the bound was lowered is still acknowledged.
    """
    total = sum(item.count for item in report.counts if not item.is_usage)
    used = sum(item.count for item in report.counts if item.is_usage)
    summary = _marker(school.id, report.id)
    if _received(session, school.id, report.id):
        return CountsReceived(0, total, 0, used)
    if len(report.counts) > limits.max_rows:
        raise ReportTooLarge(
            N_("A download-count report may carry at most %(limit)s rows; this one has %(rows)s. Send it in parts."),
            {"counts": N_("Too many rows")},
            limit=limits.max_rows,
            rows=len(report.counts),
        )
    today = today or utcnow().date()
    first_day, last_day = today - timedelta(days=limits.max_age_days), today + timedelta(days=1)
    in_window = [item for item in report.counts if first_day <= item.day <= last_day]
    visible = _subscribed_blobs(session, school.id, {item.sha256 for item in in_window if item.sha256 is not None})
    lessons = _subscribed_lessons(session, school.id, [item for item in in_window if item.is_usage])
    batches = [report.counts[i : i + COUNT_BATCH] for i in range(0, len(report.counts), COUNT_BATCH)] or [[]]
    markers = [_marker(school.id, report.id, i) for i in range(len(batches) - 1)]
    done = dict(session.execute(select(CountReport.id, CountReport.downloads).where(CountReport.id.in_(markers))).all())
    added = sum(done.values())
    usage_added = 0
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        if not last and markers[index] in done:
            continue  # written by an earlier attempt at this report
        wanted: dict[tuple[str, date], int] = {}
        usage: dict[reach.UsageKey, int] = {}
        for item in batch:
            if not first_day <= item.day <= last_day:
                continue
            if item.sha256 is not None:
                if item.sha256 in visible:
                    key = (item.sha256, item.day)
                    wanted[key] = wanted.get(key, 0) + item.count
            elif (item.course, item.lesson, item.material, item.kind) in lessons:
                usage[item.key()] = usage.get(item.key(), 0) + item.count
        try:
            # The marker first: a concurrent attempt at the same batch fails here, before it adds.
            if last:
                session.execute(delete(CountReport).where(CountReport.id.in_(markers)))
                session.add(CountReport(id=summary, school_id=school.id, downloads=0))
            else:
                session.add(CountReport(id=markers[index], school_id=school.id, downloads=0))
            session.flush()
            written = _add_batch(session, school.id, wanted, limits.daily)
            used_now = reach.add_usage(session, usage, school_id=school.id, source=source, cap=limits.daily)
            if used_now:
                # Any day of the last year: the roll-up's safety run only re-reads recent ones.
                rollup.mark_days(session, {key[0] for key in usage})
            row = session.get(CountReport, summary if last else markers[index])
            assert row is not None
            # Informational (the report's total), in an integer column: kept within it.
            row.downloads = min(added + written if last else written, 2**31 - 1)
            session.commit()
        except IntegrityError:
            # Another request with the same report wrote this batch (or all of it) meanwhile.
            session.rollback()
            if last:
                break
            continue
        added += written
        usage_added += used_now
    return CountsReceived(added, total - added, usage_added, used - usage_added)


def _received(session: Session, school_id: int, report_id: str) -> bool:
    if session.get(CountReport, _marker(school_id, report_id)) is not None:
        return True
    # Reports received before batches were recorded kept the school server's id as theirs.
    legacy = select(CountReport.id).where(CountReport.id == report_id, CountReport.school_id == school_id)
    return session.scalar(legacy) is not None


def _subscribed_blobs(session: Session, school_id: int, shas: Iterable[str]) -> set[str]:
    """Those of `shas` that a course the school's subscriptions select uses (as a rendition or an original)."""
    subscriptions = list(session.scalars(select(Subscription).where(Subscription.school_id == school_id)))
    selected = mf.subscribed_clause(subscriptions)
    wanted = sorted(set(shas))
    found: set[str] = set()
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        via_renditions = (
            select(Rendition.blob_sha256.label("sha"))
            .join(Material, Material.id == Rendition.material_id)
            .join(Lesson, Lesson.id == Material.lesson_id)
            .join(Course, Course.id == Lesson.course_id)
            .where(Rendition.blob_sha256.in_(chunk), selected)
        )
        via_originals = (
            select(Material.original_sha256.label("sha"))
            .join(Lesson, Lesson.id == Material.lesson_id)
            .join(Course, Course.id == Lesson.course_id)
            .where(Material.original_sha256.in_(chunk), selected)
        )
        found.update(sha for sha in session.scalars(union(via_renditions, via_originals)) if sha)
    return found


def _subscribed_lessons(session: Session, school_id: int, rows: Sequence[CountIn]) -> set[tuple[int, int, int, str]]:
    """The (course, lesson, material, kind) of `rows` that name a course the school's subscriptions select.

    And lessons of that course and materials of that lesson as they are now; a ZIP
    names the course alone (lesson and material 0), a play or a download both.
    """
    if not rows:
        return set()
    subscriptions = list(session.scalars(select(Subscription).where(Subscription.school_id == school_id)))
    selected = mf.subscribed_clause(subscriptions)
    courses: set[int] = set()
    lesson_course: dict[int, int] = {}
    material_lesson: dict[int, int] = {}
    wanted_courses = sorted({row.course for row in rows if row.course})
    wanted_lessons = sorted({row.lesson for row in rows if row.lesson})
    wanted_materials = sorted({row.material for row in rows if row.material})
    for i in range(0, len(wanted_courses), _CHUNK):
        chunk = wanted_courses[i : i + _CHUNK]
        courses.update(session.scalars(select(Course.id).where(Course.id.in_(chunk), selected)))
    for i in range(0, len(wanted_lessons), _CHUNK):
        chunk = wanted_lessons[i : i + _CHUNK]
        lesson_course.update(session.execute(select(Lesson.id, Lesson.course_id).where(Lesson.id.in_(chunk))).all())
    for i in range(0, len(wanted_materials), _CHUNK):
        chunk = wanted_materials[i : i + _CHUNK]
        material_lesson.update(
            session.execute(select(Material.id, Material.lesson_id).where(Material.id.in_(chunk))).all()
        )
    valid: set[tuple[int, int, int, str]] = set()
    for row in rows:
        _day, course, lesson, material, kind = row.key()
        if course not in courses:
            continue
        if kind == "zip":
            ok = lesson == 0 and material == 0
        else:
            ok = lesson_course.get(lesson) == course and material_lesson.get(material) == lesson
        if ok:
            valid.add((course, lesson, material, kind))
    return valid


def _add_batch(session: Session, school_id: int, wanted: dict[tuple[str, date], int], daily: int) -> int:
    """Add `wanted` to the school's counts with one upsert, each (blob, day) at most `daily`; returns what it added."""
    if not wanted:
        return 0
    shas, days = {sha for sha, _ in wanted}, {day for _, day in wanted}
    existing = {
        (sha, day): count
        for sha, day, count in session.execute(
            select(DownloadCount.blob_sha256, DownloadCount.day, DownloadCount.count).where(
                DownloadCount.school_id == school_id,
                DownloadCount.blob_sha256.in_(shas),
                DownloadCount.day.in_(days),
            )
        )
    }
    rows: list[dict[str, Any]] = []
    added = 0
    for (sha, day), count in wanted.items():
        take = min(count, max(0, daily - existing.get((sha, day), 0)))
        if take:
            rows.append({"blob_sha256": sha, "day": day, "school_id": school_id, "count": take})
            added += take
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(DownloadCount) if dialect == "postgresql" else sqlite.insert(DownloadCount)
    current, incoming, cap = DownloadCount.count, insert.excluded["count"], literal(daily)
    # The cap again inside the statement: a download counted by the hub itself, or
    # another report, between the read above and this write never lifts a row past it.
    new_count = case((current >= cap, current), (current + incoming > cap, cap), else_=current + incoming)
    session.execute(
        insert.on_conflict_do_update(index_elements=["blob_sha256", "day", "school_id"], set_={"count": new_count}),
        rows,
    )
    return added


# -- school server: sending reports --------------------------------------------------


def pending_count_report(session: Session) -> dict[str, Any] | None:
    """The report to send upstream: the one not yet acknowledged, else the new counts since the last.

    Only downloads of mirrored blobs are counted, per blob and day, and the LAN's
    plays, downloads and ZIPs per lesson (already in the upstream's ids); who
    never leaves the school. Stored before it is sent, so a resend after a lost
    answer carries the same id and adds nothing upstream.
    """
    from hub.sync.services import mirror_state

    state = mirror_state(session)
    if state.pending_report:
        return state.pending_report
    mirrored = (
        select(Rendition.blob_sha256)
        .join(Material)
        .join(Lesson)
        .join(MirrorCourse, MirrorCourse.course_id == Lesson.course_id)
    )
    totals = session.execute(
        select(DownloadCount.blob_sha256, DownloadCount.day, func.sum(DownloadCount.count))
        .where(DownloadCount.blob_sha256.in_(mirrored))
        .group_by(DownloadCount.blob_sha256, DownloadCount.day)
        .order_by(DownloadCount.day, DownloadCount.blob_sha256)
    ).all()
    reported = {(r.blob_sha256, r.day): r.count for r in session.scalars(select(ReportedCount))}
    counts: list[dict[str, Any]] = []
    for sha, day, total in totals:
        delta = int(total) - reported.get((sha, day), 0)
        if delta > 0:
            counts.append({"sha256": sha, "day": day.isoformat(), "count": delta})
    counts.extend(_usage_rows(session))
    if not counts:
        return None
    state.pending_report = {"id": uuid.uuid4().hex, "counts": counts}
    session.flush()
    return state.pending_report


def _usage_rows(session: Session) -> list[dict[str, Any]]:
    """The LAN's usage per (day, course, lesson, material, kind) not yet reported, summed over who (never sent)."""
    key = (UsageCount.day, UsageCount.course_id, UsageCount.lesson_id, UsageCount.material_id, UsageCount.kind)
    totals = session.execute(
        select(*key, func.sum(UsageCount.count)).where(UsageCount.source == "lan").group_by(*key).order_by(*key)
    ).all()
    reported = {
        (r.day, r.course_id, r.lesson_id, r.material_id, r.kind): r.count
        for r in session.scalars(select(ReportedUsage))
    }
    rows = []
    for day, course, lesson, material, kind, total in totals:
        delta = int(total) - reported.get((day, course, lesson, material, kind), 0)
        if delta > 0:
            rows.append(
                {
                    "day": day.isoformat(),
                    "course": course,
                    "lesson": lesson,
                    "material": material,
                    "kind": kind,
                    "count": delta,
                }
            )
    return rows


def downloads_in(rows: Sequence[dict[str, Any]]) -> int:
    """The downloads per blob in report rows (the usage rows beside them are counted apart)."""
    return sum(int(row["count"]) for row in rows if "sha256" in row)


def usage_in(rows: Sequence[dict[str, Any]]) -> int:
    """The plays, downloads and ZIPs per lesson in report rows."""
    return sum(int(row["count"]) for row in rows if "sha256" not in row)


def report_part(report: dict[str, Any], rows: int) -> dict[str, Any]:
    """The first `rows` rows of a pending report, as one request to send.

    Its id is the report's own when the part is all that is left, else one derived
    from the report's id and the part's rows: sending the same part again (after a
    lost answer) carries the same id, so the upstream adds it once.
    """
    counts: Sequence[dict[str, Any]] = report["counts"]
    if len(counts) <= rows:
        return {"id": report["id"], "counts": list(counts)}
    part = list(counts[:rows])
    digest = hashlib.sha256(report["id"].encode() + json.dumps(part, sort_keys=True).encode()).hexdigest()
    return {"id": digest[:32], "counts": part}


def report_parts(report: dict[str, Any], rows: int) -> Iterator[dict[str, Any]]:
    """The requests a school server would send for `report`, in order, at most `rows` rows each.

    The same ids as :func:`report_part` gives as each part is acknowledged, so a
    report received in parts from a USB state file and later resent over the link
    (or the other way round) adds every part once.
    """
    rest: dict[str, Any] | None = report
    while rest is not None:
        part = report_part(rest, rows)
        yield part
        remaining = rest["counts"][len(part["counts"]) :]
        rest = {"id": report["id"], "counts": remaining} if remaining else None


def acknowledge_count_report(session: Session, sent: dict[str, Any]) -> dict[str, Any] | None:
    """The upstream has `sent` (the pending report, or its first part): move its counts into what was reported.

    Returns what is left of the pending report, or None when nothing is.
    """
    return _acknowledge(session, sent)


def acknowledge_carried_report(session: Session, carried: dict[str, Any]) -> int:
    """A bundle says the upstream took the report of the state file that went to it: acknowledge it.

    Only when it is still the pending report, whole (same id and rows): else it was
    acknowledged over the link meanwhile, or it is not this server's, and nothing
    changes. Returns the downloads acknowledged. The acknowledgement is not signed:
    forging one takes the report's random id from the state file, and the worst it
    does is keep those counts from the upstream, never change what a teacher sees.
    """
    from hub.sync.services import mirror_state

    pending = mirror_state(session).pending_report
    if not pending or pending.get("id") != carried.get("id") or pending.get("counts") != carried.get("counts"):
        return 0
    _acknowledge(session, pending)
    return downloads_in(pending["counts"])


def _acknowledge(session: Session, sent: dict[str, Any]) -> dict[str, Any] | None:
    from hub.sync.services import mirror_state

    state = mirror_state(session)
    pending = state.pending_report
    for item in sent["counts"]:
        day = date.fromisoformat(item["day"])
        if "sha256" not in item:
            _acknowledge_usage(session, day, item)
            continue
        row = session.scalar(
            select(ReportedCount).where(ReportedCount.blob_sha256 == item["sha256"], ReportedCount.day == day)
        )
        if row is None:
            session.add(ReportedCount(blob_sha256=item["sha256"], day=day, count=item["count"]))
        else:
            row.count += item["count"]
    rest: list[dict[str, Any]] = []
    if pending and pending["counts"][: len(sent["counts"])] == sent["counts"]:
        rest = pending["counts"][len(sent["counts"]) :]
    # A new dict: the JSON column notices reassignment, not changes inside.
    state.pending_report = {"id": pending["id"], "counts": rest} if pending and rest else None
    session.flush()
    return state.pending_report


def _acknowledge_usage(session: Session, day: date, item: dict[str, Any]) -> None:
    row = session.scalar(
        select(ReportedUsage).where(
            ReportedUsage.day == day,
            ReportedUsage.course_id == item["course"],
            ReportedUsage.lesson_id == item["lesson"],
            ReportedUsage.material_id == item["material"],
            ReportedUsage.kind == item["kind"],
        )
    )
    if row is None:
        session.add(
            ReportedUsage(
                day=day,
                course_id=item["course"],
                lesson_id=item["lesson"],
                material_id=item["material"],
                kind=item["kind"],
                count=item["count"],
            )
        )
        session.flush()  # the next row of the same key (another part) finds it
    else:
        row.count += item["count"]
