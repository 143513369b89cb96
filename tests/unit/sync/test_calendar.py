"""Push by the teaching calendar: which lessons are due, and the order a pull fetches them in."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.catalog import services as catalog
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.errors import HubError, Invalid, NotFound
from hub.sync import calendar, services
from hub.sync import manifest as mf
from hub.sync.calendar import DUE, LATER, OTHER, TAUGHT, UNDATED, Node, Span
from hub.sync.client import _order_missing, parse_size
from hub.sync.services import Plan
from hub.textbooks.models import Textbook, TextbookNode
from tests.conftest import COURSE, Accounts
from tests.support.chinese import english_words

# 人教版 数学 三年级上册, cut down: chapter 1 has two sections, the first with two 课时 a week
# apart, the second dated as a whole (its 课时 are not); chapter 2 has one dated 课时 and one
# not; chapter 3 has no week anywhere (a 整理和复习 the school fits in where it can).
BOOK = [
    Node("1", None, None),
    Node("1.1", "1", None),
    Node("1.1.1", "1.1", 1),
    Node("1.1.2", "1.1", 2),
    Node("1.2", "1", 3),
    Node("1.2.1", "1.2", None),
    Node("1.2.2", "1.2", None),
    Node("2", None, None),
    Node("2.1", "2", 5),
    Node("2.2", "2", None),
    Node("3", None, None),
    Node("3.1", "3", None),
]
START = date(2026, 9, 1)  # a Tuesday: weeks count from the term's first day, not from Mondays


def test_teaching_week_counts_from_the_terms_first_day() -> None:
    assert calendar.teaching_week(START, START) == 1
    assert calendar.teaching_week(date(2026, 9, 7), START) == 1
    assert calendar.teaching_week(date(2026, 9, 8), START) == 2
    assert calendar.teaching_week(date(2026, 8, 31), START) == 0
    assert calendar.teaching_week(date(2026, 8, 1), START) < 0


def test_due_weeks_are_this_week_and_the_weeks_ahead() -> None:
    assert calendar.due_weeks(date(2026, 9, 8), START, 1) == Span(2, 3)
    assert calendar.due_weeks(date(2026, 9, 8), START, 0) == Span(2, 2)


def test_before_the_term_starts_its_first_weeks_are_due() -> None:
    assert calendar.due_weeks(date(2026, 8, 20), START, 1) == Span(1, 2)
    assert calendar.due_weeks(date(2026, 3, 1), START, 2) == Span(1, 3)


def test_spans_of_sections_chapters_and_undated_nodes() -> None:
    spans = calendar.node_spans(BOOK)
    assert spans["1.1.1"] == Span(1, 1)
    assert spans["1.1"] == Span(1, 2)  # a section covering two 课时: taught from the first to the last
    assert spans["1"] == Span(1, 3)
    assert spans["1.2.1"] == Span(3, 3)  # no week of its own: its section's
    assert spans["2"] == Span(5, 5)
    assert spans["2.2"] == Span(5, 5)  # no week, its chapter's (which it has from 2.1)
    assert "3" not in spans and "3.1" not in spans  # no week anywhere: undated


def test_a_schools_own_weeks_override_the_file() -> None:
    spans = calendar.node_spans(BOOK, {"2.1": 2, "1.1.2": None, "3.1": 7})
    assert spans["2.1"] == Span(2, 2)
    assert spans["2"] == Span(2, 2)
    assert spans["1.1"] == Span(1, 1)  # 1.1.2 taken off this school's calendar
    assert "1.1.2" in spans and spans["1.1.2"] == Span(1, 1)  # ...goes with its section
    assert spans["3"] == Span(7, 7)


def _ranks(today: date, ahead: int = 1, overrides: dict[str, int | None] | None = None) -> dict[str, tuple[int, int]]:
    spans = calendar.node_spans(BOOK, overrides)
    schedule = calendar.Schedule({"book": spans}, {"book": calendar.due_weeks(today, START, ahead)})
    return {n.key: schedule.rank("book", n.key) for n in BOOK}


def test_in_week_two_weeks_two_and_three_are_due_first() -> None:
    ranks = _ranks(date(2026, 9, 9))
    due = sorted((rank, key) for key, rank in ranks.items() if rank[0] == DUE)
    assert [key for _rank, key in due] == ["1", "1.1", "1.1.2", "1.2", "1.2.1", "1.2.2"]
    assert ranks["1.1.1"] == (TAUGHT, -1)  # taught last week: after what is coming
    assert ranks["2.1"] == (LATER, 5)
    assert ranks["3.1"] == (UNDATED, 0)
    # A section taught over weeks 1-2 is still in use in week 2: due.
    assert ranks["1.1"][0] == DUE


def test_before_the_term_the_first_weeks_come_first() -> None:
    ranks = _ranks(date(2026, 8, 25))
    assert ranks["1.1.1"] == (DUE, 1) and ranks["1.1.2"] == (DUE, 2)
    assert ranks["1.2"] == (LATER, 3)


def test_after_the_last_week_nothing_is_due_and_the_latest_taught_come_first() -> None:
    ranks = _ranks(date(2027, 1, 25))
    assert not [key for key, rank in ranks.items() if rank[0] == DUE]
    assert sorted(["2.1", "1.2", "1.1.1"], key=ranks.__getitem__) == ["2.1", "1.2", "1.1.1"]
    assert ranks["3"] == (UNDATED, 0)


def test_lessons_of_books_without_a_calendar_rank_between_later_and_taught() -> None:
    schedule = calendar.Schedule({"book": calendar.node_spans(BOOK)}, {"book": Span(2, 3)})
    assert schedule.rank("another-book", "1") == (OTHER, 0)
    assert schedule.rank(None, None) == (OTHER, 0)
    assert schedule.rank("book", None) == (UNDATED, 0)
    assert schedule.rank("book", "no-such-node") == (UNDATED, 0)
    assert (LATER, 99) < (OTHER, 0) < (TAUGHT, -99) < (UNDATED, 0)
    assert not calendar.EMPTY and schedule


# -- ordering the files of a pull ------------------------------------------------------


def _file(name: str, size: int = 100) -> SimpleNamespace:
    return SimpleNamespace(sha256=name.ljust(64, "0"), size=size)


def _lesson(node: str | None, *files: SimpleNamespace, book: str = "book") -> SimpleNamespace:
    materials = [SimpleNamespace(original=f, renditions=[], subtitles=[]) for f in files]
    return SimpleNamespace(textbook=book if node else None, node=node, materials=materials)


def test_files_are_ranked_by_the_lessons_that_use_them() -> None:
    week1, week2, week5, shared, undated, other = (_file(n) for n in ("a", "b", "c", "d", "e", "f"))
    course = SimpleNamespace(
        lessons=[
            _lesson("1.1.1", week1),
            _lesson("3.1", undated),
            _lesson("2.1", week5, shared),
            _lesson("1.1.2", week2, shared),  # shared with a later lesson: fetched with this one
        ]
    )
    plain = SimpleNamespace(lessons=[_lesson(None, other)])
    missing = {f.sha256: f for f in (week1, week2, week5, shared, undated, other)}
    schedule = calendar.Schedule({"book": calendar.node_spans(BOOK)}, {"book": Span(1, 2)})
    ranked = calendar.ranked_files([plain, course], missing, schedule)
    assert [f for _rank, f in ranked] == [week1, week2, shared, week5, other, undated]
    assert [rank[0] for rank, _f in ranked] == [DUE, DUE, DUE, LATER, OTHER, UNDATED]


def test_a_byte_cap_takes_files_in_the_calendars_order(tmp_path: Path) -> None:
    due, later, big = _file("a", 400), _file("b", 300), _file("c", 5000)
    course = SimpleNamespace(lessons=[_lesson("2.1", later), _lesson("1.1.1", due), _lesson("3.1", big)])
    work = Plan(apply=[course], remove=[], missing={f.sha256: f for f in (due, later, big)})  # type: ignore[list-item]
    schedule = calendar.Schedule({"book": calendar.node_spans(BOOK)}, {"book": Span(1, 2)})
    first, then, capped = _order_missing(work, schedule, 700, tmp_path)
    assert list(first.values()) == [due] and list(then.values()) == [later] and capped == [big]
    # The cap stops at the first file that does not fit: nothing after it jumps the queue.
    first, then, capped = _order_missing(work, schedule, 500, tmp_path)
    assert list(first.values()) == [due] and not then and capped == [later, big]
    # Bytes already in a partial file do not count again.
    (tmp_path / f"{later.sha256}.part").write_bytes(b"x" * 250)
    first, then, capped = _order_missing(work, schedule, 500, tmp_path)
    assert list(then.values()) == [later] and capped == [big]
    # No calendar, no cap: everything in one go, as before.
    assert _order_missing(work, calendar.EMPTY, None, tmp_path) == ({}, work.missing, [])


def test_sizes_are_read_like_rates() -> None:
    assert parse_size("300M") == 300 * 1024**2
    assert parse_size("1.5k") == 1536
    assert parse_size("0") == 0
    with pytest.raises(ValueError):
        parse_size("lots")


# -- a school server's calendars ---------------------------------------------------------


def _book(db: Session) -> Textbook:
    book = Textbook(
        key="renjiao-math-3-1", subject="math", edition="人教版", grade=3, volume="上册", title="数学 三年级 上册"
    )
    db.add(book)
    db.flush()
    ids: dict[str, int] = {}
    for position, node in enumerate(BOOK):
        row = TextbookNode(
            textbook_id=book.id,
            parent_id=ids.get(node.parent) if node.parent else None,
            key=node.key,
            kind="chapter" if node.parent is None else "section" if node.key.count(".") == 1 else "lesson",
            title=f"第{node.key}节",
            position=position,
            depth=node.key.count("."),
            week=node.week,
        )
        db.add(row)
        db.flush()
        ids[node.key] = row.id
    db.commit()
    return book


def test_schedule_reads_the_books_weeks_and_the_schools_own(db: Session) -> None:
    _book(db)
    assert not calendar.load_schedule(db, date(2026, 9, 9), 1)
    calendar.set_calendar(db, "renjiao-math-3-1", START)
    calendar.set_week(db, "renjiao-math-3-1", "2.1", 3)
    db.commit()
    schedule = calendar.load_schedule(db, date(2026, 9, 9), 1)
    assert schedule.rank("renjiao-math-3-1", "2.2") == (DUE, 3)  # moved up by this school
    assert schedule.rank("renjiao-math-3-1", "1.1.1") == (TAUGHT, -1)
    calendar.set_week(db, "renjiao-math-3-1", "2.1", None, reset=True)
    db.commit()
    assert calendar.load_schedule(db, date(2026, 9, 9), 1).rank("renjiao-math-3-1", "2.2") == (LATER, 5)


def test_a_calendar_may_come_before_its_book(db: Session) -> None:
    calendar.set_calendar(db, "tongbian-chinese-1-1", START)
    calendar.set_week(db, "tongbian-chinese-1-1", "1", 1)  # the book comes with the first pull
    db.commit()
    assert calendar.load_schedule(db, START, 0).rank("tongbian-chinese-1-1", "1") == (DUE, 1)


def test_editing_refuses_what_cannot_be(db: Session) -> None:
    _book(db)
    with pytest.raises(NotFound):
        calendar.set_week(db, "renjiao-math-3-1", "1.1", 2)  # no calendar yet
    calendar.set_calendar(db, "renjiao-math-3-1", START)
    with pytest.raises(NotFound):
        calendar.set_week(db, "renjiao-math-3-1", "9.9", 2)
    with pytest.raises(Invalid):
        calendar.set_week(db, "renjiao-math-3-1", "1.1", 0)
    with pytest.raises(Invalid):
        calendar.set_week(db, "renjiao-math-3-1", "1.1", calendar.MAX_WEEK + 1)
    with pytest.raises(Invalid):
        calendar.set_calendar(db, " ", START)


def test_calendar_rows_show_the_file_the_school_and_what_is_due(db: Session) -> None:
    _book(db)
    calendar.set_calendar(db, "renjiao-math-3-1", START)
    calendar.set_week(db, "renjiao-math-3-1", "3.1", None)
    db.commit()
    _found, due, rows = calendar.calendar_rows(db, "renjiao-math-3-1", date(2026, 9, 9), 1)
    assert due == Span(2, 3)
    by_key = {row.key: row for row in rows}
    assert [row.key for row in rows] == [n.key for n in BOOK]
    assert by_key["1.2"].due and not by_key["2.1"].due
    assert by_key["3.1"].overridden and by_key["3.1"].week is None and by_key["3.1"].span is None


def test_calendar_commands_in_chinese(hub_env: dict[str, str], db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import main

    _book(db)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner(env=hub_env)
    done = runner.invoke(main, ["sync", "calendar", "set", "renjiao-math-3-1", "--start", "2026-09-01"])
    assert done.exit_code == 0, done.output
    assert "第 1 教学周从 2026-09-01 开始" in done.output
    done = runner.invoke(main, ["sync", "calendar", "week", "renjiao-math-3-1", "2.1", "4"])
    assert done.exit_code == 0 and "本校在第 4 周教学" in done.output
    done = runner.invoke(main, ["sync", "calendar", "show", "renjiao-math-3-1"])
    assert done.exit_code == 0 and "第 4 周（本校调整）" in done.output, done.output
    refused = runner.invoke(main, ["sync", "calendar", "week", "renjiao-math-3-1", "9.9", "4"])
    assert refused.exit_code == 1 and "教材 renjiao-math-3-1 中没有章节 9.9" in refused.output
    refused = runner.invoke(main, ["sync", "calendar", "set", "renjiao-math-3-1", "--start", "9/1"])
    assert refused.exit_code == 2 and "日期格式为 YYYY-MM-DD" in refused.output
    assert runner.invoke(main, ["sync", "calendar", "list"]).output.startswith("renjiao-math-3-1：")
    assert runner.invoke(main, ["sync", "calendar", "delete", "renjiao-math-3-1"]).exit_code == 0


# -- upstream: subscribing to a textbook ---------------------------------------------------


def test_a_textbook_subscription_selects_its_courses_and_aligned_lessons(
    app: Flask, client: FlaskClient, db: Session, make: Accounts
) -> None:
    famous = make.school("海淀实验小学", "famous")
    rural = make.school("山村小学", "rural")
    uploader = make.user("up@famous.example", famous, "uploader")
    book = _book(db)
    node = db.scalar(select(TextbookNode).where(TextbookNode.textbook_id == book.id, TextbookNode.key == "2.1"))
    assert node is not None
    following, aligned, other, draft = (catalog.create_course(db, uploader, CourseCreate(**COURSE)) for _ in range(4))
    following.textbook_id = book.id  # the course follows the book
    for course in (following, other, draft):
        catalog.create_lesson(db, uploader, course.id, LessonCreate(title="口算乘法"))
    lesson = catalog.create_lesson(db, uploader, aligned.id, LessonCreate(title="两位数加两位数"))
    lesson.textbook_node_id = node.id  # one lesson of another course is on one of its chapters
    draft.textbook_id = book.id
    for course in (following, aligned, other):
        catalog.publish_course(db, uploader, course.id)
    db.commit()
    headers = make.bearer(make.user("s@rural.cn", rural, "teacher"), kind="sync")
    created = client.post("/api/v1/sync/subscriptions", json={"textbook": "renjiao-math-3-1"}, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["kind"] == "textbook" and created.json["textbook"] == "renjiao-math-3-1"
    again = client.post("/api/v1/sync/subscriptions", json={"textbook": "renjiao-math-3-1"}, headers=headers)
    assert again.json["id"] == created.json["id"]
    subscriptions = services.list_subscriptions(db, rural.id)
    assert mf.select_course_ids(db, subscriptions) == [following.id, aligned.id]  # published only
    unknown = client.post("/api/v1/sync/subscriptions", json={"textbook": "no-such-book"}, headers=headers)
    assert unknown.status_code == 404
    both = client.post("/api/v1/sync/subscriptions", json={"textbook": "x", "course": 1}, headers=headers)
    assert both.status_code == 422


# -- the school server's calendar page ------------------------------------------------------


def _admin_browser(app: Flask, make: Accounts) -> tuple[FlaskClient, str]:
    make.user("admin@shancun.cn", make.school("山村小学", "rural"), "admin", password="a long password")
    browser = app.test_client()
    browser.set_cookie("hub_lang", "zh")
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "admin@shancun.cn", "password": "a long password", "csrf_token": token})
    return browser, _csrf(browser.get("/admin/sync/calendar").text)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_the_calendar_page_sets_a_term_and_a_schools_weeks(app: Flask, db: Session, make: Accounts) -> None:
    _book(db)
    browser, token = _admin_browser(app, make)
    empty = browser.get("/admin/sync/calendar")
    assert empty.status_code == 200 and "还没有教学日历" in empty.text and english_words(empty.text) == []
    assert '<option value="renjiao-math-3-1">数学 三年级 上册</option>' in empty.text  # the books here
    created = browser.post(
        "/admin/sync/calendar", data={"csrf_token": token, "textbook": "renjiao-math-3-1", "start": "2026-09-01"}
    )
    assert created.status_code == 303 and created.location.endswith("#book-renjiao-math-3-1")
    saved = browser.post(
        "/admin/sync/calendar/renjiao-math-3-1/weeks",
        data={"csrf_token": token, "week-2.1": "4", "week-3.1": "-", "week-1.1": ""},
    )
    assert saved.status_code == 303
    db.rollback()
    schedule = calendar.load_schedule(db, date(2026, 9, 22), 0)  # week 4
    assert schedule.rank("renjiao-math-3-1", "2.1") == (DUE, 4)
    assert schedule.rank("renjiao-math-3-1", "3.1") == (UNDATED, 0)
    page = browser.get("/admin/sync/calendar?done=weeks").text
    assert "教学周已保存" in page and 'name="week-2.1" value="4"' in page and 'name="week-3.1" value="-"' in page
    assert "第 1 教学周从 2026-09-01 开始" in page
    assert english_words(page) == []
    wrong = browser.post("/admin/sync/calendar/renjiao-math-3-1/weeks", data={"csrf_token": token, "week-2.1": "九"})
    assert wrong.status_code == 422 and "教学周是 1 至" in wrong.text
    bad_date = {"csrf_token": token, "textbook": "x", "start": "9/1"}
    assert browser.post("/admin/sync/calendar", data=bad_date).status_code == 422
    assert browser.post("/admin/sync/calendar/no-such/weeks", data={"csrf_token": token}).status_code == 404
    assert browser.post("/admin/sync/calendar/renjiao-math-3-1/weeks", data={"week-2.1": "3"}).status_code == 400
    deleted = browser.post("/admin/sync/calendar/renjiao-math-3-1/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    db.rollback()
    assert not calendar.list_calendars(db)


def test_only_admins_see_the_calendar_page(app: Flask, make: Accounts) -> None:
    assert app.test_client().get("/admin/sync/calendar").status_code == 302  # to sign in
    make.user("t@shancun.cn", make.school("山村小学", "rural"), "teacher", password="a long password")
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "t@shancun.cn", "password": "a long password", "csrf_token": token})
    assert browser.get("/admin/sync/calendar").status_code == 403


def test_a_calendars_book_comes_from_the_upstreams_public_api(
    client: FlaskClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.textbooks import services as textbooks
    from hub.textbooks.files import parse_file

    shipped = Path(textbooks.__file__).parent / "data" / "renjiao-math-3-1.json"
    book = textbooks.import_textbook(db, parse_file(shipped.name, shipped.read_bytes()))
    db.commit()
    weeks = {key: week for key, week in db.execute(select(TextbookNode.key, TextbookNode.week))}
    # What the upstream's public API answers (this hub plays the upstream, then forgets the book).
    answers = {path: client.get(path).json for path in ("/api/v1/textbooks", f"/api/v1/textbooks/{book.id}")}
    asked: list[str] = []

    def upstream_json(base_url: str, path: str) -> Any:
        assert base_url == "http://upstream.example"
        asked.append(path)
        return answers[path]

    monkeypatch.setattr(calendar, "_public_json", upstream_json)
    textbooks.delete_textbook(db, book.id)
    calendar.set_calendar(db, "renjiao-math-3-1", START)
    calendar.set_calendar(db, "no-such-book", START)
    db.commit()
    assert sorted(calendar.books_missing(db)) == ["no-such-book", "renjiao-math-3-1"]
    brought = calendar.fetch_books(db, "http://upstream.example", calendar.books_missing(db))
    db.commit()
    assert brought == ["renjiao-math-3-1"]  # the upstream does not know the other: left as it is
    assert {key: week for key, week in db.execute(select(TextbookNode.key, TextbookNode.week))} == weeks
    assert calendar.books_missing(db) == ["no-such-book"]
    assert calendar.fetch_books(db, "http://upstream.example", []) == [] and len(asked) == 2


def test_an_unreachable_upstream_is_said_in_the_message() -> None:
    with pytest.raises(HubError, match="could not be read"):
        calendar.fetch_books(None, "http://127.0.0.1:9", ["renjiao-math-3-1"])  # type: ignore[arg-type]


def test_entries_name_a_lessons_chapter_by_keys_only_for_school_servers_that_read_them(
    app: Flask, db: Session, make: Accounts
) -> None:
    famous = make.school("海淀实验小学", "famous")
    rural = make.school("山村小学", "rural")
    uploader = make.user("up@famous.example", famous, "uploader")
    book = _book(db)
    node = db.scalar(select(TextbookNode).where(TextbookNode.textbook_id == book.id, TextbookNode.key == "2.1"))
    assert node is not None
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    aligned = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="两位数加两位数"))
    catalog.create_lesson(db, uploader, course.id, LessonCreate(title="练习课"))
    aligned.textbook_node_id = node.id
    catalog.publish_course(db, uploader, course.id)
    services.subscribe(db, rural, course_id=course.id)
    db.commit()
    profiles = ("video-360p", mf.SUBTITLES, mf.CHAPTERS)
    [older] = services.course_entries(db, rural, [course.id], profiles=profiles)
    [line] = services.course_entries(db, rural, [course.id], profiles=(*profiles, mf.TEXTBOOKS))
    lessons = json.loads(line)["entry"]["lessons"]
    assert [(lesson.get("textbook"), lesson.get("node")) for lesson in lessons] == [
        ("renjiao-math-3-1", "2.1"),
        (None, None),  # a lesson on no chapter: its entry is what it always was
    ]
    assert "textbook" not in older.decode()  # a school server of an earlier release is never sent the keys
    entry = mf.ManifestCourse.model_validate({**json.loads(line)["entry"], "revision": "0" * 64})
    assert calendar.lesson_alignment(entry.lessons[0]) == ("renjiao-math-3-1", "2.1")
    assert calendar.lesson_alignment(entry.lessons[1]) == (None, None)
