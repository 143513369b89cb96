"""Rolling raw usage counts up into the tables the dashboard reads.

A province sends some 100 million raw rows a year (hub.reach.models.UsageCount): no page
can sum them per request. The roll-up keeps two tables, re-made a day (and its week) at a
time from the raw rows, so running it twice, or after a crash half-way, gives the same
result: ``reach_day`` (a day per school, course, lesson and kind) and ``reach_week`` (the
same per ISO week, without lessons), for the drill-down and the course, subject and grade
filters; ``reach_school_day`` and ``reach_school_week`` (the same without the course), for
a county's schools, at most three rows per school and day or week whatever the raw volume;
and per area (a school's region and county), for the questions about a whole area (a
province by county, the trend): ``reach_county_day``/``_week`` (per area and kind) and
``reach_subject_day``/``_week`` (per course subject, grade and area), so a province's
question reads a few thousand rows whatever the number of schools (benchmarks/reach).

The area tables depend on where each school is and what each course teaches, which can
change. They are rolled by the area, subject and grades as recorded in
``reach_rolled_area`` and ``reach_rolled_course``; each run first compares those with the
schools and courses now, and moves a moved school's counts, over every day, from its old
area to its new one (a changed course's from its old subject and grades to the new), so
the area tables always answer as the raw rows joined to today's schools and courses would, as the other tables do.

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
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub import jobs
from hub.accounts.models import School
from hub.catalog.models import Course
from hub.db import utcnow
from hub.reach.models import (
    PendingDay,
    ReachCountyDay,
    ReachCountyWeek,
    ReachDay,
    ReachSchoolDay,
    ReachSchoolWeek,
    ReachSubjectDay,
    ReachSubjectWeek,
    ReachWeek,
    RolledArea,
    RolledCourse,
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
    moved_schools: int = 0  # schools whose area changed (their counts moved over every day)
    changed_courses: int = 0  # courses whose subject or grades changed (their counts moved)


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
    moved, changed = _follow_schools_and_courses(session)
    session.commit()
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
    return RollupResult(days=sorted(days), weeks=len(weeks), moved_schools=moved, changed_courses=changed)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


# -- the area grain ---------------------------------------------------------------------------

# A school's area as rolled; a school not in reach_rolled_area (anonymous, deleted) is in
# none: "" and "", as the dashboard's outer join to the schools gives. literal_column, not a
# bound "": PostgreSQL matches a SELECT expression to its GROUP BY only with the same text.
_area_region = func.coalesce(RolledArea.region, literal_column("''"))
_area_county = func.coalesce(RolledArea.county, literal_column("''"))


def _grades() -> Any:
    """0 (the whole subject) and grades 1–9, as a subquery with one column, ``grade``."""
    return union_all(*(select(literal_column(str(g), Integer).label("grade")) for g in range(10))).subquery("grades")


def _county_rows(table: Any, when: Any, where: list[ColumnElement[bool]]) -> Any:
    """Per-school rows of ``table`` summed per ``when``, area and kind."""
    return (
        select(when, _area_region, _area_county, table.kind, func.sum(table.count))
        .select_from(table)
        .outerjoin(RolledArea, RolledArea.school_id == table.school_id)
        .where(*where)
        .group_by(when, _area_region, _area_county, table.kind)
    )


def _subject_rows(table: Any, when: Any, where: list[ColumnElement[bool]]) -> Any:
    """Course-grain rows of ``table`` summed per subject, grade (0, and each the course teaches), ``when``,
    area and kind."""
    grades = _grades()
    grade = grades.c.grade
    teaches = or_(grade == 0, RolledCourse.grades_mask.op("&")(literal(1).op("<<")(grade)) != 0)
    return (
        select(RolledCourse.subject, grade, when, _area_region, _area_county, table.kind, func.sum(table.count))
        .select_from(table)
        .join(RolledCourse, RolledCourse.course_id == table.course_id)
        .join(grades, teaches)
        .outerjoin(RolledArea, RolledArea.school_id == table.school_id)
        .where(*where)
        .group_by(RolledCourse.subject, grade, when, _area_region, _area_county, table.kind)
    )


_COUNTY_COLUMNS = ["region", "county", "kind", "count"]
_SUBJECT_COLUMNS = ["subject", "grade"]


def _follow_schools_and_courses(session: Session) -> tuple[int, int]:
    """Bring reach_rolled_area and reach_rolled_course up to the schools and courses now.

    A school or course new to them with no counts rolled yet is only recorded. One that
    changed (or went, or came with counts already rolled under no area) has its own rows
    moved over every day: its per-school or course-grain rows, summed, are taken off the
    area tables' rows of its old area, or old subject and grades, and added to the new
    ones. That reads the one school's or course's rows, whatever the province's volume (a
    re-make of the whole areas or subjects read millions: 14 s and 47 s in
    benchmarks/reach). One transaction: the area tables never show a school half moved.
    Schools first, under the courses as rolled; then courses, under the schools' new areas.
    Returns (schools moved, courses changed).
    """
    _lock(session)
    school = School.__table__
    moves = session.execute(
        select(school.c.id, school.c.region, school.c.county, RolledArea.region, RolledArea.county)
        .outerjoin(RolledArea, RolledArea.school_id == school.c.id)
        .where(
            or_(
                RolledArea.school_id.is_(None),
                RolledArea.region != school.c.region,
                RolledArea.county != school.c.county,
            )
        )
    ).all()
    gone = session.execute(
        select(RolledArea.school_id, RolledArea.region, RolledArea.county).where(
            ~select(school.c.id).where(school.c.id == RolledArea.school_id).exists()
        )
    ).all()
    moved = 0
    new = [row for row in moves if row[3] is None]
    with_rows = _having_rows(session, ReachSchoolWeek.school_id, [row[0] for row in new])
    for school_id, region, county, old_region, old_county in moves:
        if old_region is None:
            session.add(RolledArea(school_id=school_id, region=region, county=county))
            if school_id not in with_rows or (region, county) == ("", ""):
                continue
            old_region, old_county = "", ""  # counts rolled before it was known: under no area
        else:
            session.execute(
                update(RolledArea).where(RolledArea.school_id == school_id).values(region=region, county=county)
            )
        _move_school(session, school_id, (old_region, old_county), (region, county))
        moved += 1
    for school_id, old_region, old_county in gone:
        session.execute(delete(RolledArea).where(RolledArea.school_id == school_id))
        _move_school(session, school_id, (old_region, old_county), ("", ""))
        moved += 1
    session.flush()

    course = Course.__table__
    edits = session.execute(
        select(course.c.id, course.c.subject, course.c.grades_mask, RolledCourse.subject, RolledCourse.grades_mask)
        .outerjoin(RolledCourse, RolledCourse.course_id == course.c.id)
        .where(
            or_(
                RolledCourse.course_id.is_(None),
                RolledCourse.subject != course.c.subject,
                RolledCourse.grades_mask != course.c.grades_mask,
            )
        )
    ).all()
    deleted = session.execute(
        select(RolledCourse.course_id, RolledCourse.subject, RolledCourse.grades_mask).where(
            ~select(course.c.id).where(course.c.id == RolledCourse.course_id).exists()
        )
    ).all()
    changed = 0
    used = _having_rows(session, ReachWeek.course_id, [row[0] for row in edits if row[3] is None])
    for course_id, subject, mask, old_subject, old_mask in edits:
        if old_subject is None:
            session.add(RolledCourse(course_id=course_id, subject=subject, grades_mask=mask))
            if course_id not in used:
                continue
            _move_course(session, course_id, None, (subject, mask))
        else:
            session.execute(
                update(RolledCourse)
                .where(RolledCourse.course_id == course_id)
                .values(subject=subject, grades_mask=mask)
            )
            _move_course(session, course_id, (old_subject, old_mask), (subject, mask))
        changed += 1
    for course_id, old_subject, old_mask in deleted:
        session.execute(delete(RolledCourse).where(RolledCourse.course_id == course_id))
        _move_course(session, course_id, (old_subject, old_mask), None)
        changed += 1
    session.flush()
    return moved, changed


def _having_rows(session: Session, column: Any, ids: list[int]) -> set[int]:
    """Which of ``ids`` have rows in ``column``'s (weekly) roll-up table."""
    found: set[int] = set()
    for i in range(0, len(ids), 500):
        found |= set(session.scalars(select(column).where(column.in_(ids[i : i + 500])).distinct()))
    return found


_COUNTY_PAIRS: list[tuple[Any, Any, str]] = [
    (ReachCountyDay, ReachSchoolDay, "day"),
    (ReachCountyWeek, ReachSchoolWeek, "week"),
]
_SUBJECT_PAIRS: list[tuple[Any, Any, str]] = [(ReachSubjectDay, ReachDay, "day"), (ReachSubjectWeek, ReachWeek, "week")]


def _move_school(session: Session, school_id: int, old: tuple[str, str], new: tuple[str, str]) -> None:
    """Take one school's counts off area ``old`` and add them to area ``new``, in every area table."""
    for target, source, when in _COUNTY_PAIRS:
        at = getattr(source, when)
        found = session.execute(
            select(at, source.kind, func.sum(source.count))
            .where(source.school_id == school_id)
            .group_by(at, source.kind)
        ).all()
        rows = [{when: w, "kind": kind, "count": int(n)} for w, kind, n in found]
        for (region, county), sign in ((old, -1), (new, 1)):
            _shift(session, target, [{**r, "region": region, "county": county} for r in rows], sign)
    for target, source, when in _SUBJECT_PAIRS:
        at = getattr(source, when)
        grades = _grades()
        grade = grades.c.grade
        teaches = or_(grade == 0, RolledCourse.grades_mask.op("&")(literal(1).op("<<")(grade)) != 0)
        found = session.execute(
            select(RolledCourse.subject, grade, at, source.kind, func.sum(source.count))
            .select_from(source)
            .join(RolledCourse, RolledCourse.course_id == source.course_id)
            .join(grades, teaches)
            .where(source.school_id == school_id)
            .group_by(RolledCourse.subject, grade, at, source.kind)
        ).all()
        rows = [
            {"subject": subject, "grade": g, when: w, "kind": kind, "count": int(n)} for subject, g, w, kind, n in found
        ]
        for (region, county), sign in ((old, -1), (new, 1)):
            _shift(session, target, [{**r, "region": region, "county": county} for r in rows], sign)


def _move_course(session: Session, course_id: int, old: tuple[str, int] | None, new: tuple[str, int] | None) -> None:
    """Take one course's counts off subject and grades ``old`` and add them to ``new`` (None: none)."""
    for target, source, when in _SUBJECT_PAIRS:
        at = getattr(source, when)
        found = session.execute(
            select(at, _area_region, _area_county, source.kind, func.sum(source.count))
            .select_from(source)
            .outerjoin(RolledArea, RolledArea.school_id == source.school_id)
            .where(source.course_id == course_id)
            .group_by(at, _area_region, _area_county, source.kind)
        ).all()
        for mapping, sign in ((old, -1), (new, 1)):
            if mapping is None:
                continue
            subject, mask = mapping
            grades = [0, *(g for g in range(1, 10) if mask & (1 << g))]
            rows = [
                {"subject": subject, "grade": g, when: w, "region": region, "county": county, "kind": kind,
                 "count": int(n)}
                for w, region, county, kind, n in found
                for g in grades
            ]  # fmt: skip
            _shift(session, target, rows, sign)


def _shift(session: Session, target: Any, rows: list[dict[str, Any]], sign: int) -> None:
    """Add ``rows`` to the area table ``target`` (sign 1), or take them off (-1; rows left at 0 go)."""
    if not rows:
        return
    table = target.__table__
    keys = [c.name for c in table.primary_key.columns]
    if sign > 0:
        dialect = session.get_bind().dialect.name
        statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=keys, set_={"count": table.c.count + statement.excluded.count}
            ),
            rows,
        )
        return
    params = [{**{f"k_{k}": r[k] for k in keys}, "n": r["count"]} for r in rows]
    match = and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
    session.execute(table.update().where(match).values(count=table.c.count - bindparam("n")), params)
    session.execute(
        table.delete().where(match, table.c.count <= 0), [{k: v for k, v in p.items() if k != "n"} for p in params]
    )


# -- a week -----------------------------------------------------------------------------------


def _roll_week(session: Session, week: date, days: list[date]) -> None:
    _lock(session)
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
        # The area grain, from the day's per-school and course-grain rows just made.
        session.execute(delete(ReachCountyDay).where(ReachCountyDay.day == day))
        session.execute(
            insert(ReachCountyDay).from_select(
                ["day", *_COUNTY_COLUMNS], _county_rows(ReachSchoolDay, ReachSchoolDay.day, [ReachSchoolDay.day == day])
            )
        )
        session.execute(delete(ReachSubjectDay).where(ReachSubjectDay.day == day))
        session.execute(
            insert(ReachSubjectDay).from_select(
                [*_SUBJECT_COLUMNS, "day", *_COUNTY_COLUMNS],
                _subject_rows(ReachDay, ReachDay.day, [ReachDay.day == day]),
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
    in_week = (week, week + timedelta(days=7))
    session.execute(delete(ReachCountyWeek).where(ReachCountyWeek.week == week))
    session.execute(
        insert(ReachCountyWeek).from_select(
            ["week", *_COUNTY_COLUMNS],
            select(
                literal(week), ReachCountyDay.region, ReachCountyDay.county, ReachCountyDay.kind,
                func.sum(ReachCountyDay.count),
            )
            .where(ReachCountyDay.day >= in_week[0], ReachCountyDay.day < in_week[1])
            .group_by(ReachCountyDay.region, ReachCountyDay.county, ReachCountyDay.kind),
        )
    )  # fmt: skip
    session.execute(delete(ReachSubjectWeek).where(ReachSubjectWeek.week == week))
    session.execute(
        insert(ReachSubjectWeek).from_select(
            [*_SUBJECT_COLUMNS, "week", *_COUNTY_COLUMNS],
            select(
                ReachSubjectDay.subject, ReachSubjectDay.grade, literal(week), ReachSubjectDay.region,
                ReachSubjectDay.county, ReachSubjectDay.kind, func.sum(ReachSubjectDay.count),
            )
            .where(ReachSubjectDay.day >= in_week[0], ReachSubjectDay.day < in_week[1])
            .group_by(
                ReachSubjectDay.subject, ReachSubjectDay.grade, ReachSubjectDay.region, ReachSubjectDay.county,
                ReachSubjectDay.kind,
            ),
        )
    )  # fmt: skip
    session.flush()
