"""Push by the teaching calendar: a school server on a thin link gets next week's lessons first.

Two hubs as in test_sync.py (its fixtures: the upstream served over HTTP, a school server
pulling through a counting proxy). The upstream has a course that follows a textbook, its
lessons on chapters taught in weeks 1 to 4, listed in an order that is not the calendar's.
The school subscribes to the textbook, sets its term so that today is in week 2, and pulls
with a byte cap that two videos fill: it gets weeks 2 and 3, as lessons a teacher can open,
and nothing else; the next pull brings the rest, week 4 before week 1. What is asserted is
the order of what arrived (the proxy's log, one download at a time), never timing.
"""

from __future__ import annotations

import io
import os
import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.accounts.models import School as SchoolRow
from hub.catalog import services as catalog
from hub.catalog.models import Lesson
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import utcnow
from hub.sync.client import local_zone
from hub.sync.models import MirrorCourse, Subscription
from hub.textbooks.models import Textbook, TextbookNode
from tests.conftest import COURSE, STORAGE
from tests.functional import test_sync as two_hubs
from tests.functional.test_sync import VIDEO, Proxy, School, Upstream

proxy = two_hubs.proxy
upstream = two_hubs.upstream
school = two_hubs.school

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(STORAGE == "s3", reason="the proxy logs blob downloads; S3 would redirect them past it"),
]

BOOK = "renjiao-math-3-1"
# (key, parent, kind, title, week) as the textbook file gives them: the chapter's week is when it starts.
NODES = [
    ("1", None, "chapter", "第一单元 时、分、秒", 1),
    ("1.1", "1", "section", "秒的认识", 1),
    ("2", None, "chapter", "第二单元 万以内的加法和减法（一）", 2),
    ("2.1", "2", "section", "两位数加两位数的口算", 2),
    ("2.2", "2", "section", "几百几十加减几百几十", 3),
    ("3", None, "chapter", "第三单元 测量", 4),
    ("3.1", "3", "section", "毫米、分米的认识", 4),
]
# The course's lessons in the course's order, each on one section: weeks 4, 1, 3, 2.
LESSONS = [("毫米和分米", "3.1"), ("认识秒", "1.1"), ("几百几十的加减", "2.2"), ("两位数加两位数", "2.1")]


def add_textbook(db: Session) -> Textbook:
    """The book on the upstream, as `hub textbook import` leaves it."""
    book = Textbook(key=BOOK, subject="math", edition="人教版", grade=3, volume="上册", title="数学 三年级 上册")
    db.add(book)
    db.flush()
    ids: dict[str, int] = {}
    for position, (key, parent, kind, title, week) in enumerate(NODES):
        node = TextbookNode(
            textbook_id=book.id,
            parent_id=ids[parent] if parent else None,
            key=key,
            kind=kind,
            title=title,
            position=position,
            depth=0 if parent is None else 1,
            week=week,
        )
        db.add(node)
        db.flush()
        ids[key] = node.id
    db.commit()
    return book


def _aligned_course(up: Upstream) -> dict[str, str]:
    """The upstream course on the book; returns its lessons' video sha256 by lesson title."""
    db = up.db
    book = add_textbook(db)
    nodes = {n.key: n.id for n in db.scalars(select(TextbookNode).where(TextbookNode.textbook_id == book.id))}
    uploader = accounts.get_user_by_email(db, "up@famous.example")
    assert uploader is not None
    fields = {**COURSE, "title": "三年级数学上册同步课", "grades": [3]}
    course = catalog.create_course(db, uploader, CourseCreate(**fields))
    course.textbook_id = book.id
    videos = {}
    for title, node in LESSONS:
        lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title=title))
        lesson.textbook_node_id = nodes[node]
        material = catalog.add_material(
            db, up.storage, uploader, lesson.id, io.BytesIO(os.urandom(5_000)), filename=f"{node}.mp4", title=title
        )
        db.commit()
        videos[title] = up.set_rendition(material, "video-360p", os.urandom(VIDEO))
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    return videos


def _blob_order(proxy: Proxy, videos: dict[str, str]) -> list[str]:
    """The lessons whose videos the school server asked for, in the order it asked."""
    by_sha = {sha: title for title, sha in videos.items()}
    asked = [path.rsplit("/", 1)[-1] for method, path, _range in proxy.requests if method == "GET"]
    return [by_sha[sha] for sha in asked if sha in by_sha]


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _school(session: Session) -> SchoolRow:
    school = session.scalar(select(SchoolRow).limit(1))
    if school is None:
        school = accounts.create_school(session, "山村小学", "rural", "甘肃省", "通渭县")
    return school


def _lessons(school: School) -> list[str]:
    with school.session() as session:
        return list(session.scalars(select(Lesson.title).order_by(Lesson.position)))


def test_a_capped_pull_brings_the_weeks_due_first_and_the_next_pull_the_rest(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    videos = _aligned_course(upstream)
    subscribed = school.hub("sync", "subscribe", "--textbook", BOOK)
    assert subscribed.exit_code == 0, subscribed.output
    # Today is in teaching week 2 at the school; with one week ahead, weeks 2 and 3 are due.
    today = utcnow().astimezone(local_zone(school.app.extensions["hub.settings"])).date()
    start = (today - timedelta(days=7)).isoformat()
    chinese = {**school.env, "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": "", "LANG": "zh_CN.UTF-8"}
    calendar_set = two_hubs.run_hub(chinese, "sync", "calendar", "set", BOOK, "--start", start)
    assert calendar_set.exit_code == 0, calendar_set.output
    assert f"已从上级平台取来教材 {BOOK}" in calendar_set.output  # its chapters and weeks, before any pull
    env = {**school.env, "HUB_SYNC_WEEKS_AHEAD": "1", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": "", "LANG": "C"}
    shown = two_hubs.run_hub(env, "sync", "calendar", "show", BOOK)
    assert shown.exit_code == 0 and "2-3" in shown.output, shown.output

    # A data cap that two videos and their small files fill, not three.
    cap = str(2 * VIDEO + VIDEO // 2)
    proxy.reset_counts()
    capped = two_hubs.run_hub(env, "sync", "pull", "--max-bytes", cap, "--parallel", "1")
    assert capped.exit_code == 0, capped.output
    assert "byte cap" in capped.output
    assert _blob_order(proxy, videos) == ["两位数加两位数", "几百几十的加减"]  # week 2, then week 3
    # The lessons that arrived are on the school's LAN now, in the course's order; the rest is to come.
    assert _lessons(school) == ["几百几十的加减", "两位数加两位数"]
    with school.session() as session:
        assert session.scalar(select(MirrorCourse.revision)) == ""  # applied in part: the next pull goes on
    # Meanwhile the school can carry what it has to a neighbour on a USB drive: the rest is left out, said so.
    carried = two_hubs.run_hub(env, "bundle", "export", "--to", str(school.tmp / "usb"))
    assert carried.exit_code == 0, carried.output
    assert "2 blobs" in carried.output and "2 files of courses this server holds only in part" in carried.output

    proxy.reset_counts()
    rest = two_hubs.run_hub(env, "sync", "pull", "--parallel", "1")
    assert rest.exit_code == 0, rest.output
    assert _blob_order(proxy, videos) == ["毫米和分米", "认识秒"]  # week 4 (coming), then week 1 (taught)
    assert _lessons(school) == [title for title, _node in LESSONS]
    assert school.last_run().status == "ok"
    with school.session() as session:  # aligned on the school server too, to its own copy of the book
        aligned = session.execute(
            select(Lesson.title, TextbookNode.key).join(TextbookNode, TextbookNode.id == Lesson.textbook_node_id)
        ).all()
        assert sorted(aligned) == sorted(LESSONS)
    with school.session() as session:
        assert session.scalar(select(MirrorCourse.revision)) != ""


def test_a_course_too_big_for_the_storage_budget_brings_its_lessons_due_first(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    videos = _aligned_course(upstream)
    today = utcnow().astimezone(local_zone(school.app.extensions["hub.settings"])).date()
    # Week 3 today: with no week ahead, only 几百几十的加减 (week 3) is due.
    start = (today - timedelta(days=14)).isoformat()
    # This time the school's admin uses the calendar page: subscribe, then the term.
    with school.session() as session:
        admin = accounts.create_user(session, "admin@shancun.cn", _school(session), "admin", "a long password")
        session.commit()
        assert admin.is_admin
    page = school.app.test_client()
    page.set_cookie("hub_lang", "zh")
    token = _csrf(page.get("/login").text)
    page.post("/login", data={"email": "admin@shancun.cn", "password": "a long password", "csrf_token": token})
    token = _csrf(page.get("/admin/sync/calendar").text)
    subscribed = page.post("/admin/sync/calendar/subscribe", data={"csrf_token": token, "textbook": BOOK})
    assert subscribed.status_code == 303, subscribed.text
    created = page.post("/admin/sync/calendar", data={"csrf_token": token, "textbook": BOOK, "start": start})
    assert created.status_code == 303
    upstream.db.rollback()
    assert upstream.db.scalar(select(Subscription.textbook_key)) == BOOK
    # Room for two videos of four: the due one, then the next in the calendar's order (week 4).
    env = {**school.env, "HUB_SYNC_WEEKS_AHEAD": "0", "HUB_SYNC_STORAGE_BUDGET": str(2 * VIDEO + VIDEO // 2)}
    proxy.reset_counts()
    pulled = two_hubs.run_hub(env, "sync", "pull", "--parallel", "1")
    assert pulled.exit_code == 0, pulled.output
    assert _blob_order(proxy, videos) == ["几百几十的加减", "毫米和分米"]
    assert _lessons(school) == ["毫米和分米", "几百几十的加减"]
    # Nothing more fits: the next pull fetches nothing and keeps what is here.
    proxy.reset_counts()
    again = two_hubs.run_hub(env, "sync", "pull", "--parallel", "1")
    assert again.exit_code == 0, again.output
    assert _blob_order(proxy, videos) == []
    assert _lessons(school) == ["毫米和分米", "几百几十的加减"]
