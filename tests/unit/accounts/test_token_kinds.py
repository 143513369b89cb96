"""Token kinds: a school server's sync token works only on the sync API, and only it writes for a school server."""

from __future__ import annotations

import io
import os
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.accounts.models import ApiToken
from hub.catalog import services as catalog
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import utcnow
from hub.media.models import Blob, Rendition
from tests.conftest import COURSE, Accounts

COUNTS = "/api/v1/sync/counts"


@pytest.fixture
def hub(app: Flask, db: Session, make: Accounts) -> dict[str, Any]:
    famous = make.school("海淀实验小学", "famous")
    rural = make.school("山村小学", "rural")
    accounts.pair_schools(db, famous, rural)
    uploader = make.user("up@famous.example", famous, "uploader")
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    storage = app.extensions["hub.storage"]
    material = catalog.add_material(
        db, storage, uploader, lesson.id, io.BytesIO(os.urandom(100)), filename="a.mp4", title="配方法"
    )
    poster = storage.store(io.BytesIO(os.urandom(200)))
    db.add(Blob(sha256=poster.sha256, size=200, media_type="image/jpeg"))
    db.add(Rendition(material=material, profile="poster", status="ready", blob_sha256=poster.sha256))
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    server = make.user("server@rural.example", rural, "teacher")
    teacher = make.user("t@rural.example", rural, "teacher")
    return {
        "course": course.id,
        "poster": poster.sha256,
        "sync": make.bearer(server, kind="sync"),
        "teacher": make.bearer(teacher),
        "uploader": make.bearer(uploader),
    }


def _report() -> dict[str, Any]:
    return {"id": os.urandom(16).hex(), "counts": []}


def test_a_teachers_token_cannot_send_download_counts(client: FlaskClient, hub: dict[str, Any]) -> None:
    for who in ("teacher", "uploader"):
        refused = client.post(COUNTS, json=_report(), headers=hub[who])
        assert refused.status_code == 403, who
        assert "sync token" in refused.json["error"]["message"]
    assert client.post(COUNTS, json=_report(), headers=hub["sync"]).status_code == 200


def test_a_signed_in_browser_cannot_send_download_counts_either(app: Flask, make: Accounts) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    make.user("admin@rural.cn", make.school("山村小学", "rural"), "admin", password="a long password")
    browser = app.test_client()
    assert browser.post("/login", data={"email": "admin@rural.cn", "password": "a long password"}).status_code == 302
    match = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").text)
    assert match  # the sign-out form's token: this request comes from our own pages
    refused = browser.post(COUNTS, json=_report(), headers={"X-CSRFToken": match.group(1)})
    assert refused.status_code == 403, refused.json


def test_school_server_writes_need_the_sync_token_and_reads_do_not(client: FlaskClient, hub: dict[str, Any]) -> None:
    subscribe = {"course": hub["course"]}
    assert client.post("/api/v1/sync/subscriptions", json=subscribe, headers=hub["teacher"]).status_code == 403
    created = client.post("/api/v1/sync/subscriptions", json=subscribe, headers=hub["sync"])
    assert created.status_code == 201
    # A user's token still reads what its user may see: the feed, the school's subscriptions.
    assert client.get("/api/v1/sync/feed", headers=hub["teacher"]).status_code == 200
    listed = client.get("/api/v1/sync/subscriptions", headers=hub["teacher"])
    assert [s["id"] for s in listed.json["items"]] == [created.json["id"]]
    gone = client.delete(f"/api/v1/sync/subscriptions/{created.json['id']}", headers=hub["teacher"])
    assert gone.status_code == 403


def test_a_sync_token_works_only_on_the_sync_api(client: FlaskClient, hub: dict[str, Any]) -> None:
    sync = hub["sync"]
    assert client.get("/api/v1/sync/feed", headers=sync).status_code == 200
    # The blob downloads of a pull: large files one by one, with Range.
    blob = client.get(f"/api/v1/blobs/{hub['poster']}", headers={**sync, "Range": "bytes=0-9"})
    assert blob.status_code in (206, 302)  # 302: S3 storage sends the bytes itself
    for method, path, body in [
        ("get", "/api/v1/courses", None),
        ("get", f"/api/v1/courses/{hub['course']}", None),
        ("post", "/api/v1/courses", COURSE),
        ("post", f"/api/v1/courses/{hub['course']}/withdraw", None),
        ("post", "/api/v1/uploads/", None),
        ("get", "/api/v1/search?q=x", None),
    ]:
        headers = {**sync, "Tus-Resumable": "1.0.0", "Upload-Length": "10"}  # for the tus server
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.json["error"]["code"] == "forbidden"
    page = client.get("/", headers={**sync, "Accept-Language": "en"})
    assert page.status_code == 403 and "sync token" in page.text


def test_a_refused_bearer_token_on_a_page_is_an_error_page_not_a_crash(client: FlaskClient) -> None:
    page = client.get("/", headers={"Authorization": "Bearer hub_nope", "Accept-Language": "en"})
    assert page.status_code == 401 and "unknown or revoked" in page.text


def test_last_used_at_is_written_at_most_once_a_minute(client: FlaskClient, db: Session, hub: dict[str, Any]) -> None:
    token = hub["teacher"]["Authorization"].removeprefix("Bearer ")
    row = db.scalars(select(ApiToken).where(ApiToken.prefix == token[:12])).one()
    assert row.last_used_at is None
    before = utcnow()
    client.get("/api/v1/courses", headers=hub["teacher"])
    db.expire_all()
    first = row.last_used_at
    assert first is not None and first >= before - timedelta(seconds=1)
    client.get("/api/v1/courses", headers=hub["teacher"])
    db.expire_all()
    assert row.last_used_at == first  # within the minute: no write
    row.last_used_at = first - timedelta(minutes=2)
    db.commit()
    client.get("/api/v1/courses", headers=hub["teacher"])
    db.expire_all()
    assert row.last_used_at is not None and row.last_used_at > first - timedelta(minutes=1)


def test_revoking_by_prefix(client: FlaskClient, db: Session, hub: dict[str, Any], make: Accounts) -> None:
    token = hub["sync"]["Authorization"].removeprefix("Bearer ")
    row, was_live = accounts.revoke_token(db, token[:12])
    db.commit()
    assert was_live and row.kind == "sync"
    assert client.get("/api/v1/sync/feed", headers=hub["sync"]).status_code == 401
    assert accounts.revoke_token(db, token[:12])[1] is False  # again: nothing to do
