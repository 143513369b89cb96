"""The anonymous page cache: who is served from it, what its key holds, and what makes it stale."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from hub import create_app, pagecache
from hub.catalog import services
from hub.catalog.models import Course
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import get_database
from hub.media.models import Rendition
from tests.conftest import Accounts, hub_settings

PASSWORD = "correct horse"


@pytest.fixture
def course(db: Session, make: Accounts, course_body: dict[str, Any]) -> Course:
    uploader = make.user("up@x.cn", make.school(), "uploader", password=PASSWORD)
    course = services.create_course(db, uploader, CourseCreate(**course_body))
    services.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    services.publish_course(db, uploader, course.id)
    db.commit()
    return course


@pytest.fixture
def other_process(hub_env: dict[str, str]) -> Iterator[Flask]:
    """A second hub instance on the same database: its own engine, sessions and page cache, as another process has."""
    other = create_app(hub_settings(hub_env))
    yield other
    get_database(other).engine.dispose()


def _hit(response: Any) -> bool:
    return "Age" in response.headers  # only answers from the cache carry it


def test_an_anonymous_page_is_served_from_memory_the_second_time(client: FlaskClient, course: Course) -> None:
    first = client.get(f"/courses/{course.id}")
    assert first.status_code == 200 and not _hit(first)
    second = client.get(f"/courses/{course.id}")
    assert _hit(second) and second.data == first.data
    assert second.headers["Cache-Control"] == first.headers["Cache-Control"] == "public, max-age=60"
    assert second.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    head = client.head(f"/courses/{course.id}")
    assert _hit(head) and head.data == b""
    # The JSON API too: a course list is the same for every anonymous client.
    client.get("/api/v1/courses")
    assert _hit(client.get("/api/v1/courses"))


def test_language_data_saver_and_encoding_are_part_of_the_key(client: FlaskClient, course: Course) -> None:
    url = f"/courses/{course.id}"
    zh = client.get(url, headers={"Accept-Language": "zh-CN"})
    en = client.get(url, headers={"Accept-Language": "en"})
    assert not _hit(en) and en.data != zh.data
    assert _hit(client.get(url, headers={"Accept-Language": "en-GB,en;q=0.9"}))  # the same language: the same page
    client.set_cookie("hub_lang", "zh")
    chosen = client.get(url, headers={"Accept-Language": "en"})
    assert chosen.data == zh.data  # the switch's cookie beats the header, as for a render
    assert _hit(client.get(url, headers={"Accept-Language": "en"}))
    client.set_cookie("data_saver", "0")
    assert not _hit(client.get(url))
    assert _hit(client.get(url))
    packed = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert not _hit(packed) and packed.headers["Content-Encoding"] == "gzip"
    assert _hit(client.get(url, headers={"Accept-Encoding": "gzip"}))


def test_a_signed_in_reader_is_never_served_from_the_cache(
    app: Flask, client: FlaskClient, course: Course, make: Accounts
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    url = f"/courses/{course.id}"
    client.get(url)
    assert _hit(client.get(url))
    reader = app.test_client()
    assert reader.post("/login", data={"email": "up@x.cn", "password": PASSWORD}).status_code == 302
    signed_in = reader.get(url)
    assert not _hit(signed_in) and b"up@x.cn" in signed_in.data
    assert signed_in.headers["Cache-Control"] == "private, no-store"
    # ...and what a signed-in reader got was not stored for anyone else either.
    assert b"up@x.cn" not in client.get(url).data
    bearer = make.bearer(make.user("admin@x.cn", make.school("教育局", "urban"), "admin"))
    assert not _hit(client.get("/api/v1/courses", headers=bearer))
    assert not _hit(client.get("/api/v1/courses", headers=bearer))


def test_answers_that_set_a_cookie_or_carry_a_session_are_not_stored(client: FlaskClient, course: Course) -> None:
    login = client.get("/login")  # a CSRF token goes into a new session cookie
    assert "Set-Cookie" in login.headers
    assert not _hit(client.get("/login"))
    # Now this browser holds a session cookie: nothing comes from the cache for it.
    assert not _hit(client.get(f"/courses/{course.id}"))
    assert not _hit(client.get(f"/courses/{course.id}"))
    stranger = client.application.test_client()
    stranger.set_cookie("tracking", "x")  # a cookie the key does not hold
    stranger.get("/")
    assert not _hit(stranger.get("/"))


def test_an_edit_or_withdrawal_in_another_process_is_seen_at_once(
    client: FlaskClient, course: Course, other_process: Flask
) -> None:
    url = f"/courses/{course.id}"
    client.get(url)
    assert _hit(client.get(url))
    with get_database(other_process).session() as other:
        other.get(Course, course.id).title = "一元二次方程（新版）"  # type: ignore[union-attr]
        other.commit()
    fresh = client.get(url)
    assert not _hit(fresh) and "一元二次方程（新版）" in fresh.text
    assert _hit(client.get(url))
    with get_database(other_process).session() as other:
        other.execute(update(Course).where(Course.id == course.id).values(status="withdrawn"))
        other.commit()
    assert client.get(url).status_code == 404


def test_work_in_progress_and_private_tables_leave_pages_cached(
    app: Flask, client: FlaskClient, course: Course, db: Session, make: Accounts
) -> None:
    engine = get_database(app).engine
    with engine.connect() as connection:
        before = pagecache.read_generation(connection)
    make.user("t@rural.cn", make.school("山村小学", "rural"), "teacher")  # a new account shows on no public page
    db.execute(update(Rendition).values(progress=50))  # a transcode's progress
    db.commit()
    with engine.connect() as connection:
        assert pagecache.read_generation(connection) == before + 1  # the school is public (its name is on pages)
    course_row = db.get(Course, course.id)
    assert course_row is not None
    course_row.summary = "新的简介"
    db.rollback()  # rolled back: nothing changed
    db.commit()
    with engine.connect() as connection:
        assert pagecache.read_generation(connection) == before + 1


def test_the_store_keeps_to_its_size_and_age() -> None:
    store = pagecache.Store(max_bytes=800, max_age=60)
    for n in range(20):
        store.put((str(n),), pagecache.Entry(1, 0.0, "200 OK", [], b"x" * 90))
    assert store.size <= 800 and len(store) == 8
    assert store.get(("19",), 1, 1.0) is not None and store.get(("0",), 1, 1.0) is None
    assert store.get(("19",), 2, 1.0) is None  # another generation: gone
    store.put(("a",), pagecache.Entry(1, 0.0, "200 OK", [], b"x"))
    assert store.get(("a",), 1, 60.0) is None  # as old as max-age: gone
    store.put(("big",), pagecache.Entry(1, 0.0, "200 OK", [], b"x" * 200))
    assert store.get(("big",), 1, 1.0) is None  # more than an eighth of the store is not kept
