"""The reach dashboard's use cases, shared by its pages, their CSV, the API and the benchmark.

Who sees what (:func:`scope_for`): admins everything; a supervisor (the education
bureau) the schools of their region, or of one county in it; an uploader the reach of
their own school's courses. Small counts are masked (``HUB_REACH_MASK_BELOW``) outside
a school's own rows.

Every count comes from the roll-ups (hub.reach.rollup), never from the raw rows: a
period's whole weeks from a weekly table, its edge days from a daily one. Which pair
answers (:func:`_grain`): a whole area's questions (by county or the trend, with no
school or course) the per-area tables (``reach_county_*``, or ``reach_subject_*`` with a
subject or grade filter); a question that needs the courses ``reach_week`` and
``reach_day``; the others (a county by school) the per-school tables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    cast,
    distinct,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session

from hub.accounts.models import Pairing, School, User
from hub.catalog.models import Course, Lesson
from hub.db import utcnow
from hub.errors import Invalid, PermissionDenied
from hub.i18n import N_
from hub.inputs import Id
from hub.reach.models import (
    ReachCountyDay,
    ReachCountyWeek,
    ReachDay,
    ReachSchoolDay,
    ReachSchoolWeek,
    ReachSubjectDay,
    ReachSubjectWeek,
    ReachWeek,
)
from hub.reach.rollup import week_of
from hub.sync import servers as sync_servers
from hub.sync.models import Subscription
from hub.vocab import CURRICULUM_GRADES, USAGE_KINDS, SubjectCode

GROUPS = ("county", "school", "course", "lesson", "week")
DEFAULT_DAYS = 28  # a period left open: the last four weeks
MAX_DAYS = 3 * 366  # a longer period is a report for the raw export, not a page
COVERAGE_PAGE = 30  # rural schools per coverage page: about 10 KB of HTML


class ReachQuery(BaseModel):
    """The dashboard's filters, as the API's query string and the pages' form send them."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    county: Annotated[str, Field(max_length=100, description="Only schools of this county")] | None = None
    school: Id | None = Field(default=None, description="Only this school (the one whose people used the lessons)")
    subject: SubjectCode | None = Field(default=None, description="Only courses of this subject")
    grade: Annotated[int, Field(ge=1, le=9)] | None = Field(default=None, description="Only courses for this grade")
    course: Id | None = Field(default=None, description="Only this course")
    from_: date | None = Field(
        default=None, alias="from", description="First day (YYYY-MM-DD); default: 27 days before to"
    )
    to: date | None = Field(default=None, description="Last day (YYYY-MM-DD); default: today (UTC)")
    group_by: Literal["county", "school", "course", "lesson", "week"] = Field(
        default="county", description="county, school, course, lesson (needs course) or week (the trend)"
    )
    page: Annotated[int, Field(ge=1, le=100000)] = Field(default=1, description="Coverage: page of rural schools")


# -- who sees what -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    everything: bool = False  # an admin
    region: str = ""  # a supervisor's area: schools in this region ("四川省" covers "四川省 成都市")...
    county: str = ""  # ... and, when set, this county
    course_school_id: int | None = None  # an uploader: only their school's courses
    own_school_id: int = 0  # the viewer's school: its own rows are never masked

    @property
    def area(self) -> bool:
        return bool(self.region)


def scope_for(user: User) -> Scope:
    """What ``user`` may see of the dashboard; PermissionDenied for anyone else."""
    if user.is_admin:
        return Scope(everything=True, own_school_id=user.school_id)
    if user.role == "supervisor":
        region, county = user.supervised_area
        if not region:
            raise PermissionDenied(N_("This supervisor account has no region: an admin has to give it one."))
        return Scope(region=region, county=county, own_school_id=user.school_id)
    if user.role == "uploader":
        return Scope(course_school_id=user.school_id, own_school_id=user.school_id)
    raise PermissionDenied(N_("Only admins, supervisors and uploaders can see the reach dashboard."))


def require_area(scope: Scope) -> None:
    """Coverage and school servers are about schools: admins' and supervisors' only."""
    if scope.course_school_id is not None:
        raise PermissionDenied(N_("Uploaders see the reach of their own courses only."))


def _in_area(scope: Scope) -> ColumnElement[bool]:
    """On School: the schools the scope covers (every school for admins and uploaders)."""
    if not scope.area:
        return School.id.isnot(None)
    region = or_(School.region == scope.region, School.region.startswith(scope.region + " ", autoescape=True))
    return and_(region, School.county == scope.county) if scope.county else region


def area_school_ids(scope: Scope) -> Select[Any]:
    return select(School.id).where(_in_area(scope))


# -- periods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def split(self) -> tuple[tuple[date, date] | None, list[tuple[date, date]]]:
        """The whole ISO weeks inside (first Monday, last Monday) and the edge day ranges outside them."""
        first = self.start if self.start.weekday() == 0 else week_of(self.start) + timedelta(days=7)
        last = week_of(self.end + timedelta(days=1)) - timedelta(days=7)  # the last week ending by self.end
        if last < first:
            return None, [(self.start, self.end)]
        edges = []
        if self.start < first:
            edges.append((self.start, first - timedelta(days=1)))
        if last + timedelta(days=6) < self.end:
            edges.append((last + timedelta(days=7), self.end))
        return (first, last), edges

    def weeks(self) -> list[date]:
        out, week = [], week_of(self.start)
        while week <= self.end:
            out.append(week)
            week += timedelta(days=7)
        return out


def period_of(query: ReachQuery, today: date | None = None) -> Period:
    end = query.to or today or utcnow().date()
    start = query.from_ or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise Invalid(N_("The period starts after it ends."), {"from": N_("after the end")})
    if (end - start).days >= MAX_DAYS:
        raise Invalid(N_("A period is at most three years long."), {"from": N_("too long before the end")})
    return Period(start, end)


# -- masking -------------------------------------------------------------------------------


@dataclass
class Counts:
    """Plays, downloads and course ZIPs of one row; ``masked`` kinds are shown as "< N"."""

    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KINDS, 0))
    masked: frozenset[str] = frozenset()

    def add(self, kind: str, count: int) -> None:
        self.values[kind] = self.values.get(kind, 0) + int(count)

    def mask(self, below: int, own: bool) -> Counts:
        hidden = frozenset(k for k, v in self.values.items() if 0 < v < below) if not own else frozenset()
        return Counts(dict(self.values), hidden)

    def shown(self, kind: str, below: int) -> int | None:
        """The count, or None when masked."""
        return None if kind in self.masked else self.values.get(kind, 0)

    def text(self, kind: str, below: int) -> str:
        return f"< {below}" if kind in self.masked else str(self.values.get(kind, 0))

    @property
    def total(self) -> int:
        return sum(self.values.values())


# -- reach ---------------------------------------------------------------------------------


@dataclass
class ReachRow:
    key: Any  # county name, school id, course id, lesson id or week (a Monday)
    label: str
    detail: str  # the county of a school, the school of a course, the course of a lesson
    counts: Counts
    own: bool = False


@dataclass
class ReachTable:
    query: ReachQuery
    period: Period
    group_by: str
    rows: list[ReachRow]
    total: Counts
    trend: list[tuple[date, Counts]]  # per week of the period, masked like the rows
    mask_below: int


def _course_ids_filter(scope: Scope, query: ReachQuery) -> Select[Any] | None:
    conditions: list[ColumnElement[bool]] = []
    if scope.course_school_id is not None:
        conditions.append(Course.school_id == scope.course_school_id)
    if query.subject:
        conditions.append(Course.subject == query.subject)
    if query.grade:
        conditions.append(Course.grades_mask.op("&")(1 << query.grade) != 0)
    return select(Course.id).where(*conditions) if conditions else None


def _school_ids_filter(scope: Scope, query: ReachQuery) -> Select[Any] | None:
    conditions: list[ColumnElement[bool]] = []
    if scope.area:
        conditions.append(_in_area(scope))
    if query.county is not None:
        conditions.append(School.county == query.county)
    return select(School.id).where(*conditions) if conditions else None


def _filters(table: Any, scope: Scope, query: ReachQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    courses, schools = _course_ids_filter(scope, query), _school_ids_filter(scope, query)
    if courses is not None:
        where.append(table.course_id.in_(courses))
    if schools is not None:
        where.append(table.school_id.in_(schools))
    if query.course:
        where.append(table.course_id == query.course)
    if query.school:
        where.append(table.school_id == query.school)
    return where


def _grain(scope: Scope, query: ReachQuery, group_by: str) -> str:
    """Which roll-ups answer a question: "area", "course" or "school".

    "area" (reach_county_*, reach_subject_*): a question about whole areas, by county or
    per week, with no school, course or uploader's courses in it; the area tables hold a
    row per area (region and county), day or week and kind (and subject and grade), so a
    province's question reads a few thousand rows. "course" (reach_week, reach_day): a
    course, subject or grade filter, an uploader's own courses, or grouping by course or
    lesson. "school" (reach_school_*): the rest, a county's schools. The county "" (schools
    with no county) is asked of the per-school tables: the area tables put counts of no
    known school there too.
    """
    if (
        group_by in ("county", "week")
        and not query.school
        and not query.course
        and scope.course_school_id is None
        and query.county != ""
    ):
        return "area"
    if (
        group_by in ("course", "lesson")
        or query.course is not None
        or query.subject is not None
        or query.grade is not None
        or scope.course_school_id is not None
    ):
        return "course"
    return "school"


def _area_filters(table: Any, scope: Scope, query: ReachQuery) -> list[ColumnElement[bool]]:
    """On an area table: the scope's area, the county, subject and grade filters (as _filters on the others)."""
    where: list[ColumnElement[bool]] = []
    if scope.area:
        where.append(or_(table.region == scope.region, table.region.startswith(scope.region + " ", autoescape=True)))
        if scope.county:
            where.append(table.county == scope.county)
    if query.county is not None:
        where.append(table.county == query.county)
    if query.subject is not None or query.grade is not None:
        # grade 0 is the subject over all its grades; a grade's rows are every subject's courses for it.
        where.append(table.grade == (query.grade or 0))
        if query.subject is not None:
            where.append(table.subject == query.subject)
    return where


def _period_counts(
    session: Session, scope: Scope, query: ReachQuery, period: Period, group_by: str
) -> tuple[dict[Any, Counts], dict[date, Counts]]:
    """Counts per group key and per week over the period, in one statement.

    Whole weeks come from a weekly table, the edge days from a daily one. The trend is
    summed in the same statement as the groups: on PostgreSQL by GROUPING SETS (one scan
    of the rows), on SQLite by a second aggregate in a UNION ALL. Grouping by key and week
    and summing here instead returned 12,000 rows for a province's counties over a year,
    and adding them up in Python cost more than the scan (benchmarks/reach).
    """
    grain = _grain(scope, query, group_by)
    week_table: Any
    day_table: Any
    if grain == "area":
        filters = _area_filters
        filtered = query.subject is not None or query.grade is not None
        week_table, day_table = (ReachSubjectWeek, ReachSubjectDay) if filtered else (ReachCountyWeek, ReachCountyDay)
    else:
        filters = _filters
        week_table, day_table = (ReachWeek, ReachDay) if grain == "course" else (ReachSchoolWeek, ReachSchoolDay)
    weeks, edges = period.split()
    parts: list[tuple[Any, Any, tuple[date, date]]] = []
    if group_by == "lesson":  # lessons are only in the daily table
        parts.append((day_table, day_table.day, (period.start, period.end)))
    else:
        if weeks is not None:
            parts.append((week_table, week_table.week, weeks))
        parts.extend((day_table, day_table.day, edge) for edge in edges)
    grouping_sets = session.get_bind().dialect.name == "postgresql"
    selects = []
    for table, when, (first, last) in parts:
        where = [*filters(table, scope, query), when >= first, when <= last]
        key: Any = {
            "county": table.county if grain == "area" else func.coalesce(School.county, ""),
            "school": getattr(table, "school_id", None),
            "course": getattr(table, "course_id", None),
            "lesson": getattr(table, "lesson_id", None),
            "week": when,
        }[group_by]
        # Rows are (key, time, kind, sum): a NULL time marks a group's row, a NULL key a trend's.
        no_key = cast(null(), Integer if group_by == "week" else key.type)
        if group_by == "week":
            shapes = [(no_key, when, [when, table.kind])]
        elif grouping_sets:  # one scan for both sums
            shapes = [(key, when, [func.grouping_sets(tuple_(key, table.kind), tuple_(when, table.kind))])]
        else:  # SQLite has no GROUPING SETS: a second aggregate in the same statement
            shapes = [(key, cast(null(), Date), [key, table.kind]), (no_key, when, [when, table.kind])]
        for k, w, by in shapes:
            statement = select(k, w, table.kind, func.sum(table.count)).where(*where).group_by(*by)
            if group_by == "county" and grain != "area":
                statement = statement.select_from(table).outerjoin(School, School.id == table.school_id)
            selects.append(statement)
    groups: dict[Any, Counts] = defaultdict(Counts)
    trend: dict[date, Counts] = defaultdict(Counts)
    if not selects:
        return groups, trend
    everything: Any = union_all(*selects) if len(selects) > 1 else selects[0]
    for k, when, kind, n in session.execute(everything):
        if when is not None:
            trend[week_of(when)].add(kind, n)
        if k is not None:
            groups[k].add(kind, n)
    return (trend if group_by == "week" else groups), trend


def reach(
    session: Session, scope: Scope, query: ReachQuery, *, mask_below: int, today: date | None = None
) -> ReachTable:
    """Plays, downloads and course ZIPs over a period, grouped by county, school, course, lesson or week."""
    period = period_of(query, today)
    group_by = query.group_by
    if group_by == "lesson" and not query.course:
        raise Invalid(N_("Choose a course to see its lessons."), {"course": N_("needed for lessons")})
    own_filter = bool(query.school) and query.school == scope.own_school_id
    grouped, trend_counts = _period_counts(session, scope, query, period, group_by)
    labels = _labels(session, group_by, list(grouped))
    rows = []
    total = Counts()
    for key, counts in grouped.items():
        for kind, n in counts.values.items():
            total.add(kind, n)
        if group_by == "week":
            continue
        own = own_filter or (group_by == "school" and key == scope.own_school_id and key != 0)
        label, detail = labels.get(key, (str(key), ""))
        rows.append(ReachRow(key, label, detail, counts.mask(mask_below, own), own))
    if group_by == "week":
        rows = [
            ReachRow(week, week.isoformat(), "", grouped.get(week, Counts()).mask(mask_below, own_filter), own_filter)
            for week in period.weeks()
        ]
    else:
        rows.sort(key=lambda r: (-r.counts.values["play"] - r.counts.values["download"], r.label))
    trend = [(week, trend_counts.get(week, Counts()).mask(mask_below, own_filter)) for week in period.weeks()]
    return ReachTable(query, period, group_by, rows, total.mask(mask_below, own_filter), trend, mask_below)


def _labels(session: Session, group_by: str, keys: list[Any]) -> dict[Any, tuple[str, str]]:
    """What each group key is called, and what it belongs to."""
    if group_by == "county":
        return {k: (k, "") for k in keys}
    ids = [k for k in keys if k]
    if group_by == "school":
        found = {
            i: (name, " ".join(p for p in (region, county) if p))
            for i, name, region, county in session.execute(
                select(School.id, School.name, School.region, School.county).where(School.id.in_(ids))
            )
        }
        return {0: (NO_SCHOOL, ""), **found}
    if group_by == "course":
        return {
            i: (title, name)
            for i, title, name in session.execute(
                select(Course.id, Course.title, School.name)
                .join(School, School.id == Course.school_id)
                .where(Course.id.in_(ids))
            )
        }
    if group_by == "lesson":
        found = {
            i: (f"{position}. {title}", course)
            for i, position, title, course in session.execute(
                select(Lesson.id, Lesson.position, Lesson.title, Course.title)
                .join(Course, Course.id == Lesson.course_id)
                .where(Lesson.id.in_(ids))
            )
        }
        return {0: (COURSE_ZIP, ""), **found}
    return {}


# Labels the templates translate (the service returns them as keys, not as text).
NO_SCHOOL = "\0no-school"
COURSE_ZIP = "\0course-zip"


# -- coverage ----------------------------------------------------------------------------


@dataclass
class SchoolCoverage:
    school: School
    courses: dict[tuple[str, int], int]  # (subject, grade) -> published courses available

    @property
    def covered(self) -> int:
        return sum(1 for subject, grades in CURRICULUM_GRADES.items() for g in grades if self.courses.get((subject, g)))

    @property
    def gap_groups(self) -> list[tuple[str, list[int]]]:
        """The gaps per subject, in the curriculum's order: 数学 [1, 2, 3]."""
        out: dict[str, list[int]] = {}
        for subject, grade in self.gaps:
            out.setdefault(subject, []).append(grade)
        return list(out.items())

    @property
    def gaps(self) -> list[tuple[str, int]]:
        return [(s, g) for s, grades in CURRICULUM_GRADES.items() for g in grades if not self.courses.get((s, g))]


CURRICULUM_CELLS = sum(len(g) for g in CURRICULUM_GRADES.values())


@dataclass
class CoveragePage:
    schools: list[SchoolCoverage]
    total: int
    page: int
    pages: int


def _schools_where(scope: Scope, query: ReachQuery, *, rural: bool) -> list[ColumnElement[bool]]:
    """On School: the area's schools (rural ones only when ``rural``) under the county and school filters."""
    where = [_in_area(scope)]
    if rural:
        where.append(or_(School.kind == "rural", School.rural.is_(True)))
    if query.county is not None:
        where.append(School.county == query.county)
    if query.school:
        where.append(School.id == query.school)
    return where


def coverage(session: Session, scope: Scope, query: ReachQuery, *, per_page: int = COVERAGE_PAGE) -> CoveragePage:
    """Each rural school of the area: the curriculum's subjects × grades it has published lessons for.

    Available means selected by the school's subscriptions (what its school server mirrors),
    restricted by ``subject`` and ``grade`` when given; a course with no lesson gives nothing.
    """
    require_area(scope)
    where = _schools_where(scope, query, rural=True)
    total = session.scalar(select(func.count()).select_from(School).where(*where)) or 0
    schools = list(
        session.scalars(
            select(School)
            .where(*where)
            .order_by(School.county, School.name)
            .offset((query.page - 1) * per_page)
            .limit(per_page)
        )
    )
    grids = _grids(session, [s.id for s in schools], query)
    return CoveragePage(
        [SchoolCoverage(s, grids.get(s.id, {})) for s in schools], total, query.page, max(1, -(-total // per_page))
    )


def all_coverage(session: Session, scope: Scope, query: ReachQuery) -> Iterable[SchoolCoverage]:
    """Every rural school of the area, 500 at a time (the CSV of a province)."""
    require_area(scope)
    where = _schools_where(scope, query, rural=True)
    after = 0
    while True:
        schools = list(session.scalars(select(School).where(*where, School.id > after).order_by(School.id).limit(500)))
        if not schools:
            return
        grids = _grids(session, [s.id for s in schools], query)
        yield from (SchoolCoverage(s, grids.get(s.id, {})) for s in schools)
        after = schools[-1].id


def _grids(session: Session, school_ids: Sequence[int], query: ReachQuery) -> dict[int, dict[tuple[str, int], int]]:
    if not school_ids:
        return {}
    # One query for the page's schools: each subscription kind joined to the courses it selects
    # (hub.sync.manifest.subscribed_clause, as a join), published and with at least one lesson.
    grade_range = literal(1).op("<<")(Subscription.grade_max + 1) - literal(1).op("<<")(Subscription.grade_min)
    selects = or_(
        and_(Subscription.kind == "course", Course.id == Subscription.course_id),
        and_(
            Subscription.kind == "subject",
            Course.subject == Subscription.subject,
            Course.grades_mask.op("&")(grade_range) != 0,
        ),
        and_(Subscription.kind == "paired", Course.school_id == Subscription.paired_school_id),
    )
    has_lessons = select(Lesson.id).where(Lesson.course_id == Course.id).exists()
    statement = (
        select(Subscription.school_id, Course.id, Course.subject, Course.grades_mask)
        .join(Course, selects)
        .where(Subscription.school_id.in_(school_ids), Course.status == "published", has_lessons)
        .distinct()
    )
    if query.subject:
        statement = statement.where(Course.subject == query.subject)
    grids: dict[int, dict[tuple[str, int], int]] = defaultdict(dict)
    for school_id, _course_id, subject, mask in session.execute(statement):
        grid = grids[school_id]
        for grade in range(1, 10):
            if mask & (1 << grade) and (not query.grade or grade == query.grade):
                grid[(subject, grade)] = grid.get((subject, grade), 0) + 1
    return grids


# -- famous schools' contribution -------------------------------------------------------


@dataclass
class Contribution:
    school: School
    courses: int  # published
    lessons: int  # in published courses
    schools_reached: int  # rural schools of the area that used them in the period
    rural: Counts  # plays, downloads and ZIPs in rural schools of the area


def _period_union(scope: Scope, query: ReachQuery, period: Period, *columns: str) -> Any:
    """The period's roll-up rows (weeks and edge days) as one subquery with ``columns``, kind and count."""
    weeks, edges = period.split()
    parts = []
    if weeks is not None:
        parts.append(
            select(*(getattr(ReachWeek, c) for c in columns), ReachWeek.kind, ReachWeek.count).where(
                *_filters(ReachWeek, scope, query), ReachWeek.week >= weeks[0], ReachWeek.week <= weeks[1]
            )
        )
    for first, last in edges:
        parts.append(
            select(*(getattr(ReachDay, c) for c in columns), ReachDay.kind, ReachDay.count).where(
                *_filters(ReachDay, scope, query), ReachDay.day >= first, ReachDay.day <= last
            )
        )
    return union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()


def contribution(
    session: Session, scope: Scope, query: ReachQuery, *, mask_below: int, today: date | None = None
) -> list[Contribution]:
    """Per famous school: what it shares and what reached the area's rural schools in the period."""
    period = period_of(query, today)
    famous = select(School).where(School.kind == "famous")
    if scope.course_school_id is not None:
        famous = famous.where(School.id == scope.course_school_id)
    schools = {s.id: s for s in session.scalars(famous.order_by(School.name))}
    if not schools:
        return []
    published = (Course.status == "published", Course.school_id.in_(schools))
    courses = dict(
        session.execute(select(Course.school_id, func.count()).where(*published).group_by(Course.school_id)).all()
    )
    lessons = dict(
        session.execute(
            select(Course.school_id, func.count(Lesson.id))
            .join(Lesson, Lesson.course_id == Course.id)
            .where(*published)
            .group_by(Course.school_id)
        ).all()
    )
    rows = _period_union(scope, query, period, "school_id", "course_id")
    user_school = School.__table__.alias("user_school")
    rural_users = or_(user_school.c.kind == "rural", user_school.c.rural.is_(True))
    base = (
        select(Course.school_id)
        .select_from(rows)
        .join(Course, Course.id == rows.c.course_id)
        .join(user_school, user_school.c.id == rows.c.school_id)
        .where(rural_users, Course.school_id.in_(schools))
    )
    reached: dict[int, int] = dict(
        session.execute(base.add_columns(func.count(distinct(rows.c.school_id))).group_by(Course.school_id)).all()
    )
    counts: dict[int, Counts] = defaultdict(Counts)
    for school_id, kind, n in session.execute(
        base.add_columns(rows.c.kind, func.sum(rows.c.count)).group_by(Course.school_id, rows.c.kind)
    ):
        counts[school_id].add(kind, int(n))
    local = set(session.scalars(select(School.id).where(School.id.in_(schools), _in_area(scope))))
    out = []
    for school_id, school in schools.items():
        # A supervisor sees the famous schools of the area, and those whose lessons reached it.
        if scope.area and not reached.get(school_id) and school_id not in local:
            continue
        out.append(
            Contribution(
                school,
                courses.get(school_id, 0),
                lessons.get(school_id, 0),
                reached.get(school_id, 0),
                counts[school_id].mask(mask_below, school_id == scope.own_school_id),
            )
        )
    out.sort(key=lambda c: (-c.rural.values["play"], -c.courses, c.school.name))
    return out


# -- pairings ------------------------------------------------------------------------------


@dataclass
class PairingFlow:
    famous: School
    rural: School
    subscribed: bool  # the rural school subscribes to everything of the famous one
    courses_used: int  # the famous school's courses used at the rural school in the period
    counts: Counts


def pairings(
    session: Session, scope: Scope, query: ReachQuery, *, mask_below: int, today: date | None = None
) -> list[PairingFlow]:
    """Each famous–rural pair of the area with what flowed across it in the period."""
    period = period_of(query, today)
    statement = select(Pairing.id, Pairing.famous_school_id, Pairing.rural_school_id)
    if scope.course_school_id is not None:
        statement = statement.where(Pairing.famous_school_id == scope.course_school_id)
    area = _school_ids_filter(scope, query)
    if area is not None:
        statement = statement.where(Pairing.rural_school_id.in_(area))
    if query.school:
        statement = statement.where(
            or_(Pairing.rural_school_id == query.school, Pairing.famous_school_id == query.school)
        )
    pairs = session.execute(statement).all()
    if not pairs:
        return []
    ids = {p.famous_school_id for p in pairs} | {p.rural_school_id for p in pairs}
    schools = {s.id: s for s in session.scalars(select(School).where(School.id.in_(ids)))}
    paired_subs = set(
        session.execute(
            select(Subscription.school_id, Subscription.paired_school_id).where(Subscription.kind == "paired")
        ).all()
    )
    rows = _period_union(scope, query, period, "school_id", "course_id")
    flow = (
        select(Pairing.id)
        .select_from(rows)
        .join(Course, Course.id == rows.c.course_id)
        .join(
            Pairing,
            and_(Pairing.rural_school_id == rows.c.school_id, Pairing.famous_school_id == Course.school_id),
        )
        .where(Pairing.id.in_([p.id for p in pairs]))
    )
    used: dict[int, int] = dict(
        session.execute(flow.add_columns(func.count(distinct(rows.c.course_id))).group_by(Pairing.id)).all()
    )
    counts: dict[int, Counts] = defaultdict(Counts)
    for pairing_id, kind, n in session.execute(
        flow.add_columns(rows.c.kind, func.sum(rows.c.count)).group_by(Pairing.id, rows.c.kind)
    ):
        counts[pairing_id].add(kind, int(n))
    out = [
        PairingFlow(
            schools[p.famous_school_id],
            schools[p.rural_school_id],
            (p.rural_school_id, p.famous_school_id) in paired_subs,
            used.get(p.id, 0),
            counts[p.id].mask(mask_below, scope.own_school_id in (p.rural_school_id, p.famous_school_id)),
        )
        for p in pairs
    ]
    out.sort(key=lambda f: (f.famous.name, f.rural.name))
    return out


# -- school servers ---------------------------------------------------------------------


@dataclass
class ServerFreshness:
    server: sync_servers.SchoolServer
    behind: bool  # the school has not applied the last manifest this hub issued it


def school_servers(session: Session, scope: Scope, query: ReachQuery, *, silent_days: int) -> list[ServerFreshness]:
    """The area's school servers: last contact, how fresh their mirror is, storage, silence."""
    require_area(scope)
    ids = set(session.scalars(select(School.id).where(*_schools_where(scope, query, rural=False))))
    found = [s for s in sync_servers.list_school_servers(session, silent_days) if s.school.id in ids]
    return [
        ServerFreshness(
            s,
            s.manifest_issued is not None and (s.report is None or s.report.applied_version < s.manifest_issued),
        )
        for s in found
    ]


def counties(session: Session, scope: Scope) -> list[str]:
    """The counties of the area's schools, for the filter's choices."""
    where = [_in_area(scope)] if scope.area else []
    return [
        c
        for c in session.scalars(
            select(School.county).where(*where, School.county != "").distinct().order_by(School.county)
        )
    ]
