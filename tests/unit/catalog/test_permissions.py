"""The permission matrix of the catalog API: who may read and write which course, by status.

- anonymous readers see published courses only and write nothing (401);
- another school's draft or withdrawn course does not exist for them (404), its
  published course is read-only (403 on every write);
- a teacher reads its own school's courses and writes nothing (403);
- an admin does everything, for every school.

Every refusal answers with the error shape and leaves every table as it was.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.catalog import services
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.media.storage import Storage
from tests.conftest import Accounts
from tests.support.snapshot import database_snapshot

PDF = b"%PDF-1.4\n" + b"x" * 2000
STATUSES = ("draft", "published", "withdrawn")


@dataclass
class World:
    headers: dict[str, dict[str, str]]  # actor → request headers
    courses: dict[str, int]  # status → course id (all of the first school)
    lessons: dict[str, int]
    materials: dict[str, int]


def _course(db: Session, storage: Storage, owner: User, body: dict[str, Any], status: str) -> tuple[int, int, int]:
    course = services.create_course(db, owner, CourseCreate(**{**body, "title": f"{status} 课程"}))
    lesson = services.create_lesson(db, owner, course.id, LessonCreate(title="配方法"))
    material = services.add_material(db, storage, owner, lesson.id, io.BytesIO(PDF), filename="讲义.pdf", title="讲义")
    if status != "draft":
        services.publish_course(db, owner, course.id)
    if status == "withdrawn":
        services.withdraw_course(db, owner, course.id)
    db.commit()
    return course.id, lesson.id, material.id


@pytest.fixture
def world(app: Flask, make: Accounts, db: Session, course_body: dict[str, Any]) -> World:
    own = make.school("海淀实验小学", "famous")
    other = make.school("上海第一中学", "famous")
    uploader = make.user("up@haidian.cn", own, "uploader")
    headers = {
        "anonymous": {},
        "own teacher": make.bearer(make.user("t@haidian.cn", own, "teacher")),
        "own uploader": make.bearer(uploader),
        "other uploader": make.bearer(make.user("up@shyz.cn", other, "uploader")),
        "other teacher": make.bearer(make.user("t@shyz.cn", other, "teacher")),
        "admin": make.bearer(make.user("admin@hub.cn", other, "admin")),
    }
    made = {s: _course(db, app.extensions["hub.storage"], uploader, course_body, s) for s in STATUSES}
    return World(
        headers=headers,
        courses={s: ids[0] for s, ids in made.items()},
        lessons={s: ids[1] for s, ids in made.items()},
        materials={s: ids[2] for s, ids in made.items()},
    )


READS = ("get course", "list lessons", "get lesson", "get material")


def _read(client: FlaskClient, world: World, operation: str, status: str, headers: dict[str, str]) -> Any:
    path = {
        "get course": f"/api/v1/courses/{world.courses[status]}",
        "list lessons": f"/api/v1/courses/{world.courses[status]}/lessons",
        "get lesson": f"/api/v1/lessons/{world.lessons[status]}",
        "get material": f"/api/v1/materials/{world.materials[status]}",
    }[operation]
    return client.get(path, headers=headers)


def _expected_read(actor: str, status: str) -> int:
    if status == "published" or actor in ("own teacher", "own uploader", "admin"):
        return 200
    return 404


@pytest.mark.parametrize(
    "actor", ["anonymous", "own teacher", "own uploader", "other uploader", "other teacher", "admin"]
)
def test_reads(client: FlaskClient, world: World, actor: str) -> None:
    seen = {
        (operation, status): _read(client, world, operation, status, world.headers[actor]).status_code
        for operation in READS
        for status in STATUSES
    }
    expected = {(operation, status): _expected_read(actor, status) for operation in READS for status in STATUSES}
    assert seen == expected


WRITES = ("patch", "publish", "withdraw", "add lesson", "add material", "delete")


def _write(client: FlaskClient, world: World, operation: str, status: str, headers: dict[str, str]) -> Any:
    course, lesson = world.courses[status], world.lessons[status]
    if operation == "patch":
        return client.patch(f"/api/v1/courses/{course}", json={"title": "改了"}, headers=headers)
    if operation == "publish":
        return client.post(f"/api/v1/courses/{course}/publish", headers=headers)
    if operation == "withdraw":
        return client.post(f"/api/v1/courses/{course}/withdraw", headers=headers)
    if operation == "add lesson":
        return client.post(f"/api/v1/courses/{course}/lessons", json={"title": "公式法"}, headers=headers)
    if operation == "add material":
        return client.post(
            f"/api/v1/lessons/{lesson}/materials",
            data={"title": "讲义二", "file": (io.BytesIO(PDF + b"2"), "讲义二.pdf")},
            headers=headers,
        )
    assert operation == "delete"
    return client.delete(f"/api/v1/courses/{course}", headers=headers)


REFUSED = {
    # actor → status → the answer to every write
    "anonymous": dict.fromkeys(STATUSES, 401),
    "own teacher": dict.fromkeys(STATUSES, 403),
    "other uploader": {"draft": 404, "published": 403, "withdrawn": 404},
    "other teacher": {"draft": 404, "published": 403, "withdrawn": 404},
}


@pytest.mark.parametrize("actor", sorted(REFUSED))
def test_refused_writes_change_nothing(app: Flask, client: FlaskClient, world: World, actor: str) -> None:
    before = database_snapshot(app)
    for status in STATUSES:
        for operation in WRITES:
            response = _write(client, world, operation, status, world.headers[actor])
            assert response.status_code == REFUSED[actor][status], (actor, operation, status, response.json)
            error = response.json["error"]
            assert error["code"] in ("unauthorized", "forbidden", "not_found") and error["message"]
    assert database_snapshot(app) == before


ADMIN = {
    # (operation, status) → what an admin of another school gets: the same as the owning uploader.
    ("patch", "draft"): 200,
    ("add lesson", "draft"): 201,
    ("add material", "draft"): 201,
    ("publish", "draft"): 200,
    ("patch", "published"): 200,
    ("add lesson", "published"): 201,
    ("add material", "published"): 201,
    ("withdraw", "published"): 200,
    ("patch", "withdrawn"): 200,
    ("delete", "withdrawn"): 204,
}


def test_admins_do_everything_for_every_school(client: FlaskClient, world: World) -> None:
    admin = world.headers["admin"]
    got = {key: _write(client, world, *key, admin).status_code for key in ADMIN}
    assert got == ADMIN
    # The withdrawn course is gone; the others went on through their life cycle.
    assert client.get(f"/api/v1/courses/{world.courses['withdrawn']}", headers=admin).status_code == 404
    assert client.get(f"/api/v1/courses/{world.courses['draft']}").json["status"] == "published"
    assert client.get(f"/api/v1/courses/{world.courses['published']}", headers=admin).json["status"] == "withdrawn"
    listed = client.get("/api/v1/courses?status=all", headers=admin).json
    assert listed["total"] == 2
