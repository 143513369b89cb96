"""A small province for the reach dashboard: one famous school, rural schools in three counties, counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.accounts.models import School
from hub.catalog.models import Course, Lesson
from hub.reach import rollup
from hub.reach.models import UsageCount
from hub.sync.models import Subscription
from tests.conftest import Accounts

# A Wednesday: the 28-day period ending here starts on a Thursday, so it has edge days and whole weeks.
TODAY = date(2026, 11, 25)


@dataclass
class World:
    famous: School
    tongwei: School  # 山村小学, 甘肃省 定西市 通渭县
    longxi: School  # 河边小学, 甘肃省 定西市 陇西县
    zhaojue: School  # 高山小学, 四川省 凉山州 昭觉县
    course: Course  # the famous school's, math grade 9, two lessons
    lessons: list[Lesson]
    other_course: Course  # an urban school's, chinese grade 3
    admin: dict[str, str]
    county: dict[str, str]  # supervisor of 通渭县
    province: dict[str, str]  # supervisor of 甘肃省
    uploader: dict[str, str]  # of the famous school
    teacher: dict[str, str]


def add_counts(db: Session, rows: list[tuple[date, School | int, Course, Lesson | int, str, int]]) -> None:
    for day, school, course, lesson, kind, count in rows:
        db.add(
            UsageCount(
                day=day,
                school_id=school if isinstance(school, int) else school.id,
                course_id=course.id,
                lesson_id=lesson if isinstance(lesson, int) else lesson.id,
                material_id=0 if kind == "zip" else 1,
                kind=kind,
                source="hub",
                count=count,
            )
        )
    db.commit()


@pytest.fixture
def world(db: Session, make: Accounts) -> World:
    famous = accounts.create_school(db, "海淀实验小学", "famous", "北京市", "海淀区")
    tongwei = accounts.create_school(db, "山村小学", "rural", "甘肃省 定西市", "通渭县")
    longxi = accounts.create_school(db, "河边小学", "rural", "甘肃省 定西市", "陇西县")
    zhaojue = accounts.create_school(db, "高山小学", "rural", "四川省 凉山州", "昭觉县")
    urban = accounts.create_school(db, "城关小学", "urban", "甘肃省 定西市", "通渭县")
    bureau = accounts.create_school(db, "定西市教育局", "urban", "甘肃省 定西市", "")
    db.flush()
    course = Course(
        school_id=famous.id, title="一元二次方程", category="curriculum", subject="math", grades_mask=1 << 9,
        language="zh", license="CC-BY-4.0", status="published",
    )  # fmt: skip
    other = Course(
        school_id=urban.id, title="古诗两首", category="curriculum", subject="chinese", grades_mask=1 << 3,
        language="zh", license="CC-BY-4.0", status="published",
    )  # fmt: skip
    db.add_all([course, other])
    db.flush()
    lessons = [Lesson(course_id=course.id, position=i, title=t) for i, t in enumerate(("配方法", "公式法"), 1)]
    db.add_all([*lessons, Lesson(course_id=other.id, position=1, title="静夜思")])
    accounts.pair_schools(db, famous, tongwei)
    db.add(Subscription(school_id=tongwei.id, kind="paired", paired_school_id=famous.id))
    db.add(Subscription(school_id=longxi.id, kind="subject", subject="chinese", grade_min=1, grade_max=6))
    db.commit()
    return World(
        famous, tongwei, longxi, zhaojue, course, lessons, other,
        admin=make.bearer(make.user("admin@hub.cn", bureau, "admin")),
        county=make.bearer(accounts.create_user(
            db, "tw@dx.gov.cn", bureau, "supervisor", None, region="甘肃省 定西市", county="通渭县"
        )),
        province=make.bearer(accounts.create_user(db, "gs@gs.gov.cn", bureau, "supervisor", None, region="甘肃省")),
        uploader=make.bearer(make.user("up@haidian.cn", famous, "uploader")),
        teacher=make.bearer(make.user("t@shancun.cn", tongwei, "teacher")),
    )  # fmt: skip


def roll(db: Session) -> rollup.RollupResult:
    return rollup.roll_up(db, check_days=None, everything=True, today=TODAY)
