"""Every kind of bad input of the foundation: the error shape, a message a person can act on,
and not one row changed in any table (outbox and change feed included)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.catalog import services
from hub.catalog.schemas import CourseCreate, LessonCreate
from tests.conftest import Accounts
from tests.support.snapshot import database_snapshot

PASSWORD = "correct horse"


@dataclass
class Setup:
    client: FlaskClient
    auth: dict[str, str]
    revoked: dict[str, str]
    draft: int
    lesson: int
    body: dict[str, Any]


@pytest.fixture
def setup(app: Flask, client: FlaskClient, make: Accounts, db: Session, course_body: dict[str, Any]) -> Setup:
    school = make.school()
    uploader = make.user("up@haidian.cn", school, "uploader", password=PASSWORD)
    revoked = make.token(uploader)
    accounts.revoke_token(db, revoked)
    course = services.create_course(db, uploader, CourseCreate(**course_body))
    lesson = services.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    db.commit()
    return Setup(
        client, make.bearer(uploader), {"Authorization": f"Bearer {revoked}"}, course.id, lesson.id, course_body
    )


def _post_course(changes: dict[str, Any] | None = None, drop: str = "") -> Callable[[Setup], Any]:
    def send(s: Setup) -> Any:
        body = {k: v for k, v in {**s.body, **(changes or {})}.items() if k != drop}
        return s.client.post("/api/v1/courses", json=body, headers=s.auth)

    return send


def _patch(changes: dict[str, Any]) -> Callable[[Setup], Any]:
    return lambda s: s.client.patch(f"/api/v1/courses/{s.draft}", json=changes, headers=s.auth)


def _material(size: int) -> Callable[[Setup], Any]:
    def send(s: Setup) -> Any:
        s.client.application.config["MAX_CONTENT_LENGTH"] = 10_000
        return s.client.post(
            f"/api/v1/lessons/{s.lesson}/materials",
            data={"title": "大文件", "file": (io.BytesIO(b"%PDF-1.4\n" + b"0" * size), "big.pdf")},
            headers=s.auth,
        )

    return send


CASES: dict[str, tuple[Callable[[Setup], Any], int, str, str]] = {
    # name: (request, status, error code, a field the error names or "")
    "invalid JSON": (
        lambda s: s.client.post(
            "/api/v1/courses", data=b'{"title": "x",', content_type="application/json", headers=s.auth
        ),
        400,
        "invalid_json",
        "",
    ),
    "JSON that is not an object": (lambda s: s.client.post("/api/v1/courses", json=["x"], headers=s.auth), 400, "", ""),
    "a form instead of JSON": (
        lambda s: s.client.post("/api/v1/courses", data={"title": "x"}, headers=s.auth),
        400,
        "",
        "",
    ),
    "unknown field": (_post_course({"colour": "red"}), 422, "invalid", "colour"),
    "missing field": (_post_course(drop="license"), 422, "invalid", "license"),
    "wrong type (title)": (_post_course({"title": ["一元二次方程"]}), 422, "invalid", "title"),
    "wrong type (grades)": (_post_course({"grades": "9"}), 422, "invalid", "grades"),
    "grade 0": (_post_course({"grades": [0]}), 422, "invalid", "grades.0"),
    "grade 10": (_post_course({"grades": [9, 10]}), 422, "invalid", "grades.1"),
    "unknown licence": (_post_course({"license": "CC-BY-3.0"}), 422, "invalid", "license"),
    "patch: unknown field": (_patch({"status": "published"}), 422, "invalid", "status"),
    "patch: grade outside 1-9": (_patch({"grades": [12]}), 422, "invalid", "grades.0"),
    "patch: unknown licence": (_patch({"license": "WTFPL"}), 422, "invalid", "license"),
    "patch: wrong type": (_patch({"grades": 5}), 422, "invalid", "grades"),
    "lesson: missing title": (
        lambda s: s.client.post(f"/api/v1/courses/{s.draft}/lessons", json={"unit": "x"}, headers=s.auth),
        422,
        "invalid",
        "title",
    ),
    "over-limit upload": (_material(20_000), 413, "request_entity_too_large", ""),
    "unknown course (patch)": (
        lambda s: s.client.patch("/api/v1/courses/99999", json={"title": "x"}, headers=s.auth),
        404,
        "not_found",
        "",
    ),
    "unknown course (publish)": (
        lambda s: s.client.post("/api/v1/courses/99999/publish", headers=s.auth),
        404,
        "not_found",
        "",
    ),
    "unknown course (lesson)": (
        lambda s: s.client.post("/api/v1/courses/99999/lessons", json={"title": "x"}, headers=s.auth),
        404,
        "not_found",
        "",
    ),
    "unknown lesson (material)": (
        lambda s: s.client.post(
            "/api/v1/lessons/99999/materials", data={"file": (io.BytesIO(b"%PDF-1.4\n"), "a.pdf")}, headers=s.auth
        ),
        404,
        "not_found",
        "",
    ),
    "missing token": (lambda s: s.client.post("/api/v1/courses", json=s.body), 401, "unauthorized", ""),
    "unknown token": (
        lambda s: s.client.post("/api/v1/courses", json=s.body, headers={"Authorization": "Bearer hub_nope"}),
        401,
        "unauthorized",
        "",
    ),
    "revoked token": (
        lambda s: s.client.post("/api/v1/courses", json=s.body, headers=s.revoked),
        401,
        "unauthorized",
        "",
    ),
    "not a bearer token": (
        lambda s: s.client.post("/api/v1/courses", json=s.body, headers={"Authorization": "Basic dXA6cHc="}),
        401,
        "unauthorized",
        "",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_changes_nothing(app: Flask, setup: Setup, name: str) -> None:
    send, status, code, field = CASES[name]
    before = database_snapshot(app)
    response = send(setup)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.json["error"]
    assert set(error) == {"code", "message", "fields"}
    assert len(error["message"]) > 10  # words, not a bare code
    if code:
        assert error["code"] == code
    if field:
        assert field in error["fields"], error
    assert database_snapshot(app) == before


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_csrf_less_posts_change_nothing(app: Flask, make: Accounts, course_body: dict[str, Any]) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    make.user("up@haidian.cn", make.school(), "uploader", password=PASSWORD)
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    assert (
        browser.post("/login", data={"email": "up@haidian.cn", "password": PASSWORD, "csrf_token": token}).status_code
        == 302
    )
    before = database_snapshot(app)
    form = {**course_body, "grades": ["9"], "category": "curriculum"}
    refused = [
        browser.post("/upload/courses", data=form),  # a page form without its token
        browser.post("/upload/courses", data={**form, "csrf_token": "forged"}),
        browser.post("/api/v1/courses", json=course_body),  # a cookie session's API write without X-CSRFToken
        browser.post("/logout"),
    ]
    for response in refused:
        # The page's wording follows the reader's language; the status and the JSON code do not.
        assert response.status_code == 400, response.get_data(as_text=True)[:300]
    as_json = browser.post("/upload/courses", data=form, headers={"Accept": "application/json"})
    assert as_json.status_code == 400 and as_json.json["error"]["code"] == "csrf_failed"
    assert as_json.json["error"]["message"]
    assert database_snapshot(app) == before
    assert "up@haidian.cn" in browser.get("/").text  # the forged logout did not sign out
