"""Courses follow a textbook and lessons attach to its nodes, through the API (and so the pages' services)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.sync.models import Change
from hub.textbooks import services
from hub.textbooks.models import Textbook
from tests.conftest import COURSE, Accounts
from tests.unit.textbooks.test_services import book


@pytest.fixture
def books(db: Session) -> dict[str, Textbook]:
    nine = services.import_textbook(db, book())
    other = services.import_textbook(db, book(key="renjiao-math-9-2", volume="下册", nodes=[
        {"key": "26", "kind": "chapter", "title": "第二十六章 反比例函数"}]))  # fmt: skip
    db.commit()
    return {"nine": nine, "other": other}


@pytest.fixture
def uploader(make: Accounts) -> dict[str, str]:
    return make.bearer(make.user("up@haidian.cn", make.school(), "uploader"))


def _node(textbook: Textbook, key: str) -> int:
    return next(n.id for n in textbook.nodes if n.key == key)


def test_a_course_follows_its_textbook_and_lessons_attach_to_its_nodes(
    client: FlaskClient, db: Session, books: dict[str, Textbook], uploader: dict[str, str]
) -> None:
    nine = books["nine"]
    body = {**COURSE, "edition": "", "volume": "", "textbook": nine.id}
    course = client.post("/api/v1/courses", json=body, headers=uploader)
    assert course.status_code == 201, course.json
    assert course.json["textbook"] == {"id": nine.id, "key": "renjiao-math-9-1", "title": "人教版 数学 九年级 上册"}
    assert (course.json["edition"], course.json["volume"]) == ("人教版", "上册")  # filled in from the book
    course_id = course.json["id"]

    first = {"title": "配方法", "node": _node(nine, "21.2.1")}
    lesson = client.post(f"/api/v1/courses/{course_id}/lessons", json=first, headers=uploader)
    assert lesson.status_code == 201, lesson.json
    assert lesson.json["node"]["key"] == "21.2.1" and lesson.json["node"]["textbook"] == "renjiao-math-9-1"
    assert lesson.json["unit"] == "第二十一章 一元二次方程"  # an empty unit takes the chapter's title
    lesson_id = lesson.json["id"]

    foreign = client.patch(f"/api/v1/lessons/{lesson_id}", json={"node": _node(books["other"], "26")}, headers=uploader)
    assert foreign.status_code == 422
    assert "not in 人教版 数学 九年级 上册" in foreign.json["error"]["message"]
    assert "node" in foreign.json["error"]["fields"]
    zh = client.patch(
        f"/api/v1/lessons/{lesson_id}", json={"node": _node(books["other"], "26")},
        headers={**uploader, "Accept-Language": "zh"},
    )  # fmt: skip
    assert "教材" in zh.json["error"]["message"]
    assert client.patch(f"/api/v1/lessons/{lesson_id}", json={"node": 999999}, headers=uploader).status_code == 422

    moved = client.patch(f"/api/v1/lessons/{lesson_id}", json={"node": _node(nine, "21.2")}, headers=uploader)
    assert moved.json["node"]["key"] == "21.2" and moved.json["unit"] == "第二十一章 一元二次方程"
    assert client.get(f"/api/v1/lessons/{lesson_id}").status_code in (200, 404)  # a draft: the uploader's only
    detached = client.patch(f"/api/v1/lessons/{lesson_id}", json={"node": None}, headers=uploader)
    assert detached.status_code == 200 and detached.json["node"] is None
    assert client.patch(f"/api/v1/lessons/{lesson_id}", json={"title": None}, headers=uploader).status_code == 422

    # The course's subject, grade, edition or volume must stay the book's while it follows it.
    wrong = client.patch(f"/api/v1/courses/{course_id}", json={"grades": [8]}, headers=uploader)
    assert wrong.status_code == 422 and "grade 9" in wrong.json["error"]["message"]
    other = client.patch(f"/api/v1/courses/{course_id}", json={"textbook": books["other"].id}, headers=uploader)
    assert other.status_code == 422 and "volume" in other.json["error"]["message"]


def test_changing_or_leaving_the_textbook_detaches_lessons_and_makes_a_new_version(
    client: FlaskClient, db: Session, books: dict[str, Textbook], uploader: dict[str, str]
) -> None:
    nine = books["nine"]
    course_id = client.post("/api/v1/courses", json={**COURSE, "textbook": nine.id}, headers=uploader).json["id"]
    first = {"title": "配方法", "node": _node(nine, "21.2.1")}
    lesson_id = client.post(f"/api/v1/courses/{course_id}/lessons", json=first, headers=uploader).json["id"]
    assert client.post(f"/api/v1/courses/{course_id}/publish", headers=uploader).status_code == 200
    left = client.patch(f"/api/v1/courses/{course_id}", json={"textbook": None}, headers=uploader).json
    assert left["textbook"] is None and left["version"] == 2
    assert client.get(f"/api/v1/lessons/{lesson_id}").json["node"] is None
    assert db.scalar(select(Change.version).where(Change.course_id == course_id).order_by(Change.seq.desc())) == 2
    again = client.patch(f"/api/v1/courses/{course_id}", json={"textbook": nine.id}, headers=uploader).json
    assert again["textbook"]["key"] == "renjiao-math-9-1" and again["version"] == 3
    unchanged = client.patch(f"/api/v1/courses/{course_id}", json={"title": COURSE["title"]}, headers=uploader).json
    assert unchanged["version"] == 3

    after_school: dict[str, Any] = {**COURSE, "category": "after-school", "edition": "", "volume": ""}
    refused = client.post("/api/v1/courses", json={**after_school, "textbook": nine.id}, headers=uploader)
    assert refused.status_code == 422 and "curriculum" in refused.json["error"]["message"]
    plain = client.post("/api/v1/courses", json=after_school, headers=uploader).json
    no_book = client.post(
        f"/api/v1/courses/{plain['id']}/lessons", json={"title": "x", "node": _node(nine, "21")}, headers=uploader
    )
    assert no_book.status_code == 422 and "textbook first" in no_book.json["error"]["message"]
    assert "textbook" in json.dumps(client.get("/api/v1/openapi.json").json["components"]["schemas"]["LessonUpdate"])


def test_the_uploaders_pages_choose_the_textbook_and_the_chapter(
    client: FlaskClient, db: Session, books: dict[str, Textbook], make: Accounts
) -> None:
    from tests.unit.textbooks.test_api import _csrf, _sign_in

    make.user("web@haidian.cn", make.school("星河小学"), "uploader", "a long password")
    _sign_in(client, "web@haidian.cn")
    token = _csrf(client, "/upload/")
    nine = books["nine"]
    form = {k: v for k, v in COURSE.items() if k != "grades"}
    created = client.post(
        "/upload/courses", data={**form, "grades": "9", "textbook": str(nine.id), "csrf_token": token}
    )
    assert created.status_code == 303, created.get_data(as_text=True)[-2000:]
    page_url = created.headers["Location"]
    page = client.get(page_url).get_data(as_text=True)
    assert f'<option value="{nine.id}" data-subject="math" selected>' in page
    assert "21.2.1 配方法" in page  # the add-lesson form offers the book's nodes
    course_id = int(page_url.rstrip("/").split("/")[-1])
    added = client.post(
        f"/upload/courses/{course_id}/lessons",
        data={"title": "配方法", "unit": "", "summary": "", "node": str(_node(nine, "21.2.1")), "csrf_token": token},
    )
    assert added.status_code == 303
    lesson = client.get(f"/api/v1/courses/{course_id}/lessons").json["items"][0]
    assert lesson["node"]["key"] == "21.2.1"
    lesson_fields = {"title": "配方法", "unit": "", "summary": ""}
    refused = client.post(
        f"/upload/lessons/{lesson['id']}/edit",
        data={**lesson_fields, "node": str(_node(books["other"], "26")), "csrf_token": token},
    )
    assert refused.status_code == 422 and "本课程所用的教材" in refused.get_data(as_text=True)
    kept = client.post(  # the edit form sends the course's fields back with its textbook chosen: nothing detaches
        f"/upload/courses/{course_id}/edit",
        data={**form, "grades": "9", "textbook": str(nine.id), "title": "九上", "csrf_token": token},
    )
    assert kept.status_code == 303
    assert client.get(f"/api/v1/lessons/{lesson['id']}").json["node"]["key"] == "21.2.1"
