"""Rolling raw usage counts up into the tables the dashboard reads.

A province sends some 100 million raw rows a year (hub.reach.models.UsageCount): no page
can sum them per request. The roll-up keeps two tables, re-made a day (and its week) at a
time from the raw rows, so running it twice, or after a crash half-way, gives the same
result: ``reach_day`` (a day per school, course, lesson and kind) and ``reach_week`` (the
same per ISO week, without lessons), for the drill-down and the course, subject and grade
filters; ``reach_school_day`` and ``reach_school_week`` (the same without the course), for
every view without such a filter, at most three rows per school and day or week whatever
the raw volume (benchmarks/reach).

Which days to re-make:
- marked ones: whatever records counts calls :func:`mark_days` in its own transaction
  (an upsert that moves ``marked_at``: it takes the row's lock, so a roll-up claiming
  the day waits for the recording to commit and then reads its rows);
- the safety run's: days of the last ``HUB_REACH_CHECK_DAYS`` whose raw rows' number or
  total differ from what was rolled (counts only grow, so equal means unchanged).

Runs are serialised by a PostgreSQL advisory lock (SQLite serialises writers already).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import delete, func, insert, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub import jobs
from hub.db import utcnow
from hub.reach.models import (
    PendingDay,
    ReachDay,
    ReachSchoolDay,
    ReachSchoolWeek,
    ReachWeek,
    RolledDay,
    UsageCount,
)

# Any fixed number: the key of the advisory lock that serialises roll-ups on PostgreSQL.
_LOCK_KEY = 0x5EAC_0017


def week_of(day: date) -> date:
    """The Monday of ``day``'s ISO week: how weeks are named in the roll-up."""
    return day - timedelta(days=day.weekday())


def mark_days(session: Session, days: Iterable[date]) -> None:
    """Note that raw counts of ``days`` changed, and enqueue a roll-up after the commit.

    Called in the transaction that changed them, so the mark commits with the counts.
    """
    wanted = sorted(set(days))
    if not wanted:
        return
    now = utcnow()
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(PendingDay)
    session.execute(
        statement.on_conflict_do_update(index_elements=["day"], set_={"marked_at": statement.excluded.marked_at}),
        [{"day": d, "marked_at": now} for d in wanted],
    )
    jobs.enqueue(session, jobs.ROLL_UP_REACH)


@dataclass(frozen=True)
class RollupResult:
    days: list[date]  # the days re-rolled, oldest first
    weeks: int


def changed_days(session: Session, since: date | None) -> set[date]:
    """Days whose raw rows differ from their roll-up (from ``since`` on; every day for None)."""
    raw = select(UsageCount.day, func.count(), func.coalesce(func.sum(UsageCount.count), 0)).group_by(UsageCount.day)
    rolled = select(RolledDay.day, RolledDay.raw_rows, RolledDay.raw_total)
    if since is not None:
        raw = raw.where(UsageCount.day >= since)
        rolled = rolled.where(RolledDay.day >= since)
    now = {day: (rows, int(total)) for day, rows, total in session.execute(raw)}
    before = {day: (rows, int(total)) for day, rows, total in session.execute(rolled)}
    # A rolled day with no raw rows left (deleted by hand) is re-rolled to nothing.
    return {day for day in now.keys() | before.keys() if now.get(day) != before.get(day)}


def roll_up(
    session: Session, *, check_days: int | None, today: date | None = None, everything: bool = False
) -> RollupResult:
    """Re-roll the marked days and those the safety check finds changed; commits a week at a time.

    ``check_days`` None skips the safety check (a run triggered by a mark);
    ``everything`` compares every day there is (`hub reach rollup --all`).
    """
    today = today or utcnow().date()
    days = set(session.scalars(select(PendingDay.day)))
    if everything:
        days |= changed_days(session, None)
    elif check_days is not None:
        days |= changed_days(session, today - timedelta(days=check_days))
    session.commit()  # end the read transaction: each week below is its own
    weeks: dict[date, list[date]] = {}
    for day in sorted(days):
        weeks.setdefault(week_of(day), []).append(day)
    for week, week_days in sorted(weeks.items()):
        _roll_week(session, week, week_days)
        session.commit()
    return RollupResult(days=sorted(days), weeks=len(weeks))


def _roll_week(session: Session, week: date, days: list[date]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    for day in days:
        # Claim the mark first: a recording still open on this day holds the mark's row
        # lock, so this waits for its commit, and the raw read below sees its rows.
        session.execute(delete(PendingDay).where(PendingDay.day == day))
        session.execute(delete(ReachDay).where(ReachDay.day == day))
        session.execute(
            insert(ReachDay).from_select(
                ["day", "school_id", "course_id", "lesson_id", "kind", "count"],
                select(
                    UsageCount.day,
                    UsageCount.school_id,
                    UsageCount.course_id,
                    UsageCount.lesson_id,
                    UsageCount.kind,
                    func.sum(UsageCount.count),
                )
                .where(UsageCount.day == day, UsageCount.count > 0)
                .group_by(
                    UsageCount.day, UsageCount.school_id, UsageCount.course_id, UsageCount.lesson_id, UsageCount.kind
                ),
            )
        )
        # The course-less grain from the day just rolled (already merged over lessons,
        # materials and sources), not from the raw rows again.
        session.execute(delete(ReachSchoolDay).where(ReachSchoolDay.day == day))
        session.execute(
            insert(ReachSchoolDay).from_select(
                ["day", "school_id", "kind", "count"],
                select(ReachDay.day, ReachDay.school_id, ReachDay.kind, func.sum(ReachDay.count))
                .where(ReachDay.day == day)
                .group_by(ReachDay.day, ReachDay.school_id, ReachDay.kind),
            )
        )
        rows, total = session.execute(
            select(func.count(), func.coalesce(func.sum(UsageCount.count), 0)).where(UsageCount.day == day)
        ).one()
        rolled = session.get(RolledDay, day)
        if rows == 0:
            if rolled is not None:
                session.delete(rolled)
        elif rolled is None:
            session.add(RolledDay(day=day, raw_rows=rows, raw_total=int(total), rolled_at=utcnow()))
        else:
            rolled.raw_rows, rolled.raw_total, rolled.rolled_at = rows, int(total), utcnow()
    session.execute(delete(ReachWeek).where(ReachWeek.week == week))
    session.execute(
        insert(ReachWeek).from_select(
            ["week", "school_id", "course_id", "kind", "count"],
            select(literal(week), ReachDay.school_id, ReachDay.course_id, ReachDay.kind, func.sum(ReachDay.count))
            .where(ReachDay.day >= week, ReachDay.day < week + timedelta(days=7))
            .group_by(ReachDay.school_id, ReachDay.course_id, ReachDay.kind),
        )
    )
    session.execute(delete(ReachSchoolWeek).where(ReachSchoolWeek.week == week))
    session.execute(
        insert(ReachSchoolWeek).from_select(
            ["week", "school_id", "kind", "count"],
            select(literal(week), ReachWeek.school_id, ReachWeek.kind, func.sum(ReachWeek.count))
            .where(ReachWeek.week == week)
            .group_by(ReachWeek.school_id, ReachWeek.kind),
        )
    )
    session.flush()
