"""Editing through the JSON API: lessons changed, moved, reordered and deleted; materials removed and replaced.

Every change must reach search (an index task in the outbox), the change feed (a published
course's new version) and, through the lesson stamps, school servers (tests/functional/test_sync.py
has the two-hub test). The bytes of a removed material go only when nothing else uses them.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import jobs
from hub.api import openapi_document
from hub.catalog.models import Course, Lesson, Material
from hub.db import get_database
from hub.jobs import Outbox
from hub.media import services as media_services
from hub.media.models import Blob, Rendition
from hub.media.storage import Storage
from hub.sync.models import Change
from hub.uploads.models import Upload
from tests.conftest import COURSE, Accounts
from tests.unit.uploads.conftest import PATCH, TUS, metadata, mp4_bytes


@pytest.fixture
def people(make: Accounts) -> dict[str, Any]:
    school = make.school("海淀实验小学", "famous")
    other = make.school("上海第一中学", "famous")
    return {
        "uploader": make.bearer(make.user("up@haidian.cn", school, "uploader")),
        "teacher": make.bearer(make.user("t@haidian.cn", school, "teacher")),
        "other": make.bearer(make.user("up@shyz.cn", other, "uploader")),
        "admin": make.bearer(make.user("admin@hub.cn", other, "admin")),
    }


def _course(client: FlaskClient, headers: dict[str, str], titles: list[str]) -> tuple[int, list[int]]:
    course = client.post("/api/v1/courses", json=COURSE, headers=headers).json
    assert course is not None
    lessons = []
    for title in titles:
        answer = client.post(f"/api/v1/courses/{course['id']}/lessons", json={"title": title}, headers=headers)
        assert answer.status_code == 201
        lessons.append(answer.json["id"])
    return course["id"], lessons


def _titles(client: FlaskClient, course_id: int, headers: dict[str, str]) -> list[str]:
    items = client.get(f"/api/v1/courses/{course_id}/lessons", headers=headers).json["items"]
    return [item["title"] for item in items]


def _material(client: FlaskClient, headers: dict[str, str], lesson_id: int, data: bytes, name: str) -> dict[str, Any]:
    answer = client.post(
        f"/api/v1/lessons/{lesson_id}/materials",
        data={"file": (io.BytesIO(data), name), "title": name},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert answer.status_code == 201, answer.json
    return answer.json  # type: ignore[no-any-return]


def _run_blob_tasks(app: Flask, db: Session) -> list[str]:
    """What the worker does with the queued REMOVE_UNUSED_BLOBS tasks (tasks/outbox are tested elsewhere)."""
    dropped: list[str] = []
    storage: Storage = app.extensions["hub.storage"]
    db.expire_all()
    for row in db.scalars(select(Outbox).where(Outbox.task == jobs.REMOVE_UNUSED_BLOBS)):
        dropped += media_services.remove_unused_blobs(get_database(app), storage, *row.args)
        db.delete(row)
    db.commit()
    return dropped


def _queued(db: Session, task: str) -> list[list[Any]]:
    db.expire_all()
    return [row.args for row in db.scalars(select(Outbox).where(Outbox.task == task).order_by(Outbox.id))]


def test_a_lesson_is_changed_and_moved(client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    course_id, (_first, second, third) = _course(client, up, ["第一课", "第二课", "第三课"])
    changed = client.patch(
        f"/api/v1/lessons/{second}", json={"title": "配方法", "unit": "第二单元", "summary": "例题"}, headers=up
    )
    assert changed.status_code == 200
    assert {k: changed.json[k] for k in ("title", "unit", "summary", "position")} == {
        "title": "配方法",
        "unit": "第二单元",
        "summary": "例题",
        "position": 2,
    }
    # position moves it; the others close up, first to last 1..n.
    moved = client.patch(f"/api/v1/lessons/{third}", json={"position": 1}, headers=up)
    assert moved.status_code == 200 and moved.json["position"] == 1
    assert _titles(client, course_id, up) == ["第三课", "第一课", "配方法"]
    # Past the end means last.
    assert client.patch(f"/api/v1/lessons/{third}", json={"position": 99}, headers=up).json["position"] == 3
    assert _titles(client, course_id, up) == ["第一课", "配方法", "第三课"]
    assert _queued(db, jobs.INDEX_COURSE).count([course_id]) >= 4  # each change reaches search


def test_lesson_changes_are_checked(client: FlaskClient, people: dict[str, Any]) -> None:
    up = people["uploader"]
    _, (lesson,) = _course(client, up, ["第一课"])
    for body, field in (
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"position": 0}, "position"),
        ({"colour": "red"}, "colour"),
    ):
        answer = client.patch(f"/api/v1/lessons/{lesson}", json=body, headers=up)
        assert answer.status_code == 422 and field in answer.json["error"]["fields"], (body, answer.json)
    assert client.patch(f"/api/v1/lessons/{lesson}", data="title", headers=up).status_code == 400
    assert client.patch("/api/v1/lessons/999999", json={"title": "x"}, headers=up).status_code == 404


def test_only_the_owning_school_edits(client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    course_id, (lesson, other_lesson) = _course(client, up, ["第一课", "第二课"])
    body = {"title": "改名"}
    order = {"lessons": [other_lesson, lesson]}
    # A draft: others do not see it at all.
    for who in ("other",):
        assert client.patch(f"/api/v1/lessons/{lesson}", json=body, headers=people[who]).status_code == 404
        assert client.delete(f"/api/v1/lessons/{lesson}", headers=people[who]).status_code == 404
        assert (
            client.put(f"/api/v1/courses/{course_id}/lesson-order", json=order, headers=people[who]).status_code == 404
        )
    assert client.patch(f"/api/v1/lessons/{lesson}", json=body).status_code == 401
    assert client.delete(f"/api/v1/lessons/{lesson}").status_code == 401
    assert client.post(f"/api/v1/courses/{course_id}/publish", headers=up).status_code == 200
    # Published: readable by all, still changed by its school's uploaders (and admins) only.
    for who in ("other", "teacher"):
        refused = client.patch(f"/api/v1/lessons/{lesson}", json=body, headers=people[who])
        assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
        assert client.delete(f"/api/v1/lessons/{lesson}", headers=people[who]).status_code == 403
        assert (
            client.put(f"/api/v1/courses/{course_id}/lesson-order", json=order, headers=people[who]).status_code == 403
        )
    version = client.get(f"/api/v1/courses/{course_id}").json["version"]
    assert client.patch(f"/api/v1/lessons/{lesson}", json=body, headers=up).status_code == 200
    assert client.patch(f"/api/v1/lessons/{lesson}", json={"unit": "一"}, headers=people["admin"]).status_code == 200
    # Each change to a published course is a new version in the change feed.
    assert client.get(f"/api/v1/courses/{course_id}").json["version"] == version + 2
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Change).where(Change.course_id == course_id)) == 3
    # A change that changes nothing is no new version.
    assert client.patch(f"/api/v1/lessons/{lesson}", json=body, headers=up).status_code == 200
    assert client.get(f"/api/v1/courses/{course_id}").json["version"] == version + 2


def test_reorder_a_course(client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    course_id, ids = _course(client, up, ["一", "二", "三", "四"])
    url = f"/api/v1/courses/{course_id}/lesson-order"
    answer = client.put(url, json={"lessons": [ids[3], ids[0], ids[1], ids[2]]}, headers=up)
    assert answer.status_code == 200
    assert [(item["title"], item["position"]) for item in answer.json["items"]] == [
        ("四", 1),
        ("一", 2),
        ("二", 3),
        ("三", 4),
    ]
    assert _titles(client, course_id, up) == ["四", "一", "二", "三"]
    for lessons, field in (
        ([ids[0], ids[0], ids[1], ids[2]], "lessons"),
        (ids[:3], "lessons"),
        ([*ids, 999999], "lessons"),
        ([], "lessons"),
        ([0, *ids[1:]], "lessons.0"),
    ):
        refused = client.put(url, json={"lessons": lessons}, headers=up)
        assert refused.status_code == 422 and field in refused.json["error"]["fields"], (lessons, refused.json)
    missing = client.put(url, json={"lessons": ids[:3]}, headers=up)
    assert f"missing {ids[3]}" in missing.json["error"]["message"]
    assert _titles(client, course_id, up) == ["四", "一", "二", "三"]  # refused orders changed nothing
    # Only the lessons whose place changed are written (so only they are re-sent to school servers).
    db.expire_all()
    stamps = {
        lesson.id: lesson.changed_at for lesson in db.scalars(select(Lesson).where(Lesson.course_id == course_id))
    }
    assert client.put(url, json={"lessons": [ids[0], ids[3], ids[1], ids[2]]}, headers=up).status_code == 200
    db.expire_all()
    after = {lesson.id: lesson.changed_at for lesson in db.scalars(select(Lesson).where(Lesson.course_id == course_id))}
    assert {lid for lid in ids if after[lid] != stamps[lid]} == {ids[0], ids[3]}


def test_delete_a_lesson_and_its_files(app: Flask, client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    course_id, (keep, gone) = _course(client, up, ["第一课", "第二课"])
    shared = mp4_bytes(3000, seed=1)
    own = mp4_bytes(3000, seed=2)
    _material(client, up, keep, shared, "共用.mp4")
    _material(client, up, gone, shared, "共用.mp4")
    mine = _material(client, up, gone, own, "自己的.mp4")
    assert client.post(f"/api/v1/courses/{course_id}/publish", headers=up).status_code == 200

    assert client.delete(f"/api/v1/lessons/{gone}", headers=up).status_code == 204
    assert client.get(f"/api/v1/lessons/{gone}").status_code == 404
    assert _titles(client, course_id, up) == ["第一课"]
    assert client.delete(f"/api/v1/lessons/{gone}", headers=up).status_code == 404
    # The lesson's own bytes go; the bytes another lesson still uses stay.
    dropped = _run_blob_tasks(app, db)
    assert dropped == [mine["original"]["sha256"]]
    storage: Storage = app.extensions["hub.storage"]
    assert not storage.exists(mine["original"]["sha256"]) and db.get(Blob, mine["original"]["sha256"]) is None
    kept = client.get(f"/api/v1/lessons/{keep}").json["materials"][0]["original"]["sha256"]
    assert storage.exists(kept) and db.get(Blob, kept) is not None
    assert [course_id] in _queued(db, jobs.INDEX_COURSE)


def test_delete_a_material(app: Flask, client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    course_id, (lesson,) = _course(client, up, ["第一课"])
    first = _material(client, up, lesson, mp4_bytes(3000, seed=3), "一.mp4")
    second = _material(client, up, lesson, mp4_bytes(3000, seed=3), "同一文件.mp4")
    # A rendition of its own (as the pipeline would make it) goes with it too.
    storage: Storage = app.extensions["hub.storage"]
    made = storage.store(io.BytesIO(b"rendition bytes"))
    db.add(Blob(sha256=made.sha256, size=made.size, media_type="video/mp4"))
    db.add(Rendition(material_id=first["id"], profile="video-240p", status="ready", blob_sha256=made.sha256))
    db.commit()
    assert client.delete(f"/api/v1/materials/{first['id']}", headers=people["other"]).status_code == 404
    assert client.delete(f"/api/v1/materials/{first['id']}", headers=up).status_code == 204
    assert client.get(f"/api/v1/materials/{first['id']}", headers=up).status_code == 404
    assert [m["id"] for m in client.get(f"/api/v1/lessons/{lesson}", headers=up).json["materials"]] == [second["id"]]
    assert _run_blob_tasks(app, db) == [made.sha256]  # the original is the second material's too
    assert storage.exists(first["original"]["sha256"]) and not storage.exists(made.sha256)
    assert client.delete(f"/api/v1/materials/{second['id']}", headers=up).status_code == 204
    assert _run_blob_tasks(app, db) == [first["original"]["sha256"]]
    assert not storage.exists(first["original"]["sha256"])
    assert _run_blob_tasks(app, db) == []  # nothing left to do: safe to run again
    assert [course_id] in _queued(db, jobs.INDEX_COURSE)


def test_replace_a_material(app: Flask, client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    _, (lesson,) = _course(client, up, ["第一课"])
    old = _material(client, up, lesson, mp4_bytes(3000, seed=4), "旧.mp4")
    db.add(Rendition(material_id=old["id"], profile="video-240p", status="failed", error="x"))
    db.commit()
    new_bytes = mp4_bytes(4000, seed=5)
    url = f"/api/v1/materials/{old['id']}/original"
    assert client.put(url, data={"title": "x"}, headers=up, content_type="multipart/form-data").status_code == 422
    assert (
        client.put(
            url,
            data={"file": (io.BytesIO(new_bytes), "新.mp4")},
            headers=people["other"],
            content_type="multipart/form-data",
        ).status_code
        == 404
    )
    replaced = client.put(
        url,
        data={"file": (io.BytesIO(new_bytes), "新.mp4"), "title": ""},
        headers=up,
        content_type="multipart/form-data",
    )
    assert replaced.status_code == 200, replaced.json
    body = replaced.json
    assert body["id"] == old["id"] and body["title"] == "旧.mp4"  # same material, title kept
    assert body["filename"] == "新.mp4" and body["status"] == "pending" and body["renditions"] == []
    assert body["original"]["sha256"] != old["original"]["sha256"] and body["original"]["bytes"] == 4000
    assert [old["id"]] in _queued(db, jobs.PROCESS_MATERIAL)[1:]  # processed afresh
    assert _run_blob_tasks(app, db) == [old["original"]["sha256"]]


def test_replace_a_material_with_a_resumable_upload(
    app: Flask, client: FlaskClient, db: Session, people: dict[str, Any]
) -> None:
    up = people["uploader"]
    _, (lesson,) = _course(client, up, ["第一课"])
    old = _material(client, up, lesson, mp4_bytes(3000, seed=6), "旧.mp4")
    data = mp4_bytes(5000, seed=7)
    created = client.post(
        "/api/v1/uploads/",
        headers={**up, **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata("新.mp4")},
    )
    location = created.headers["Location"]
    assert client.patch(location, data=data, headers={**up, **PATCH, "Upload-Offset": "0"}).status_code == 204
    url = f"/api/v1/materials/{old['id']}/original"
    replaced = client.put(url, json={"upload": location, "title": "新标题"}, headers=up)
    assert replaced.status_code == 200, replaced.json
    assert replaced.json["title"] == "新标题" and replaced.json["original"]["bytes"] == 5000
    again = client.put(url, json={"upload": location, "title": "新标题"}, headers=up)
    assert again.status_code == 200 and again.json["original"] == replaced.json["original"]  # a retry
    other = _material(client, up, lesson, mp4_bytes(3000, seed=8), "另一个.mp4")
    used = client.put(f"/api/v1/materials/{other['id']}/original", json={"upload": location}, headers=up)
    assert used.status_code == 409
    assert _run_blob_tasks(app, db) == [old["original"]["sha256"]]
    # Once its material is deleted, the upload is spent: its bytes can go.
    assert client.delete(f"/api/v1/materials/{old['id']}", headers=up).status_code == 204
    db.expire_all()
    assert db.scalar(select(Upload.status).where(Upload.material_id.is_(None))) == "expired"
    assert _run_blob_tasks(app, db) == [replaced.json["original"]["sha256"]]


def test_the_editing_endpoints_are_documented(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/lessons/{lesson_id}"])
    assert "put" in paths["/api/v1/courses/{course_id}/lesson-order"]
    assert {"get", "delete"} <= set(paths["/api/v1/materials/{material_id}"])
    assert "put" in paths["/api/v1/materials/{material_id}/original"]
    schemas = openapi_document()["components"]["schemas"]
    assert {"LessonUpdate", "LessonOrder"} <= set(schemas)


def test_a_deleted_course_is_gone_with_its_rows(client: FlaskClient, db: Session, people: dict[str, Any]) -> None:
    up = people["uploader"]
    course_id, _ = _course(client, up, ["一", "二"])
    assert client.delete(f"/api/v1/courses/{course_id}", headers=up).status_code == 204
    db.expire_all()
    assert db.get(Course, course_id) is None
    assert db.scalar(select(func.count()).select_from(Lesson)) == 0
    assert db.scalar(select(func.count()).select_from(Material)) == 0
