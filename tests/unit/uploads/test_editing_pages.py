"""Editing on the uploader's pages, without JavaScript: every change is a plain form post, in Chinese."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson, Material
from tests.conftest import COURSE, Accounts
from tests.unit.uploads.conftest import mp4_bytes
from tests.unit.uploads.test_views import _csrf, _signed_in


def _new_course(client: FlaskClient, token: str, **fields: Any) -> str:
    form: dict[str, Any] = {**COURSE, "grades": ["9"], "csrf_token": token, **fields}
    created = client.post("/upload/courses", data=form)
    assert created.status_code == 303
    return created.headers["Location"]


def _order(db: Session, course_id: int) -> list[str]:
    db.expire_all()
    return list(
        db.scalars(select(Lesson.title).where(Lesson.course_id == course_id).order_by(Lesson.position, Lesson.id))
    )


def test_lessons_are_added_one_after_another_and_reordered(app: Flask, make: Accounts, db: Session) -> None:
    client = _signed_in(app, make)
    token = _csrf(client.get("/upload/").text)
    course_url = _new_course(client, token)
    course_id = int(course_url.rsplit("/", 1)[-1])
    for title in ("第一课", "第二课", "第三课"):
        added = client.post(f"{course_url}/lessons", data={"title": title, "unit": "第一单元", "csrf_token": token})
        # Back to the course page each time, with the unit kept for the next lesson.
        assert added.status_code == 303 and added.headers["Location"].startswith(f"{course_url}?")
        page = client.get(added.headers["Location"])
        assert f"已添加课时“{title}”" in page.text and 'value="第一单元"' in page.text and "autofocus" in page.text
    assert _order(db, course_id) == ["第一课", "第二课", "第三课"]
    page = client.get(course_url).text
    assert page.count('name="up" value="1"') == 3 and page.count("上移") >= 3

    ids = {
        title: lid for lid, title in db.execute(select(Lesson.id, Lesson.title).where(Lesson.course_id == course_id))
    }
    moved = client.post(f"/upload/lessons/{ids['第三课']}/move", data={"up": "1", "csrf_token": token})
    assert moved.status_code == 303 and moved.headers["Location"].endswith(f"#lesson-{ids['第三课']}")
    assert _order(db, course_id) == ["第一课", "第三课", "第二课"]
    client.post(f"/upload/lessons/{ids['第一课']}/move", data={"down": "1", "csrf_token": token})
    assert _order(db, course_id) == ["第三课", "第一课", "第二课"]
    client.post(f"/upload/lessons/{ids['第三课']}/move", data={"up": "1", "csrf_token": token})  # already first
    assert _order(db, course_id) == ["第三课", "第一课", "第二课"]
    client.post(f"/upload/lessons/{ids['第二课']}/move", data={"position": "1", "csrf_token": token})
    assert _order(db, course_id) == ["第二课", "第三课", "第一课"]
    for bad in ("", "0", "x", "²", "99999999999999999999"):
        refused = client.post(f"/upload/lessons/{ids['第二课']}/move", data={"position": bad, "csrf_token": token})
        assert refused.status_code == 422 and "请用 1 到 3 之间的数字填写课时的新位置" in refused.text
    assert _order(db, course_id) == ["第二课", "第三课", "第一课"]


def test_a_lesson_is_edited_and_deleted(app: Flask, make: Accounts, db: Session) -> None:
    client = _signed_in(app, make)
    token = _csrf(client.get("/upload/").text)
    course_url = _new_course(client, token)
    course_id = int(course_url.rsplit("/", 1)[-1])
    for title in ("第一课", "第二课"):
        client.post(f"{course_url}/lessons", data={"title": title, "csrf_token": token})
    first, second = db.scalars(select(Lesson.id).where(Lesson.course_id == course_id).order_by(Lesson.id)).all()
    page = client.get(f"/upload/lessons/{first}").text
    assert "编辑课时" in page and "删除课时" in page

    bad = client.post(f"/upload/lessons/{first}/edit", data={"title": "", "unit": "一", "csrf_token": token})
    assert bad.status_code == 422 and 'id="edit-lesson" open' in bad.text and 'value="一"' in bad.text
    edited = client.post(
        f"/upload/lessons/{first}/edit",
        data={"title": "配方法", "unit": "第二十一章", "summary": "", "csrf_token": token},
    )
    assert edited.status_code == 303
    assert "配方法" in client.get(f"/upload/lessons/{first}").text
    assert _order(db, course_id) == ["配方法", "第二课"]

    unconfirmed = client.post(f"/upload/lessons/{second}/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "请勾选复选框，确认删除此课时" in unconfirmed.text
    assert _order(db, course_id) == ["配方法", "第二课"]
    deleted = client.post(f"/upload/lessons/{second}/delete", data={"confirm": "on", "csrf_token": token})
    assert deleted.status_code == 303 and deleted.headers["Location"].startswith(course_url)
    assert _order(db, course_id) == ["配方法"]
    assert client.get(f"/upload/lessons/{second}").status_code == 404


def test_a_course_is_edited_withdrawn_republished_and_deleted(app: Flask, make: Accounts, db: Session) -> None:
    client = _signed_in(app, make)
    token = _csrf(client.get("/upload/").text)
    course_url = _new_course(client, token)
    course_id = int(course_url.rsplit("/", 1)[-1])
    page = client.get(course_url).text
    assert "编辑课程信息" in page and 'value="一元二次方程"' in page and "删除课程" in page

    form: dict[str, Any] = {**COURSE, "title": "二次方程", "grades": ["8", "9"], "csrf_token": token}
    bad = client.post(f"{course_url}/edit", data={**form, "grades": []})
    assert bad.status_code == 422 and 'id="edit-course" open' in bad.text and 'value="二次方程"' in bad.text
    assert client.post(f"{course_url}/edit", data=form).status_code == 303
    course = db.get(Course, course_id)
    assert course is not None
    db.refresh(course)
    assert course.title == "二次方程" and course.grades == [8, 9]

    client.post(f"{course_url}/lessons", data={"title": "第一课", "csrf_token": token})
    assert client.post(f"{course_url}/publish", data={"csrf_token": token}).status_code == 303
    page = client.get(course_url).text
    assert "撤回课程" in page and "删除课程" not in page
    refused = client.post(f"{course_url}/delete", data={"confirm": "on", "csrf_token": token})
    assert refused.status_code == 409 and "请先撤回课程再删除" in refused.text
    assert client.post(f"{course_url}/withdraw", data={"csrf_token": token}).status_code == 303
    db.refresh(course)
    assert course.status == "withdrawn"
    assert "重新发布" in client.get(course_url).text
    assert client.post(f"{course_url}/publish", data={"csrf_token": token}).status_code == 303
    db.refresh(course)
    assert course.status == "published"
    client.post(f"{course_url}/withdraw", data={"csrf_token": token})

    assert client.post(f"{course_url}/delete", data={"csrf_token": token}).status_code == 422
    deleted = client.post(f"{course_url}/delete", data={"confirm": "on", "csrf_token": token})
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/upload/"
    db.expire_all()
    assert db.get(Course, course_id) is None


def test_a_material_is_replaced_and_removed(app: Flask, make: Accounts, db: Session) -> None:
    client = _signed_in(app, make)
    token = _csrf(client.get("/upload/").text)
    course_url = _new_course(client, token)
    client.post(f"{course_url}/lessons", data={"title": "第一课", "csrf_token": token})
    lesson_id = db.scalar(select(Lesson.id).order_by(Lesson.id.desc()))
    client.post(
        f"/upload/lessons/{lesson_id}/materials",
        data={"csrf_token": token, "title": "讲解", "file": (io.BytesIO(mp4_bytes(3000, seed=1)), "讲解.mp4")},
        content_type="multipart/form-data",
    )
    material = db.scalar(select(Material).where(Material.lesson_id == lesson_id))
    assert material is not None
    page = client.get(f"/upload/lessons/{lesson_id}").text
    assert "替换或删除" in page and "删除“讲解”" in page

    missing = client.post(f"/upload/materials/{material.id}/replace", data={"csrf_token": token, "title": ""})
    assert missing.status_code == 422 and "请选择要上传的文件" in missing.text
    replaced = client.post(
        f"/upload/materials/{material.id}/replace",
        data={"csrf_token": token, "title": "", "file": (io.BytesIO(mp4_bytes(4000, seed=2)), "新讲解.mp4")},
        content_type="multipart/form-data",
    )
    assert replaced.status_code == 303 and replaced.headers["Location"].endswith(f"#material-{material.id}")
    db.refresh(material)
    assert material.title == "讲解" and material.filename == "新讲解.mp4" and material.original.size == 4000

    other = _signed_in(app, make, school=make.school("上海第一中学"))
    theirs = _csrf(other.get("/upload/").text)
    assert other.post(f"/upload/materials/{material.id}/delete", data={"csrf_token": theirs}).status_code == 404
    removed = client.post(f"/upload/materials/{material.id}/delete", data={"csrf_token": token})
    assert removed.status_code == 303
    gone = material.id
    db.expire_all()
    assert db.get(Material, gone) is None
    assert re.search(r"还没有材料|No materials yet", client.get(f"/upload/lessons/{lesson_id}").text)
