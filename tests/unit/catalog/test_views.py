"""The catalog's HTML pages: light, JavaScript only as an addition, Chinese first."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.catalog import services
from hub.catalog.schemas import CourseCreate, LessonCreate
from tests.conftest import Accounts


def _course(db: Session, user: User, body: dict[str, Any], publish: bool = True) -> int:
    course = services.create_course(db, user, CourseCreate(**body))
    services.create_lesson(db, user, course.id, LessonCreate(title="古诗三首", unit="第一单元"))
    if publish:
        services.publish_course(db, user, course.id)
    db.commit()
    return course.id


def test_pages(client: FlaskClient, make: Accounts, db: Session, course_body: dict[str, Any]) -> None:
    uploader = make.user("up@x.cn", make.school(), "uploader")
    published = _course(db, uploader, {**course_body, "title": "语文 古诗", "subject": "chinese", "grades": [3, 4]})
    draft = _course(db, uploader, {**course_body, "title": "草稿课程"}, publish=False)

    home = client.get("/")
    assert home.status_code == 200
    assert home.content_type == "text/html; charset=utf-8"
    # The only script is the search box's suggestions, a deferred file: the page works without it.
    scripts = re.findall(r"<script[^>]*>", home.text)
    assert len(scripts) == 1, scripts
    assert re.fullmatch(r'<script src="/static/search-suggest\.js(\?v=\w+)?" defer>', scripts[0])
    assert 'href="/courses?subject=chinese&amp;grade=3"' in home.text
    assert "语文" in home.text

    listing = client.get("/courses?subject=chinese&grade=4")
    assert "语文 古诗" in listing.text
    assert "草稿课程" not in client.get("/courses").text
    assert "0 门课程" in client.get("/courses?subject=chinese&grade=9").text
    assert client.get("/courses?subject=&grade=").status_code == 200  # an empty form field means "any"

    page = client.get(f"/courses/{published}")
    assert "古诗三首" in page.text and "第一单元" in page.text
    lesson_id = services.list_lessons(db, None, published)[0].id
    assert "古诗三首" in client.get(f"/lessons/{lesson_id}").text

    missing = client.get(f"/courses/{draft}")
    assert missing.status_code == 404
    assert f"没有编号为 {draft} 的课程" in missing.text
    english = client.get(f"/courses/{draft}", headers={"Accept-Language": "en"})
    assert f"There is no course {draft}." in english.text
    as_json = client.get(f"/api/v1/courses/{draft}", headers={"Accept-Language": "zh-CN"})
    assert as_json.json["error"]["message"] == f"没有编号为 {draft} 的课程。"  # type: ignore[index]  # as the reader asked
    plain = client.get(f"/api/v1/courses/{draft}")  # a program that names no language: English, as always
    assert plain.json["error"]["message"] == f"There is no course {draft}."  # type: ignore[index]
    bad = client.get("/courses?grade=12")
    assert bad.status_code == 422
    assert "年级不能大于 9。" in bad.text  # the field's label, not its name
