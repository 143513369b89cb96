"""The optional review step (HUB_REVIEW_REQUIRED) and every course's history, through the API and the pages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app, jobs
from hub.accounts import services as accounts
from hub.db import get_database
from hub.jobs import Outbox
from hub.sync.models import Change
from tests.conftest import COURSE, Accounts, hub_settings
from tests.unit.uploads.test_views import PASSWORD, _csrf


@pytest.fixture
def app(hub_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Flask]:
    """A hub with review required, unless a test asks for ``app`` "off" (indirect parametrisation)."""
    app = create_app({**hub_settings(hub_env), "HUB_REVIEW_REQUIRED": getattr(request, "param", "on")})
    app.config["TESTING"] = True
    yield app
    get_database(app).engine.dispose()


@dataclass
class People:
    uploader: dict[str, str]
    reviewer: dict[str, str]  # reviews 北京市, the uploader's school's region
    province: dict[str, str]  # reviews 北京市 too, by its own region: covers "北京市 海淀区"
    outsider: dict[str, str]  # reviews 上海市
    teacher: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def people(make: Accounts, db: Session) -> People:
    school = make.school()  # region 北京市
    bureau = accounts.create_school(db, "北京市教委", "urban", "北京市", "")
    shanghai = accounts.create_school(db, "上海市教委", "urban", "上海市", "")
    db.commit()
    return People(
        uploader=make.bearer(make.user("up@haidian.cn", school, "uploader")),
        reviewer=make.bearer(make.user("rev@bj.gov.cn", bureau, "reviewer")),
        province=make.bearer(accounts.create_user(db, "rev2@sh.gov.cn", shanghai, "reviewer", None, region="北京市")),
        outsider=make.bearer(make.user("rev@sh.gov.cn", shanghai, "reviewer")),
        teacher=make.bearer(make.user("t@haidian.cn", school, "teacher")),
        admin=make.bearer(make.user("admin@hub.cn", school, "admin")),
    )


def _course(client: FlaskClient, auth: dict[str, str], **changes: Any) -> int:
    created = client.post("/api/v1/courses", json={**COURSE, **changes}, headers=auth)
    assert created.status_code == 201, created.json
    course_id: int = created.json["id"]
    assert (
        client.post(f"/api/v1/courses/{course_id}/lessons", json={"title": "配方法"}, headers=auth).status_code == 201
    )
    return course_id


def _history(client: FlaskClient, course_id: int, auth: dict[str, str]) -> list[tuple[str, str, str]]:
    answer = client.get(f"/api/v1/courses/{course_id}/history", headers=auth)
    assert answer.status_code == 200, answer.json
    for item in answer.json["items"]:
        assert item["at"].endswith(("Z", "+00:00"))  # when, as an aware time
    return [(e["action"], e["by"], e["note"]) for e in answer.json["items"]]


def _index_jobs(db: Session, course_id: int) -> int:
    db.expire_all()
    return sum(
        1 for row in db.scalars(select(Outbox).where(Outbox.task == jobs.INDEX_COURSE)) if row.args == [course_id]
    )


# ------------------------------------------------------------------ off: as before, but logged


@pytest.mark.parametrize("app", ["off"], indirect=True)
def test_review_off_publishes_directly_and_logs_it(client: FlaskClient, people: People) -> None:
    course_id = _course(client, people.uploader)
    published = client.post(f"/api/v1/courses/{course_id}/publish", headers=people.uploader)
    assert published.status_code == 200 and published.json["status"] == "published"
    assert client.get(f"/api/v1/courses/{course_id}").status_code == 200  # public at once
    withdrawn = client.post(f"/api/v1/courses/{course_id}/withdraw", headers=people.uploader)
    assert withdrawn.json["status"] == "withdrawn"
    assert _history(client, course_id, people.uploader) == [
        ("published", "up@haidian.cn", ""),
        ("withdrawn", "up@haidian.cn", ""),
    ]
    page = client.get(f"/upload/courses/{course_id}", headers=people.uploader)
    assert "提交审核" not in page.text


# ------------------------------------------------------------------ on: submit, review, approve or return


def test_publish_submits_and_a_reviewer_of_the_region_approves(
    client: FlaskClient, people: People, db: Session
) -> None:
    course_id = _course(client, people.uploader)
    submitted = client.post(f"/api/v1/courses/{course_id}/publish", headers=people.uploader)
    assert submitted.status_code == 200 and submitted.json["status"] == "submitted"
    assert client.post(f"/api/v1/courses/{course_id}/publish", headers=people.uploader).json["status"] == "submitted"
    assert client.get(f"/api/v1/courses/{course_id}").status_code == 404  # not public yet
    assert db.scalar(select(Change).where(Change.course_id == course_id)) is None  # nor sent to school servers

    queue = client.get("/api/v1/review/queue", headers=people.reviewer)
    assert queue.status_code == 200
    [item] = queue.json["items"]
    assert item["course"]["id"] == course_id and item["submitted_by"] == "up@haidian.cn"
    assert [i["course"]["id"] for i in client.get("/api/v1/review/queue", headers=people.province).json["items"]] == [
        course_id
    ]
    assert client.get("/api/v1/review/queue", headers=people.outsider).json["items"] == []
    assert client.get("/api/v1/review/queue", headers=people.teacher).status_code == 403
    assert client.get("/api/v1/review/queue").status_code == 401

    # The reviewer previews it, unpublished lessons and materials included.
    assert client.get(f"/api/v1/courses/{course_id}", headers=people.reviewer).status_code == 200
    lessons = client.get(f"/api/v1/courses/{course_id}/lessons", headers=people.reviewer)
    assert lessons.status_code == 200 and lessons.json["items"][0]["title"] == "配方法"

    outside = client.post(f"/api/v1/courses/{course_id}/approve", headers=people.outsider)
    assert outside.status_code == 403
    assert "outside the region" in outside.json["error"]["message"]
    assert client.post(f"/api/v1/courses/{course_id}/approve", headers=people.uploader).status_code == 403
    assert client.post(f"/api/v1/courses/{course_id}/approve", headers=people.teacher).status_code == 403

    indexed_before = _index_jobs(db, course_id)
    approved = client.post(f"/api/v1/courses/{course_id}/approve", headers=people.reviewer)
    assert approved.status_code == 200 and approved.json["status"] == "published"
    assert approved.json["published_at"]
    assert client.get(f"/api/v1/courses/{course_id}").status_code == 200
    assert _index_jobs(db, course_id) == indexed_before + 1  # the search index hears of it, as on publish
    assert db.scalar(select(Change.action).where(Change.course_id == course_id)) == "published"  # school servers too
    again = client.post(f"/api/v1/courses/{course_id}/approve", headers=people.reviewer)
    assert again.status_code == 409

    assert _history(client, course_id, people.reviewer) == [
        ("submitted", "up@haidian.cn", ""),
        ("approved", "rev@bj.gov.cn", ""),
    ]
    assert client.get(f"/api/v1/courses/{course_id}/history", headers=people.outsider).status_code == 403


def test_return_sends_the_course_back_with_a_note(client: FlaskClient, people: People) -> None:
    course_id = _course(client, people.uploader)
    client.post(f"/api/v1/courses/{course_id}/publish", headers=people.uploader)
    url = f"/api/v1/courses/{course_id}/return"
    assert client.post(url, json={"note": "  "}, headers=people.reviewer).status_code == 422
    assert client.post(url, json={}, headers=people.reviewer).status_code == 422
    assert client.post(url, json={"note": "x"}, headers=people.outsider).status_code == 403
    returned = client.post(url, json={"note": "第二课缺少讲义，请补上。"}, headers=people.reviewer)
    assert returned.status_code == 200 and returned.json["status"] == "draft"
    assert client.post(url, json={"note": "again"}, headers=people.reviewer).status_code == 409

    page = client.get(f"/upload/courses/{course_id}", headers=people.uploader)
    assert "审核员退回了这门课程" in page.text and "第二课缺少讲义，请补上。" in page.text
    assert "提交审核" in page.text  # the button says what it does when review is required

    assert client.post(f"/api/v1/courses/{course_id}/submit", headers=people.uploader).json["status"] == "submitted"
    page = client.get(f"/upload/courses/{course_id}", headers=people.uploader)
    assert "第二课缺少讲义" in page.text  # in the history
    assert "审核员退回了这门课程" not in page.text  # no longer a note to act on
    assert "正在等待本地区审核员审核" in page.text
    assert [(a, by) for a, by, _ in _history(client, course_id, people.uploader)] == [
        ("submitted", "up@haidian.cn"),
        ("returned", "rev@bj.gov.cn"),
        ("submitted", "up@haidian.cn"),
    ]
    assert _history(client, course_id, people.uploader)[1][2] == "第二课缺少讲义，请补上。"


def test_admins_publish_directly_and_may_review_anywhere(client: FlaskClient, people: People) -> None:
    direct = _course(client, people.admin)
    assert client.post(f"/api/v1/courses/{direct}/publish", headers=people.admin).json["status"] == "published"
    course_id = _course(client, people.uploader)
    client.post(f"/api/v1/courses/{course_id}/publish", headers=people.uploader)
    assert [i["course"]["id"] for i in client.get("/api/v1/review/queue", headers=people.admin).json["items"]] == [
        course_id
    ]
    assert client.post(f"/api/v1/courses/{course_id}/approve", headers=people.admin).json["status"] == "published"


def test_openapi_documents_the_review_endpoints(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in ("submit", "approve", "return", "history"):
        assert f"/api/v1/courses/{{course_id}}/{path}" in paths
    assert "/api/v1/review/queue" in paths


# ------------------------------------------------------------------ the pages


def _browser(app: Flask, email: str) -> FlaskClient:
    app.config["WTF_CSRF_ENABLED"] = True
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    signed_in = browser.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 302
    return browser


def test_reviewer_pages_queue_preview_return_and_approve(
    app: Flask, client: FlaskClient, make: Accounts, db: Session, people: People
) -> None:
    bureau = accounts.get_school_by_name(db, "北京市教委")
    make.user("rev-web@bj.gov.cn", bureau, "reviewer", password=PASSWORD)
    make.user("rev-web@sh.gov.cn", accounts.get_school_by_name(db, "上海市教委"), "reviewer", password=PASSWORD)
    course_id = _course(client, people.uploader, title="九年级数学 待审")
    lesson_id = client.get(f"/api/v1/courses/{course_id}/lessons", headers=people.uploader).json["items"][0]["id"]
    client.post(f"/api/v1/courses/{course_id}/publish", headers=people.uploader)

    reviewer = _browser(app, "rev-web@bj.gov.cn")
    queue = reviewer.get("/review/")
    assert queue.status_code == 200 and "待审核课程" in queue.text and "九年级数学 待审" in queue.text
    assert 'href="/review/"' in queue.text  # the header links the queue
    preview = reviewer.get(f"/review/courses/{course_id}")
    assert preview.status_code == 200
    assert "配方法" in preview.text and "通过并发布" in preview.text and "退回修改" in preview.text
    assert "提交审核" in preview.text and "up@haidian.cn" in preview.text  # the history so far
    assert reviewer.get(f"/lessons/{lesson_id}").status_code == 200  # the unpublished lesson itself
    assert f'href="/review/courses/{course_id}"' in reviewer.get(f"/courses/{course_id}").text
    token = _csrf(preview.text)

    empty = reviewer.post(f"/review/courses/{course_id}/return", data={"note": "", "csrf_token": token})
    assert empty.status_code == 422 and "请写明上传者需要修改什么" in empty.text
    returned = reviewer.post(f"/review/courses/{course_id}/return", data={"note": "请补充讲义", "csrf_token": token})
    assert returned.status_code == 303
    after = reviewer.get(f"/review/courses/{course_id}")
    assert "退回修改" in after.text and "请补充讲义" in after.text and "通过并发布" not in after.text

    client.post(f"/api/v1/courses/{course_id}/submit", headers=people.uploader)
    outsider = _browser(app, "rev-web@sh.gov.cn")
    assert "九年级数学 待审" not in outsider.get("/review/").text
    assert outsider.get(f"/review/courses/{course_id}").status_code == 403
    refused = outsider.post(
        f"/review/courses/{course_id}/approve", data={"csrf_token": _csrf(outsider.get("/review/").text)}
    )
    assert refused.status_code == 403 and "您负责审核的地区以外" in refused.text

    approved = reviewer.post(f"/review/courses/{course_id}/approve", data={"csrf_token": token})
    assert approved.status_code == 303
    assert client.get(f"/courses/{course_id}").status_code == 200  # public now
    assert "没有等待您审核的课程" in reviewer.get("/review/").text
    history = reviewer.get(f"/review/courses/{course_id}").text
    # Who returned it and who approved it (and the page header's signed-in reviewer).
    assert history.count("rev-web@bj.gov.cn") == 3 and "审核通过并发布" in history

    teacher = _browser(
        app,
        make.user("t2@haidian.cn", accounts.get_school_by_name(db, "海淀实验小学"), "teacher", password=PASSWORD).email,
    )
    assert teacher.get("/review/").status_code == 403
    assert app.test_client().get("/review/").status_code == 302  # to the sign-in page
