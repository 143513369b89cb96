"""The per-area roll-ups (reach_county_*, reach_subject_*) give exactly what the raw rows give.

Each question the area tables answer (a whole area by county or per week, under each
scope, with the county, subject and grade filters), and the same by school, is asked through the dashboard's
service and compared with a sum over the raw usage rows joined to the schools and courses
as they are now, masking included; then again after a school moves county, a course
changes subject and grades, a course and a school are deleted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.accounts.models import School
from hub.catalog.models import Course, Lesson
from hub.reach import dashboard
from hub.reach.dashboard import ReachQuery, Scope
from hub.reach.models import (
    ReachCountyDay,
    ReachCountyWeek,
    ReachSubjectDay,
    ReachSubjectWeek,
    RolledArea,
    RolledCourse,
    UsageCount,
)
from hub.reach.rollup import week_of
from tests.unit.reach.conftest import TODAY, World, add_counts, roll

MASK = 5
ADMIN = Scope(everything=True)
SCOPES = {
    "admin": ADMIN,
    "province": Scope(region="甘肃省"),
    "city": Scope(region="甘肃省 定西市"),
    "county": Scope(region="甘肃省 定西市", county="通渭县"),
    "lanzhou 城关区": Scope(region="甘肃省 兰州市", county="城关区"),
}
QUERIES = [
    {},
    {"subject": "math"},
    {"subject": "chinese"},
    {"grade": 8},
    {"grade": 3},
    {"subject": "math", "grade": 9},
    {"subject": "math", "grade": 3},
    {"county": "通渭县"},
    {"county": "城关区"},
    {"county": "城关区", "subject": "math"},
    {"from": TODAY - timedelta(days=363)},  # a year: whole weeks and both edges
    {"from": TODAY - timedelta(days=2)},  # inside one week: edge days only
    {"from": TODAY - timedelta(days=50), "to": TODAY - timedelta(days=30), "grade": 7},
]


def _expected(db: Session, scope: Scope, query: ReachQuery) -> tuple[dict[Any, Counter[str]], dict[Any, Counter[str]]]:
    """The raw rows summed per group and per week, filtered as the dashboard filters, by the schools and courses now."""
    period = dashboard.period_of(query, TODAY)
    schools = {s.id: s for s in db.scalars(select(School))}
    courses = {c.id: c for c in db.scalars(select(Course))}
    groups: dict[Any, Counter[str]] = defaultdict(Counter)
    trend: dict[Any, Counter[str]] = defaultdict(Counter)
    for row in db.scalars(select(UsageCount)):
        school, course = schools.get(row.school_id), courses.get(row.course_id)
        if not period.start <= row.day <= period.end:
            continue
        if scope.area and (
            school is None
            or not (school.region == scope.region or school.region.startswith(scope.region + " "))
            or (scope.county and school.county != scope.county)
        ):
            continue
        if query.county is not None and (school is None or school.county != query.county):
            continue
        if query.subject and (course is None or course.subject != query.subject):
            continue
        if query.grade and (course is None or not course.grades_mask & (1 << query.grade)):
            continue
        key = {
            "county": (school.county if school else ""),
            "school": row.school_id,
            "week": week_of(row.day),
        }[query.group_by]
        groups[key][row.kind] += row.count
        trend[week_of(row.day)][row.kind] += row.count
    return groups, trend


def _masked(counts: Counter[str]) -> set[str]:
    return {kind for kind, n in counts.items() if 0 < n < MASK}


def _check_everything(db: Session) -> int:
    """Every scope × filter × grouping against the raw rows; returns how many answers had counts.

    By county and per week the area tables answer; by school (a county's schools, the
    questions of the covering school indexes) the per-school and course-grain tables.
    """
    nonempty = 0
    for name, scope in SCOPES.items():
        for params in QUERIES:
            for group_by in ("county", "week", "school"):
                query = ReachQuery.model_validate({"to": TODAY, **params, "group_by": group_by})
                assert dashboard._grain(scope, query, group_by) == ("area" if group_by != "school" else (
                    "course" if "subject" in params or "grade" in params else "school"
                ))  # fmt: skip
                table = dashboard.reach(db, scope, query, mask_below=MASK, today=TODAY)
                groups, trend = _expected(db, scope, query)
                what = (name, params, group_by)
                got = {
                    r.key: ({k: v for k, v in r.counts.values.items() if v}, set(r.counts.masked)) for r in table.rows
                }
                got = {k: v for k, v in got.items() if v[0]}  # the week rows list empty weeks too
                assert got == {k: (dict(c), _masked(c)) for k, c in groups.items() if sum(c.values())}, what
                got_trend = {w: {k: v for k, v in c.values.items() if v} for w, c in table.trend}
                assert {w: c for w, c in got_trend.items() if c} == {w: dict(c) for w, c in trend.items()}, what
                assert {w: set(c.masked) for w, c in table.trend if c.total} == {
                    w: _masked(c) for w, c in trend.items()
                }, what
                nonempty += bool(groups)
    return nonempty


@pytest.fixture
def province(db: Session, world: World) -> World:
    """Besides the world: 城关区 in two cities, a course for grades 7–9, an anonymous visitor, a year of counts."""
    lanzhou = accounts.create_school(db, "兰州一中", "urban", "甘肃省 兰州市", "城关区")
    dingxi = accounts.create_school(db, "定西城关小学", "rural", "甘肃省 定西市", "城关区")
    db.flush()
    junior = Course(
        school_id=world.famous.id, title="初中几何", category="curriculum", subject="math",
        grades_mask=(1 << 7) | (1 << 8) | (1 << 9), language="zh", license="CC-BY-4.0", status="published",
    )  # fmt: skip
    db.add(junior)
    db.flush()
    lesson = Lesson(course_id=junior.id, position=1, title="三角形")
    db.add(lesson)
    db.commit()
    one = world.lessons[0]
    plan: list[tuple[School | int, Course, Lesson | int]] = [
        (world.tongwei, world.course, one),
        (world.longxi, world.other_course, 0),
        (world.zhaojue, junior, lesson),
        (lanzhou, junior, lesson),
        (dingxi, world.course, one),
        (dingxi, junior, lesson),
        (world.famous, world.other_course, 0),
        (0, world.course, one),  # an anonymous visitor of the upstream
    ]
    rows = []
    # Days over a year and a bit: inside and outside each period, on every weekday; counts small and large.
    for n, back in enumerate(range(-3, 380, 5)):
        school, course, lsn = plan[n % len(plan)]
        day = TODAY - timedelta(days=back)
        kind = ("play", "download", "zip", "play")[n % 4]
        rows.append((day, school, course, 0 if kind == "zip" else lsn, kind, 1 + (n * 7) % 13))
        rows.append((day, plan[(n + 3) % len(plan)][0], junior, lesson, "play", 3 + n % 4))
    add_counts(db, rows)
    roll(db)
    return world


def test_area_tables_give_what_the_raw_rows_give(db: Session, province: World) -> None:
    assert _check_everything(db) > 90
    # Same-named counties of two cities stay apart: 兰州's 城关区 is not 定西's.
    lanzhou = dashboard.reach(db, SCOPES["lanzhou 城关区"], ReachQuery(to=TODAY), mask_below=MASK, today=TODAY)
    city = dashboard.reach(db, SCOPES["city"], ReachQuery(to=TODAY), mask_below=MASK, today=TODAY)
    admin = dashboard.reach(db, ADMIN, ReachQuery(to=TODAY, county="城关区"), mask_below=MASK, today=TODAY)
    assert {r.key for r in lanzhou.rows} == {"城关区"} == {r.key for r in admin.rows}
    both = sum(r.counts.values["play"] for r in admin.rows)
    assert 0 < sum(r.counts.values["play"] for r in lanzhou.rows) < both
    assert 0 < sum(r.counts.values["play"] for r in city.rows if r.key == "城关区") < both


def _area_tables(db: Session) -> list[list[tuple[Any, ...]]]:
    return [
        sorted(tuple(r) for r in db.execute(select(*t.__table__.c)))
        for t in (ReachCountyDay, ReachCountyWeek, ReachSubjectDay, ReachSubjectWeek, RolledArea, RolledCourse)
    ]


def test_a_moved_school_or_a_changed_course_re_rolls_what_it_left_and_joined(db: Session, province: World) -> None:
    w = province
    before = _area_tables(db)
    again = roll(db)
    assert (again.days, again.moved_schools, again.changed_courses) == ([], 0, 0)
    assert _area_tables(db) == before  # running it again changes nothing

    # 山村小学 moves from 通渭县 to 陇西县: its counts move, over every day.
    db.execute(update(School).where(School.id == w.tongwei.id).values(county="陇西县"))
    db.commit()
    moved = roll(db)
    assert (moved.days, moved.moved_schools, moved.changed_courses) == ([], 1, 0)
    _check_everything(db)

    # The junior course now teaches grades 8 and 9 of science; the chinese course is deleted.
    db.execute(
        update(Course).where(Course.title == "初中几何").values(subject="science", grades_mask=(1 << 8) | (1 << 9))
    )
    db.execute(delete(Lesson).where(Lesson.course_id == w.other_course.id))
    db.execute(delete(Course).where(Course.id == w.other_course.id))
    db.commit()
    changed = roll(db)
    assert (changed.moved_schools, changed.changed_courses) == (0, 2)
    _check_everything(db)
    assert dashboard.reach(db, ADMIN, ReachQuery(to=TODAY, subject="chinese"), mask_below=MASK, today=TODAY).rows == []

    # A school deleted: its counts stay, under no county (as the raw rows joined to the schools give).
    gone = accounts.create_school(db, "撤并小学", "rural", "甘肃省 定西市", "通渭县")
    db.commit()
    add_counts(db, [(TODAY, gone, w.course, w.lessons[0], "play", 9)])
    first = roll(db)
    assert first.days == [TODAY] and first.moved_schools == 0  # new, rolled under its area from the start
    _check_everything(db)
    db.execute(delete(School).where(School.id == gone.id))
    db.commit()
    assert roll(db).moved_schools == 1
    _check_everything(db)
    unknown = dashboard.reach(db, ADMIN, ReachQuery(to=TODAY), mask_below=MASK, today=TODAY)
    assert next(r for r in unknown.rows if r.key == "").counts.values["play"] >= 9

    # New counts of a school the roll-up has not seen yet, rolled in the same run.
    later = accounts.create_school(db, "新建小学", "rural", "四川省 凉山州", "昭觉县")
    db.commit()
    add_counts(db, [(TODAY - timedelta(days=1), later, w.course, w.lessons[0], "download", 4)])
    roll(db)
    _check_everything(db)
    assert db.scalar(select(func.count()).select_from(RolledArea).where(RolledArea.school_id == later.id)) == 1


def test_the_api_answers_a_province_from_the_area_tables(client: Any, db: Session, province: World) -> None:
    """Through HTTP: a province supervisor's counties and trend with a subject filter, as the raw rows give."""
    answer = client.get(
        "/api/v1/reach", query_string={"to": TODAY.isoformat(), "subject": "math"}, headers=province.province
    )
    assert answer.status_code == 200, answer.json
    groups, trend = _expected(db, SCOPES["province"], ReachQuery(to=TODAY, subject="math"))
    plays = {r["label"]: r["plays"] for r in answer.json["rows"]}
    expected = {k: (c["play"] if not 0 < c["play"] < MASK else None) for k, c in groups.items()}
    assert plays == expected and set(plays) <= {"通渭县", "陇西县", "城关区"}
    assert sum(t["plays"] or 0 for t in answer.json["trend"]) <= sum(c["play"] for c in trend.values())
