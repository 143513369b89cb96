"""Download counts from school servers to their upstream.

A school server counts the downloads of the blobs it mirrors per blob and day
(who downloaded never leaves the school) and sends the new ones upstream on each
pull; the upstream adds them to the school's own counts
(:class:`hub.media.models.DownloadCount`), which the reach pages read.

A report is only as honest as the server that sends it, so what the upstream
takes from one is bounded:

- rows per request (``HUB_SYNC_REPORT_MAX_ROWS``; 413 beyond it): the school
  server sends a bigger report in parts, each acknowledged on its own;
- only blobs of the published courses the school's subscriptions select. Any
  other hash (unknown, a draft's, a course it does not subscribe to) is ignored
  the same way, and the answer counts downloads only in aggregate, so it never
  tells whether a hash exists;
- only days from ``HUB_SYNC_REPORT_MAX_AGE_DAYS`` ago to tomorrow, and at most
  ``HUB_SYNC_DAILY_DOWNLOADS`` per blob, day and school: the excess is ignored,
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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
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
from hub.sync import manifest as mf
from hub.sync.models import CountReport, MirrorCourse, ReportedCount, Subscription

MAX_ROWS_CEILING = 100_000
"""Rows the request schema parses at most, whatever HUB_SYNC_REPORT_MAX_ROWS says."""

COUNT_BATCH = 200
"""Rows per transaction on the upstream: a few milliseconds of write lock each."""

_CHUNK = 500
"""Hashes per IN (...) list: well under SQLite's bound-parameter limit."""


# -- upstream: receiving reports ------------------------------------------------------


class CountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    day: date
    # Past the daily bound is ignored, not refused; this only keeps the number an integer column holds.
    count: int = Field(ge=1, le=2**31 - 1)


class CountReportIn(BaseModel):
    """What a school server sends: aggregated downloads per blob and day, never who."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Report id: resending the same report adds nothing")
    counts: list[CountIn] = Field(
        max_length=MAX_ROWS_CEILING, description="At most HUB_SYNC_REPORT_MAX_ROWS rows (413 beyond)"
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


def _marker(school_id: int, report_id: str, batch: int | None = None) -> str:
    """The CountReport id recording a school's report (batch None) or one batch of it as received.

    Keyed by school too: a report id chosen by one school server can never shadow another's.
    """
    name = f"counts/{school_id}/{report_id}" if batch is None else f"counts/{school_id}/{report_id}/{batch}"
    return hashlib.sha256(name.encode()).hexdigest()


def receive_counts(
    session: Session, school: School, report: CountReportIn, limits: CountLimits, *, today: date | None = None
) -> CountsReceived:
    """Add a school server's download counts to `school`'s, committing batch by batch.

    Unlike most services this one commits (:data:`COUNT_BATCH` rows per
    transaction; see the module docstring), so the caller must have nothing
    pending it would not want committed with the first batch.

    A report arrives once or many times (a lost acknowledgement makes the school
    server send it again), so a repeat adds nothing; that is checked before the
    size, so a report sent before the bound was lowered is still acknowledged.
    """
    total = sum(item.count for item in report.counts)
    summary = _marker(school.id, report.id)
    if _received(session, school.id, report.id):
        return CountsReceived(0, total)
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
    visible = _subscribed_blobs(session, school.id, {item.sha256 for item in in_window})
    batches = [report.counts[i : i + COUNT_BATCH] for i in range(0, len(report.counts), COUNT_BATCH)] or [[]]
    markers = [_marker(school.id, report.id, i) for i in range(len(batches) - 1)]
    done = dict(session.execute(select(CountReport.id, CountReport.downloads).where(CountReport.id.in_(markers))).all())
    added = sum(done.values())
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        if not last and markers[index] in done:
            continue  # written by an earlier attempt at this report
        wanted: dict[tuple[str, date], int] = {}
        for item in batch:
            if item.sha256 in visible and first_day <= item.day <= last_day:
                key = (item.sha256, item.day)
                wanted[key] = wanted.get(key, 0) + item.count
        try:
            # The marker first: a concurrent attempt at the same batch fails here, before it adds.
            if last:
                session.execute(delete(CountReport).where(CountReport.id.in_(markers)))
                session.add(CountReport(id=summary, school_id=school.id, downloads=0))
            else:
                session.add(CountReport(id=markers[index], school_id=school.id, downloads=0))
            session.flush()
            written = _add_batch(session, school.id, wanted, limits.daily)
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
    return CountsReceived(added, total - added)


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

    Only downloads of mirrored blobs are counted, per blob and day; who
    downloaded never leaves the school. Stored before it is sent, so a resend
    after a lost answer carries the same id and adds nothing upstream.
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
    counts = []
    for sha, day, total in totals:
        delta = int(total) - reported.get((sha, day), 0)
        if delta > 0:
            counts.append({"sha256": sha, "day": day.isoformat(), "count": delta})
    if not counts:
        return None
    state.pending_report = {"id": uuid.uuid4().hex, "counts": counts}
    session.flush()
    return state.pending_report


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
    return sum(int(item["count"]) for item in pending["counts"])


def _acknowledge(session: Session, sent: dict[str, Any]) -> dict[str, Any] | None:
    from hub.sync.services import mirror_state

    state = mirror_state(session)
    pending = state.pending_report
    for item in sent["counts"]:
        day = date.fromisoformat(item["day"])
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
