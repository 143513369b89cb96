"""The reach dashboard's roll-ups, scope and masking, through the services and the API."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.errors import Invalid
from hub.reach import rollup
from hub.reach.dashboard import Period
from hub.reach.models import PendingDay, ReachDay, ReachSchoolDay, ReachSchoolWeek, ReachWeek, UsageCount
from tests.unit.reach.conftest import TODAY, World, add_counts, roll

MONDAY = rollup.week_of(TODAY)


def _get(client: FlaskClient, auth: dict[str, str], path: str = "/api/v1/reach", **params: Any) -> Any:
    answer = client.get(path, query_string={"to": TODAY.isoformat(), **params}, headers=auth)
    assert answer.status_code == 200, answer.json
    return answer.json


def _rows(answer: Any) -> dict[str, tuple[Any, Any, Any]]:
    return {r["label"]: (r["plays"], r["downloads"], r["zips"]) for r in answer["rows"]}


# -- roll-ups ------------------------------------------------------------------------------


def test_period_splits_into_whole_weeks_and_edge_days() -> None:
    period = Period(date(2026, 10, 29), TODAY)  # Thursday .. Wednesday
    weeks, edges = period.split()
    assert weeks == (date(2026, 11, 2), date(2026, 11, 16))
    assert edges == [(date(2026, 10, 29), date(2026, 11, 1)), (date(2026, 11, 23), TODAY)]
    assert Period(date(2026, 11, 2), date(2026, 11, 8)).split() == ((date(2026, 11, 2), date(2026, 11, 2)), [])
    assert Period(TODAY, TODAY).split() == (None, [(TODAY, TODAY)])


def test_rollup_sums_materials_and_sources_and_running_it_twice_changes_nothing(db: Session, world: World) -> None:
    one, two = world.lessons
    day = MONDAY - timedelta(days=3)  # the week before
    add_counts(
        db, [(day, world.tongwei, world.course, one, "play", 7), (MONDAY, world.tongwei, world.course, two, "play", 4)]
    )
    db.add(UsageCount(day=day, school_id=world.tongwei.id, course_id=world.course.id, lesson_id=one.id,
                      material_id=2, kind="play", source="lan", count=5))  # fmt: skip
    db.commit()
    first = roll(db)
    assert first.days == [day, MONDAY] and first.weeks == 2
    daily = sorted((r.day, r.lesson_id, r.count) for r in db.scalars(select(ReachDay)))
    assert daily == [(day, one.id, 12), (MONDAY, two.id, 4)]
    weekly = sorted((r.week, r.count) for r in db.scalars(select(ReachWeek)))
    assert weekly == [(rollup.week_of(day), 12), (MONDAY, 4)]
    # The per-school grain: the same sums without the course, a row per school, kind and day or week.
    assert [(r.day, r.count) for r in db.scalars(select(ReachSchoolDay).order_by(ReachSchoolDay.day))] == [
        (day, 12),
        (MONDAY, 4),
    ]
    assert sorted((r.week, r.count) for r in db.scalars(select(ReachSchoolWeek))) == weekly
    assert roll(db).days == []  # nothing changed: nothing re-rolled
    rollup.roll_up(db, check_days=None, today=TODAY)
    assert sorted((r.week, r.count) for r in db.scalars(select(ReachWeek))) == weekly

    # A count that grows without a mark is found by the safety run, and only its day is re-rolled.
    db.execute(update(UsageCount).where(UsageCount.day == MONDAY).values(count=UsageCount.count + 3))
    db.commit()
    assert rollup.roll_up(db, check_days=None, today=TODAY).days == []  # no mark, no check
    assert rollup.roll_up(db, check_days=30, today=TODAY).days == [MONDAY]
    assert db.scalar(select(ReachWeek.count).where(ReachWeek.week == MONDAY)) == 7

    # A marked day is re-rolled by the run the mark enqueues, and the mark goes.
    add_counts(db, [(MONDAY, world.longxi, world.course, one, "download", 2)])
    rollup.mark_days(db, [MONDAY])
    db.commit()
    assert db.scalar(select(func.count()).select_from(PendingDay)) == 1
    assert rollup.roll_up(db, check_days=None, today=TODAY).days == [MONDAY]
    assert db.scalar(select(func.count()).select_from(PendingDay)) == 0
    assert db.scalar(select(func.sum(ReachWeek.count)).where(ReachWeek.week == MONDAY)) == 9
    assert db.scalar(select(func.sum(ReachSchoolWeek.count)).where(ReachSchoolWeek.week == MONDAY)) == 9

    # Raw rows gone (deleted by hand): the day rolls up to nothing.
    db.execute(UsageCount.__table__.delete().where(UsageCount.day == day))
    db.commit()
    assert roll(db).days == [day]
    assert db.scalar(select(func.count()).select_from(ReachDay).where(ReachDay.day == day)) == 0
    assert db.scalar(select(func.count()).select_from(ReachSchoolDay).where(ReachSchoolDay.day == day)) == 0


def test_the_school_grain_and_the_course_grain_give_the_same_answers(
    client: FlaskClient, db: Session, world: World
) -> None:
    """Without a course filter the per-school tables answer; with one the course-grain tables do."""
    one, two = world.lessons
    start = TODAY - timedelta(days=27)
    rows = []
    for n, day in enumerate((start, start + timedelta(days=3), MONDAY - timedelta(days=9), MONDAY, TODAY)):
        rows += [
            (day, world.tongwei, world.course, one, "play", 5 + n),
            (day, world.tongwei, world.course, two, "download", 6 + n),
            (day, world.longxi, world.course, one, "play", 7 + n),
        ]
    add_counts(db, rows)
    roll(db)
    # Every count is of the math course, so "subject=math" (course grain) must give what no filter gives.
    for group_by in ("county", "school", "week"):
        for who in (world.admin, world.county):
            plain, by_subject = (
                _get(client, who, group_by=group_by),
                _get(client, who, group_by=group_by, subject="math"),
            )
            assert plain["rows"] == by_subject["rows"] and plain["trend"] == by_subject["trend"], (group_by, who)
    answer = _get(client, world.admin, group_by="school")
    assert _rows(answer) == {"山村小学": (35, 40, 0), "河边小学": (45, 0, 0)}
    assert sum(w["plays"] for w in answer["trend"]) == 80
    # The trend from the groups' own statement matches the trend asked for alone.
    assert answer["trend"] == _get(client, world.admin, group_by="week")["trend"]


def test_a_period_adds_whole_weeks_and_edge_days(client: FlaskClient, db: Session, world: World) -> None:
    one = world.lessons[0]
    start = TODAY - timedelta(days=27)
    add_counts(db, [
        (start - timedelta(days=1), world.tongwei, world.course, one, "play", 100),  # before the period
        (start, world.tongwei, world.course, one, "play", 10),  # an edge day (Thursday)
        (MONDAY - timedelta(days=7), world.tongwei, world.course, one, "play", 20),  # a whole week
        (MONDAY - timedelta(days=8), world.tongwei, world.course, one, "play", 30),  # a whole week (Sunday)
        (TODAY, world.tongwei, world.course, one, "play", 40),  # an edge day
        (TODAY + timedelta(days=1), world.tongwei, world.course, one, "play", 100),  # after
    ])  # fmt: skip
    roll(db)
    answer = _get(client, world.admin, group_by="school")
    assert answer["from"] == start.isoformat() and answer["to"] == TODAY.isoformat()
    assert _rows(answer) == {"山村小学": (100, 0, 0)}
    trend = {w["week"]: w["plays"] for w in _get(client, world.admin, group_by="week")["trend"]}
    assert sum(trend.values()) == 100 and len(trend) == 5
    assert trend[(MONDAY - timedelta(days=7)).isoformat()] == 20


# -- scope ----------------------------------------------------------------------------------


@pytest.fixture
def counted(db: Session, world: World) -> World:
    one, two = world.lessons
    add_counts(db, [
        (TODAY, world.tongwei, world.course, one, "play", 12),
        (TODAY, world.tongwei, world.course, two, "download", 6),
        (TODAY, world.tongwei, world.course, 0, "zip", 3),
        (TODAY, world.longxi, world.course, one, "play", 9),
        (TODAY, world.zhaojue, world.course, one, "play", 8),
        (TODAY, world.famous, world.course, one, "play", 2),
        (TODAY, world.longxi, world.other_course, 0, "download", 20),
    ])  # fmt: skip
    roll(db)
    return world


def test_a_county_supervisor_sees_nothing_of_another_county(client: FlaskClient, counted: World) -> None:
    w = counted
    assert _rows(_get(client, w.county, group_by="school")) == {"山村小学": (12, 6, None)}
    assert _rows(_get(client, w.county, group_by="county")) == {"通渭县": (12, 6, None)}
    assert _get(client, w.county, group_by="school", school=w.longxi.id)["rows"] == []
    assert _get(client, w.county, group_by="school", county="陇西县")["rows"] == []
    coverage = _get(client, w.county, "/api/v1/reach/coverage")
    assert [i["school"]["name"] for i in coverage["items"]] == ["山村小学"]
    pairs = _get(client, w.county, "/api/v1/reach/pairings")["items"]
    assert [(p["famous"]["name"], p["rural"]["name"], p["counts"]["plays"]) for p in pairs] == [
        ("海淀实验小学", "山村小学", 12)
    ]
    famous = _get(client, w.county, "/api/v1/reach/contribution")["items"]
    assert [(c["school"]["name"], c["schools_reached"], c["rural"]["plays"]) for c in famous] == [
        ("海淀实验小学", 1, 12)
    ]
    text = client.get("/reach/reach.csv", query_string={"to": TODAY, "group_by": "school"}, headers=w.county).text
    assert "山村小学" in text and "河边小学" not in text and "高山小学" not in text
    for table in ("coverage", "contribution", "pairings", "servers"):
        text = client.get(f"/reach/{table}.csv", query_string={"to": TODAY}, headers=w.county).text
        assert "河边小学" not in text and "高山小学" not in text, table


def test_a_province_supervisor_sees_its_counties_and_an_admin_everything(client: FlaskClient, counted: World) -> None:
    w = counted
    assert set(_rows(_get(client, w.province, group_by="county"))) == {"通渭县", "陇西县"}
    assert set(_rows(_get(client, w.admin, group_by="county"))) == {"通渭县", "陇西县", "昭觉县", "海淀区"}
    schools = [i["school"]["name"] for i in _get(client, w.province, "/api/v1/reach/coverage")["items"]]
    assert sorted(schools) == sorted(["河边小学", "山村小学"])


def test_uploaders_see_their_own_courses_only_and_teachers_nothing(client: FlaskClient, counted: World) -> None:
    w = counted
    courses = _rows(_get(client, w.uploader, group_by="course"))
    assert courses == {"一元二次方程": (12 + 9 + 8 + 2, 6, None)}
    assert client.get("/api/v1/reach/coverage", headers=w.uploader).status_code == 403
    assert client.get("/api/v1/reach", headers=w.teacher).status_code == 403
    assert client.get("/reach/reach.csv", headers=w.teacher).status_code == 403
    assert client.get("/api/v1/reach").status_code == 401


def test_small_counts_are_masked_outside_the_schools_own_rows(client: FlaskClient, counted: World) -> None:
    w = counted
    admin = _get(client, w.admin, group_by="school")
    assert _rows(admin)["海淀实验小学"] == (None, 0, 0)  # 2 plays: masked, even for an admin
    assert next(r for r in admin["rows"] if r["label"] == "海淀实验小学")["masked"] == ["play"]
    assert _rows(admin)["山村小学"] == (12, 6, None)  # 3 ZIPs masked
    # The famous school's uploader sees its own school's rows as they are.
    assert _rows(_get(client, w.uploader, group_by="school"))["海淀实验小学"] == (2, 0, 0)
    assert _rows(_get(client, w.uploader, group_by="school"))["山村小学"] == (12, 6, None)
    text = client.get("/reach/reach.csv", query_string={"to": TODAY, "group_by": "school"}, headers=w.admin).text
    assert "山村小学,甘肃省 定西市 通渭县,12,6,< 5" in text


def test_lessons_need_a_course_and_periods_must_make_sense(client: FlaskClient, counted: World) -> None:
    w = counted
    assert client.get("/api/v1/reach", query_string={"group_by": "lesson"}, headers=w.admin).status_code == 422
    lessons = _rows(_get(client, w.admin, group_by="lesson", course=w.course.id))
    assert lessons["1. 配方法"] == (12 + 9 + 8 + 2, 0, 0)
    assert lessons["2. 公式法"] == (0, 6, 0)
    bad = client.get("/api/v1/reach", query_string={"from": "2026-12-01", "to": "2026-11-01"}, headers=w.admin)
    assert bad.status_code == 422 and "from" in bad.json["error"]["fields"]


# -- export -----------------------------------------------------------------------------


def test_csv_starts_with_a_bom_and_keeps_chinese(client: FlaskClient, counted: World) -> None:
    answer = client.get(
        "/reach/reach.csv", query_string={"to": TODAY, "group_by": "school", "lang": "zh"}, headers=counted.admin
    )
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    assert answer.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(answer.data.decode("utf-8-sig"))))
    assert rows[1][2] in {"山村小学", "河边小学", "高山小学", "海淀实验小学", "城关小学"}
    coverage = client.get("/reach/coverage.csv", query_string={"lang": "zh"}, headers=counted.admin)
    assert coverage.data.startswith(b"\xef\xbb\xbf")
    lines = {row[0]: row for row in csv.reader(io.StringIO(coverage.data.decode("utf-8-sig")))}
    assert lines["山村小学"][5] == "数学 九年级"


def test_coverage_counts_what_the_subscriptions_bring(client: FlaskClient, counted: World) -> None:
    items = {i["school"]["name"]: i for i in _get(client, counted.admin, "/api/v1/reach/coverage")["items"]}
    tongwei, longxi, zhaojue = items["山村小学"], items["河边小学"], items["高山小学"]
    assert tongwei["available"] == [{"subject": "math", "grade": 9, "courses": 1}]
    assert {"subject": "math", "grade": 9, "courses": 0} not in tongwei["gaps"]
    assert longxi["available"] == [{"subject": "chinese", "grade": 3, "courses": 1}]
    assert zhaojue["available"] == [] and zhaojue["covered"] == 0 and len(zhaojue["gaps"]) == zhaojue["cells"]


# -- the supervisor role ---------------------------------------------------------------


def test_supervisors_need_an_area(db: Session, world: World) -> None:
    nowhere = accounts.create_school(db, "无名学校", "urban", "", "")
    with pytest.raises(Invalid):
        accounts.create_user(db, "s@x.cn", nowhere, "supervisor")
    with pytest.raises(Invalid):
        accounts.create_user(db, "t2@x.cn", world.tongwei, "teacher", county="通渭县")
    user = accounts.create_user(db, "s2@x.cn", world.tongwei, "supervisor")  # the school's own region and county
    assert user.supervised_area == ("甘肃省 定西市", "通渭县")


# -- pages ------------------------------------------------------------------------------------

PAGES = ("/reach/", "/reach/coverage", "/reach/contribution", "/reach/servers", "/reach/pairings")


def test_the_pages_show_the_area_only_light_and_in_chinese(client: FlaskClient, counted: World) -> None:
    from tests.support.chinese import english_words

    for path in PAGES:
        for params in ({"lang": "zh"}, {"lang": "zh", "group_by": "school"}, {"lang": "en"}):
            answer = client.get(path, query_string={"to": TODAY, **params}, headers=counted.county)
            assert answer.status_code == 200, (path, answer.text[:300])
            html = answer.text
            assert len(answer.data) <= 30 * 1024, (path, len(answer.data))
            assert "河边小学" not in html and "高山小学" not in html and "陇西县" not in html, path
            if params["lang"] == "zh":
                assert english_words(html) == [], (path, english_words(html))
    drill = client.get("/reach/", query_string={"to": TODAY, "group_by": "school"}, headers=counted.county).text
    assert "山村小学" in drill and "<svg" in drill
    assert client.get("/reach/coverage", headers=counted.uploader).status_code == 403
    assert client.get("/reach/").status_code == 302  # to the sign-in page
