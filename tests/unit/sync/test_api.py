"""The upstream's sync endpoints through Flask's test client: who may ask, and what comes back."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.accounts.models import User
from hub.catalog import services as catalog
from hub.catalog.models import Lesson
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import utcnow
from hub.media.models import Blob, Rendition
from hub.sync import manifest as mf
from tests.conftest import COURSE, Accounts


@pytest.fixture
def setup(app: Flask, db: Session, make: Accounts) -> dict[str, Any]:
    famous = make.school("海淀实验小学", "famous")
    rural = make.school("山村小学", "rural")
    accounts.pair_schools(db, famous, rural)
    uploader = make.user("up@famous.example", famous, "uploader")
    storage = app.extensions["hub.storage"]
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    material = catalog.add_material(
        db, storage, uploader, lesson.id, io.BytesIO(os.urandom(100)), filename="a.mp4", title="配方法"
    )
    blobs = []
    for profile, size in (("video-360p", 3000), ("poster", 200)):
        stored = storage.store(io.BytesIO(os.urandom(size)))
        db.add(Blob(sha256=stored.sha256, size=size, media_type="video/mp4"))
        db.add(Rendition(material=material, profile=profile, status="ready", blob_sha256=stored.sha256))
        blobs.append(stored.sha256)
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    key = mf.generate_private_key()
    mf.save_private_key(key, app.extensions["hub.settings"].sync_signing_key)
    return {
        "course": course.id,
        "blobs": blobs,
        "key": key,
        "rural": make.bearer(make.user("s@rural.cn", rural, "teacher"), kind="sync"),  # the school server's
    }


def test_everything_needs_a_token(client: FlaskClient) -> None:
    for method, path in [
        ("get", "/api/v1/sync/feed"),
        ("get", "/api/v1/sync/manifest"),
        ("post", "/api/v1/sync/counts"),
    ]:
        body = {"id": "a" * 32, "counts": []} if method == "post" else None
        response = getattr(client, method)(path, json=body)
        assert response.status_code == 401, path


def test_subscribe_then_get_a_signed_manifest(client: FlaskClient, setup: dict[str, Any]) -> None:
    headers = setup["rural"]
    created = client.post("/api/v1/sync/subscriptions", json={"paired_with": "海淀实验小学"}, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["kind"] == "paired"
    listed = client.get("/api/v1/sync/subscriptions", headers=headers).json["items"]
    assert [s["id"] for s in listed] == [created.json["id"]]
    response = client.get("/api/v1/sync/manifest", headers=headers)
    assert response.status_code == 200
    manifest = mf.verify(response.data, setup["key"].public_key(), not_older_than=None, now=mf.datetime.now(mf.UTC))
    assert [c.id for c in manifest.courses] == [setup["course"]]
    assert manifest.subscriber.name == "山村小学"
    assert client.delete(f"/api/v1/sync/subscriptions/{created.json['id']}", headers=headers).status_code == 204


def test_bad_subscriptions_are_422_or_404(client: FlaskClient, setup: dict[str, Any]) -> None:
    headers = setup["rural"]
    assert client.post("/api/v1/sync/subscriptions", json={"subject": "alchemy"}, headers=headers).status_code == 422
    assert client.post("/api/v1/sync/subscriptions", json={"grades": "3-4"}, headers=headers).status_code == 422
    assert client.post("/api/v1/sync/subscriptions", json={"course": 999}, headers=headers).status_code == 404
    assert client.post("/api/v1/sync/subscriptions", json={"evil": 1}, headers=headers).status_code == 422


def test_no_signing_key_is_a_503_that_says_what_to_do(app: Flask, client: FlaskClient, setup: dict[str, Any]) -> None:
    app.extensions["hub.settings"].sync_signing_key.unlink()
    response = client.get("/api/v1/sync/manifest", headers=setup["rural"])
    assert response.status_code == 503
    assert "hub keys generate" in response.json["error"]["message"]


def test_feed_pages_by_cursor(client: FlaskClient, setup: dict[str, Any]) -> None:
    feed = client.get("/api/v1/sync/feed?since=0", headers=setup["rural"]).json
    assert [(c["course"], c["action"]) for c in feed["changes"]] == [(setup["course"], "published")]
    later = client.get(f"/api/v1/sync/feed?since={feed['cursor']}", headers=setup["rural"]).json
    assert later["changes"] == [] and later["cursor"] == feed["cursor"]


def test_blob_batches_carry_many_blobs_in_one_response(client: FlaskClient, setup: dict[str, Any], app: Flask) -> None:
    storage = app.extensions["hub.storage"]
    response = client.post("/api/v1/sync/blobs", json={"sha256": setup["blobs"]}, headers=setup["rural"])
    assert response.status_code == 200
    body = io.BytesIO(response.data)
    for sha in setup["blobs"]:
        name, size = body.readline().decode().split()
        assert name == sha
        assert body.read(int(size)) == b"".join(storage.open_range(sha, 0, None))
    assert body.read() == b""
    unknown = client.post("/api/v1/sync/blobs", json={"sha256": ["0" * 64]}, headers=setup["rural"])
    assert unknown.status_code == 404


def test_counts_are_added_once_per_report(client: FlaskClient, setup: dict[str, Any]) -> None:
    # Counted only for blobs of courses the school subscribes to (tests/unit/sync/test_counts.py).
    client.post("/api/v1/sync/subscriptions", json={"course": setup["course"]}, headers=setup["rural"])
    today = utcnow().date().isoformat()
    body = {"id": "b" * 32, "counts": [{"sha256": setup["blobs"][0], "day": today, "count": 7}]}
    assert client.post("/api/v1/sync/counts", json=body, headers=setup["rural"]).json == {
        "added": 7,
        "ignored": 0,
        "usage_added": 0,
        "usage_ignored": 0,
    }
    assert client.post("/api/v1/sync/counts", json=body, headers=setup["rural"]).json == {
        "added": 0,
        "ignored": 7,
        "usage_added": 0,
        "usage_ignored": 0,
    }
    bad = {"id": "not-an-id", "counts": []}
    assert client.post("/api/v1/sync/counts", json=bad, headers=setup["rural"]).status_code == 422


def test_the_manifest_travels_compressed_when_asked(client: FlaskClient, setup: dict[str, Any]) -> None:
    import gzip

    headers = setup["rural"]
    client.post("/api/v1/sync/subscriptions", json={"course": setup["course"]}, headers=headers)
    plain = client.get("/api/v1/sync/manifest", headers=headers)
    packed = client.get("/api/v1/sync/manifest", headers={**headers, "Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    key, now = setup["key"].public_key(), mf.datetime.now(mf.UTC)
    unpacked = mf.verify(gzip.decompress(packed.data), key, not_older_than=None, now=now)
    assert unpacked.courses == mf.verify(plain.data, key, not_older_than=None, now=now).courses


def test_a_batch_never_carries_a_draft_courses_blob(
    app: Flask, client: FlaskClient, db: Session, setup: dict[str, Any]
) -> None:
    uploader = accounts.get_user_by_email(db, "up@famous.example")
    draft = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, uploader, draft.id, LessonCreate(title="草稿"))
    material = catalog.add_material(
        db, app.extensions["hub.storage"], uploader, lesson.id, io.BytesIO(b"draft bytes"), filename="d.pdf", title="d"
    )
    db.commit()
    secret = material.original_sha256
    response = client.post("/api/v1/sync/blobs", json={"sha256": [setup["blobs"][0], secret]}, headers=setup["rural"])
    assert response.status_code == 404
    assert secret not in response.text and setup["blobs"][0] not in response.text


def test_the_sync_page_is_for_admins(client: FlaskClient, make: Accounts) -> None:
    school = make.school("山村小学", "rural")
    make.user("admin@rural.cn", school, "admin", password="a long password 1")
    make.user("t@rural.cn", school, "teacher", password="a long password 2")
    assert client.get("/admin/sync/").status_code == 302  # sign in first
    with client.session_transaction() as session:
        session["user_id"] = accounts.get_user_by_email(make.session, "t@rural.cn").id
    assert client.get("/admin/sync/").status_code == 403
    with client.session_transaction() as session:
        session["user_id"] = accounts.get_user_by_email(make.session, "admin@rural.cn").id
    page = client.get("/admin/sync/", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "not a mirror" in page.text and "No runs yet." in page.text
    assert 'href="/admin/servers/"' in page.text  # an upstream's admin finds its school servers from here


def test_an_unchanged_manifest_is_a_304(client: FlaskClient, setup: dict[str, Any]) -> None:
    headers = setup["rural"]
    client.post("/api/v1/sync/subscriptions", json={"course": setup["course"]}, headers=headers)
    first = client.get("/api/v1/sync/manifest", headers=headers)
    assert first.headers["ETag"] == mf.manifest_etag(1)
    again = client.get("/api/v1/sync/manifest", headers={**headers, "If-None-Match": mf.manifest_etag(1)})
    assert again.status_code == 304 and again.data == b""
    older = client.get("/api/v1/sync/manifest", headers={**headers, "If-None-Match": mf.manifest_etag(0)})
    assert older.status_code == 200 and older.data


def test_course_entries_come_whole_or_as_changes_since_and_only_for_subscribed_courses(
    app: Flask, db: Session, client: FlaskClient, setup: dict[str, Any], make: Accounts
) -> None:
    headers = setup["rural"]
    client.post("/api/v1/sync/subscriptions", json={"course": setup["course"]}, headers=headers)
    uploader = db.scalars(select(User).where(User.email == "up@famous.example")).one()
    other = catalog.create_course(db, uploader, CourseCreate(**COURSE))  # a draft, and not subscribed anyway
    db.execute(update(Lesson).values(changed_at=utcnow() - timedelta(hours=1)))
    db.commit()
    key, now = setup["key"].public_key(), mf.datetime.now(mf.UTC)
    index = mf.verify(client.get("/api/v1/sync/manifest", headers=headers).data, key, not_older_than=None, now=now)

    response = client.post("/api/v1/sync/courses", json={"courses": [setup["course"], other.id]}, headers=headers)
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    [line] = [json.loads(raw) for raw in response.data.splitlines()]
    assert line["id"] == setup["course"]
    body = mf.canonical_json(line["entry"])
    assert hashlib.sha256(body).hexdigest() == index.courses[0].revision
    assert mf.entry_from_bytes(body, index.courses[0]).lessons[0].title == "配方法"

    # As of the index: a lesson added since is all a patch carries.
    added = catalog.create_lesson(db, uploader, setup["course"], LessonCreate(title="公式法"))
    db.commit()
    newer = mf.verify(client.get("/api/v1/sync/manifest", headers=headers).data, key, not_older_than=None, now=now)
    since = {"courses": [setup["course"]], "since": index.issued_at.isoformat()}
    [patch] = [
        json.loads(raw)["patch"]
        for raw in client.post("/api/v1/sync/courses", json=since, headers=headers).data.splitlines()
    ]
    assert [lesson["id"] for lesson in patch["changed"]] == [added.id]
    merged = mf.merge_patch(body, patch)
    assert merged is not None and hashlib.sha256(mf.canonical_json(merged)).hexdigest() == newer.courses[0].revision

    too_many = {"courses": list(range(1, 502))}
    assert client.post("/api/v1/sync/courses", json=too_many, headers=headers).status_code == 422
    assert client.post("/api/v1/sync/courses", json={"courses": []}, headers=headers).status_code == 422
    naive = {"courses": [1], "since": "2026-12-01T20:00:00"}
    assert client.post("/api/v1/sync/courses", json=naive, headers=headers).status_code == 422
    assert client.post("/api/v1/sync/courses", json={"courses": [1]}).status_code == 401


def test_the_feed_says_how_many_changes_wait_without_sending_them(client: FlaskClient, setup: dict[str, Any]) -> None:
    feed = client.get("/api/v1/sync/feed?since=0&limit=1", headers=setup["rural"]).json
    assert feed["pending"] == 1 and len(feed["changes"]) == 1
    later = client.get(f"/api/v1/sync/feed?since={feed['cursor']}&limit=1", headers=setup["rural"]).json
    assert later["pending"] == 0


def test_the_catalog_gives_each_course_its_mirrored_size_and_the_schools_subscriptions_and_pairings(
    app: Flask, db: Session, client: FlaskClient, setup: dict[str, Any]
) -> None:
    assert client.get("/api/v1/sync/catalog").status_code == 401
    headers = setup["rural"]
    uploader = db.scalars(select(User).where(User.email == "up@famous.example")).one()
    draft = catalog.create_course(db, uploader, CourseCreate(**{**COURSE, "title": "草稿"}))
    db.commit()
    # The 360p video and the poster; not the original, and the 240p one only if no 360p is ready.
    material = db.scalars(select(Rendition)).first().material  # type: ignore[union-attr]
    stored = app.extensions["hub.storage"].store(io.BytesIO(os.urandom(1000)))
    db.add(Blob(sha256=stored.sha256, size=1000, media_type="video/mp4"))
    db.add(Rendition(material=material, profile="video-240p", status="ready", blob_sha256=stored.sha256))
    db.commit()

    offered = client.get("/api/v1/sync/catalog", headers=headers).json
    assert offered["profiles"] == ["video-360p", "video-240p"]
    assert [(c["id"], c["title"], c["bytes"], c["lessons"], c["subscribed"]) for c in offered["courses"]] == [
        (setup["course"], COURSE["title"], 3200, 1, False)
    ]
    assert draft.id not in [c["id"] for c in offered["courses"]]
    assert offered["subscriptions"] == [] and offered["subscribed_bytes"] == 0
    assert [(p["name"], p["courses"], p["bytes"]) for p in offered["paired"]] == [("海淀实验小学", 1, 3200)]

    client.post("/api/v1/sync/subscriptions", json={"subject": "math", "grades": "7-9"}, headers=headers)
    offered = client.get("/api/v1/sync/catalog", headers=headers).json
    assert offered["courses"][0]["subscribed"] is True
    [subscription] = offered["subscriptions"]
    assert (subscription["kind"], subscription["subject"], subscription["grade_min"], subscription["grade_max"]) == (
        "subject",
        "math",
        7,
        9,
    )
    assert subscription["courses"] == [setup["course"]] and subscription["bytes"] == 3200
    assert offered["subscribed_bytes"] == 3200


def test_the_catalog_counts_the_subtitle_tracks_a_school_server_that_reads_them_mirrors(
    app: Flask, db: Session, client: FlaskClient, setup: dict[str, Any]
) -> None:
    from hub.subtitles import services as subtitles
    from hub.sync.client import WITH_EXTRAS

    uploader = db.scalars(select(User).where(User.email == "up@famous.example")).one()
    material = db.scalars(select(Rendition)).first().material  # type: ignore[union-attr]
    track = subtitles.attach_subtitle(
        db,
        app.extensions["hub.storage"],
        uploader,
        material.id,
        b"WEBVTT\n\n00:00.000 --> 00:02.000\n\xe9\x85\x8d\n",
        language="zh",
    )
    db.commit()
    vtt = db.get(Blob, track.blob_sha256).size  # type: ignore[union-attr]
    older = client.get("/api/v1/sync/catalog", headers=setup["rural"]).json
    current = client.get("/api/v1/sync/catalog" + WITH_EXTRAS, headers=setup["rural"]).json
    assert older["courses"][0]["bytes"] == 3200  # a release that does not read tracks does not fetch them
    assert current["courses"][0]["bytes"] == 3200 + vtt
    assert current["profiles"] == ["video-360p", "video-240p"]
