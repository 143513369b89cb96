"""The uploader's pages: forms that work without JavaScript, and the hooks the tus script uses."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.catalog.models import Course
from tests.conftest import COURSE, Accounts
from tests.unit.uploads.conftest import TUS, MiB, Tus, mp4_bytes

PASSWORD = "correct horse"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries a CSRF token"
    return match.group(1)


def _signed_in(app: Flask, make: Accounts, role: str = "uploader", school: Any = None) -> FlaskClient:
    app.config["WTF_CSRF_ENABLED"] = True
    school = school or make.school()
    email = f"{role}{school.id}@haidian.cn"
    make.user(email, school, role, password=PASSWORD)
    client = app.test_client()
    token = _csrf(client.get("/login").text)
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token}).status_code == 302
    return client


def test_pages_need_an_uploader(app: Flask, make: Accounts) -> None:
    anonymous = app.test_client().get("/upload/")
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/login?next=/upload/")
    teacher = _signed_in(app, make, "teacher")
    refused = teacher.get("/upload/")
    assert refused.status_code == 403
    assert "只有学校的上传员和管理员可以上传课程" in refused.text


def test_course_lesson_and_plain_form_upload(app: Flask, make: Accounts, db: Session) -> None:
    client = _signed_in(app, make)
    page = client.get("/upload/")
    assert page.status_code == 200 and "新建课程" in page.text
    token = _csrf(page.text)

    form: dict[str, Any] = {**COURSE, "csrf_token": token, "category": "curriculum"}
    form["grades"] = ["8", "9"]
    bad = client.post("/upload/courses", data={**form, "grades": []})
    assert bad.status_code == 422 and "grades" in bad.text
    created = client.post("/upload/courses", data=form)
    assert created.status_code == 303
    course_url = created.headers["Location"]
    course = db.get(Course, int(course_url.rsplit("/", 1)[-1]))
    assert course is not None and course.grades == [8, 9] and course.status == "draft"

    lesson = client.post(f"{course_url}/lessons", data={"title": "配方法", "unit": "第二十一章", "csrf_token": token})
    assert lesson.status_code == 303
    # Back on the course page, for the next lesson; the one added is linked from there.
    back = client.get(lesson.headers["Location"])
    assert lesson.headers["Location"].startswith(course_url) and "已添加课时“配方法”" in back.text
    lesson_url = re.search(r'href="(/upload/lessons/\d+)"', back.text).group(1)  # type: ignore[union-attr]
    lesson_page = client.get(lesson_url)
    assert lesson_page.status_code == 200
    html = lesson_page.text
    assert 'enctype="multipart/form-data"' in html
    assert 'data-endpoint="/api/v1/uploads/"' in html and "tus-upload.js" in html

    lesson_id = int(lesson_url.rsplit("/", 1)[-1])
    missing = client.post(f"/upload/lessons/{lesson_id}/materials", data={"csrf_token": token, "title": "x"})
    assert missing.status_code == 422 and "请选择要上传的文件" in missing.text
    plain = client.post(
        f"/upload/lessons/{lesson_id}/materials",
        data={"csrf_token": token, "title": "第一课", "file": (io.BytesIO(mp4_bytes(5000)), "第一课.mp4")},
        content_type="multipart/form-data",
    )
    assert plain.status_code == 303
    assert "第一课" in client.get(lesson_url).text and "pending" in client.get(lesson_url).text

    published = client.post(f"{course_url}/publish", data={"csrf_token": token})
    assert published.status_code == 303
    db.refresh(course)
    assert course.status == "published"
    assert client.get("/static/tus-upload.js").status_code == 200


def test_the_script_path_posts_the_upload_url(app: Flask, make: Accounts, client: FlaskClient) -> None:
    browser = _signed_in(app, make)
    token = _csrf(browser.get("/upload/").text)
    course = browser.post("/api/v1/courses", json=COURSE, headers={"X-CSRFToken": token}).json
    lesson = browser.post(
        f"/api/v1/courses/{course['id']}/lessons", json={"title": "配方法"}, headers={"X-CSRFToken": token}
    ).json
    # The page's script speaks tus with the session cookie and the CSRF header.
    tus = Tus(browser, {"X-CSRFToken": token})
    without_csrf = browser.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})
    assert without_csrf.status_code == 400
    # The plain form's size limit does not apply to tus chunks, with a cookie session too.
    app.config["MAX_CONTENT_LENGTH"] = 100_000
    url = tus.upload(mp4_bytes(MiB + 5))
    added = browser.post(
        f"/upload/lessons/{lesson['id']}/materials",
        data={"csrf_token": token, "title": "", "upload": url},
        headers={"Accept": "application/json", "X-CSRFToken": token},
    )
    assert added.status_code == 201
    assert added.json["title"] == "第一课.mp4" and added.json["status"] == "pending"

    unfinished = tus.new(5000)
    assert tus.patch(unfinished, 0, mp4_bytes(4096)).status_code == 204
    dashboard = browser.get("/upload/")
    assert "未完成的上传" in dashboard.text and "82%" in dashboard.text

    other = _signed_in(app, make, school=make.school("上海第一中学"))
    assert other.get(f"/upload/lessons/{lesson['id']}").status_code == 404
    assert other.get(f"/upload/courses/{course['id']}").status_code == 404


def test_the_lesson_page_shows_processing_status_and_errors(app: Flask, make: Accounts, db: Session) -> None:
    from hub.catalog.models import Lesson

    client = _signed_in(app, make)
    token = _csrf(client.get("/upload/").text)
    course = client.post("/api/v1/courses", json=COURSE, headers={"X-CSRFToken": token}).json
    lesson = client.post(
        f"/api/v1/courses/{course['id']}/lessons", json={"title": "配方法"}, headers={"X-CSRFToken": token}
    ).json
    for title in ("坏文件", "正在转码"):
        added = client.post(
            f"/upload/lessons/{lesson['id']}/materials",
            data={"csrf_token": token, "title": title, "file": (io.BytesIO(mp4_bytes(5000, seed=len(title))), "a.mp4")},
            content_type="multipart/form-data",
        )
        assert added.status_code == 303
    row = db.get(Lesson, lesson["id"])
    assert row is not None
    failed, busy = sorted(row.materials, key=lambda m: m.id)
    failed.status, failed.error = "failed", "这不是可读的视频 The file is not a video we can read."
    busy.status = "processing"
    db.commit()
    html = client.get(f"/upload/lessons/{lesson['id']}").text
    assert f'data-material="{failed.id}" data-status="failed"' in html
    assert "The file is not a video we can read." in html
    assert f'data-material="{busy.id}" data-status="processing"' in html
