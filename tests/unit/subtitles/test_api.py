"""The subtitle API through Flask's test client: attach, list, serve, delete; who may; what is refused."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.jobs import INDEX_COURSE, Outbox
from hub.media.models import Blob, Rendition
from hub.subtitles.models import Subtitle
from tests.conftest import Accounts
from tests.support.courses import SeededCourse, seed_course

CUES = ("1", "00:00:01,000 --> 00:00:03,000", "今天学习配方法", "", "2", "00:00:04,000 --> 00:00:06,000", "开始吧")
SRT_GBK = "\r\n".join(CUES).encode("gbk")


@pytest.fixture
def seeded(app: Flask, db: Session, make: Accounts) -> SeededCourse:
    return seed_course(app.extensions["hub.storage"], db, make.school().id)


@pytest.fixture
def people(db: Session, make: Accounts, seeded: SeededCourse) -> dict[str, dict[str, str]]:
    own = db.get_one(School, 1)
    other = make.school("上海第一中学", "famous")
    return {
        "uploader": make.bearer(make.user("up@haidian.cn", own, "uploader")),
        "teacher": make.bearer(make.user("t@haidian.cn", own, "teacher")),
        "other": make.bearer(make.user("up@shyz.cn", other, "uploader")),
        "admin": make.bearer(make.user("admin@hub.cn", other, "admin")),
    }


def attach(client: FlaskClient, material: int, data: bytes, headers: dict[str, str], **form: str) -> Any:
    return client.post(
        f"/api/v1/materials/{material}/subtitles",
        data={"file": (io.BytesIO(data), "lesson.srt"), "language": "zh", **form},
        headers=headers,
    )


def count(db: Session, model: type) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model)) or 0


def test_attach_list_serve_replace_delete(
    client: FlaskClient, db: Session, seeded: SeededCourse, people: dict[str, dict[str, str]]
) -> None:
    video = seeded.material_ids["video"]
    r = attach(client, video, SRT_GBK, people["uploader"])
    assert r.status_code == 201, r.json
    body = r.json
    assert (body["material"], body["language"], body["label"], body["cues"]) == (video, "zh", "中文", 2)
    vtt = client.get(body["url"])
    assert vtt.status_code == 200 and vtt.headers["Content-Type"] == "text/vtt; charset=utf-8"
    assert (
        vtt.data.startswith(b"WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.000\n") and "今天学习配方法" in vtt.data.decode()
    )
    assert hashlib.sha256(vtt.data).hexdigest() == body["sha256"] == body["url"].rsplit("/", 1)[1][:-4]
    assert vtt.headers["ETag"] == f'"{body["sha256"]}"'
    assert "immutable" in vtt.headers["Cache-Control"]  # a published course: anyone may keep it
    assert client.get(body["url"], headers={"If-None-Match": vtt.headers["ETag"]}).status_code == 304
    # The blob is named by its sha256 and readable like any other blob.
    assert db.get(Blob, body["sha256"]).media_type == "text/vtt"  # type: ignore[union-attr]
    blob = client.get(f"/api/v1/blobs/{body['sha256']}")
    assert blob.status_code == 302 if "Location" in blob.headers else blob.data == vtt.data  # S3: a redirect

    listed = client.get(f"/api/v1/materials/{video}/subtitles").json["items"]
    assert [(s["language"], s["cues"]) for s in listed] == [("zh", 2)]
    # The material and its lesson list the tracks too.
    material = client.get(f"/api/v1/materials/{video}").json
    assert material["subtitles"] == [
        {"language": "zh", "label": "中文", "cues": 2, "sha256": body["sha256"], "url": body["url"]}
    ]
    lesson = client.get(f"/api/v1/lessons/{seeded.lesson_ids[0]}").json
    assert lesson["materials"][0]["subtitles"] == material["subtitles"]

    # Another file in the same language replaces the track; an English one is a second track.
    again = attach(
        client, video, b"WEBVTT\n\n00:00.500 --> 00:02.000\n\xe5\x8f\xa6\n", people["uploader"], label="普通话"
    )
    assert again.status_code == 201 and again.json["label"] == "普通话" and again.json["cues"] == 1
    en = attach(client, video, b"1\n00:00:01,000 --> 00:00:02,000\nHello\n", people["admin"], language="en")
    assert en.status_code == 201 and en.json["label"] == "English"
    listed = client.get(f"/api/v1/materials/{video}/subtitles").json["items"]
    assert [(s["language"], s["label"]) for s in listed] == [("en", "English"), ("zh", "普通话")]
    assert count(db, Subtitle) == 2

    # Every change re-indexes the course after commit.
    db.expire_all()
    tasks = db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE)).all()
    assert [t.args for t in tasks] == [[seeded.course_id]] * 3

    assert client.delete(f"/api/v1/materials/{video}/subtitles/zh", headers=people["uploader"]).status_code == 204
    assert [s["language"] for s in client.get(f"/api/v1/materials/{video}/subtitles").json["items"]] == ["en"]
    gone = client.delete(f"/api/v1/materials/{video}/subtitles/zh", headers=people["uploader"])
    assert gone.status_code == 404 and gone.json["error"]["code"] == "not_found"
    # The old track's file is no longer served.
    assert client.get(body["url"]).status_code == 404


def test_only_the_schools_uploaders_and_admins_may_write(
    client: FlaskClient, db: Session, seeded: SeededCourse, people: dict[str, dict[str, str]]
) -> None:
    video = seeded.material_ids["video"]
    anonymous = attach(client, video, SRT_GBK, {})
    assert anonymous.status_code == 401
    for who in ("teacher", "other"):
        refused = attach(client, video, SRT_GBK, people[who])
        assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert count(db, Subtitle) == 0
    assert attach(client, video, SRT_GBK, people["uploader"]).status_code == 201
    assert client.delete(f"/api/v1/materials/{video}/subtitles/zh", headers=people["other"]).status_code == 403
    assert client.delete(f"/api/v1/materials/{video}/subtitles/zh").status_code == 401
    assert count(db, Subtitle) == 1


def test_unknown_and_invisible_materials_are_404(
    app: Flask, client: FlaskClient, db: Session, make: Accounts, people: dict[str, dict[str, str]]
) -> None:
    draft = seed_course(app.extensions["hub.storage"], db, 1, status="draft", title="草稿")
    video = draft.material_ids["video"]
    assert attach(client, 999999, SRT_GBK, people["uploader"]).status_code == 404
    # Another school's draft does not exist for others, for reading and writing.
    assert attach(client, video, SRT_GBK, people["other"]).status_code == 404
    assert client.get(f"/api/v1/materials/{video}/subtitles").status_code == 404
    ok = attach(client, video, SRT_GBK, people["uploader"])
    assert ok.status_code == 201
    assert client.get(ok.json["url"]).status_code == 404  # a draft's track: not for anonymous readers
    own = client.get(ok.json["url"], headers=people["teacher"])
    assert own.status_code == 200 and own.headers["Cache-Control"].startswith("private")


def test_bad_requests_are_refused_and_nothing_is_stored(
    app: Flask, client: FlaskClient, db: Session, seeded: SeededCourse, people: dict[str, dict[str, str]]
) -> None:
    video = seeded.material_ids["video"]
    up = people["uploader"]
    blobs = count(db, Blob)
    stored = set(app.extensions["hub.storage"].iter_hashes())

    def error(response: Any, status: int, field: str | None = None) -> str:
        assert response.status_code == status, response.json
        if field is not None:
            assert field in response.json["error"]["fields"]
        return str(response.json["error"]["message"])

    # Not multipart at all, no file: 400 / 422.
    error(client.post(f"/api/v1/materials/{video}/subtitles", json={"language": "zh"}, headers=up), 400)
    no_file = client.post(
        f"/api/v1/materials/{video}/subtitles", data={"language": "zh"}, headers=up, content_type="multipart/form-data"
    )
    error(no_file, 422, "file")
    error(attach(client, video, SRT_GBK, up, language="fr"), 422, "language")
    error(attach(client, video, SRT_GBK, up, label="x" * 101), 422, "label")
    error(attach(client, seeded.material_ids["doc"], SRT_GBK, up), 422, "material")
    assert "Line 2:" in error(attach(client, video, b"1\n00:00:05,000 --> 00:00:01,000\nx\n", up), 422, "file")
    assert "empty" in error(attach(client, video, b"", up), 422, "file")
    assert "UTF-8" in error(attach(client, video, b"\x81\x00\xff" * 10, up), 422, "file")
    error(attach(client, video, b"1\n" + b"x" * (2 * 1024 * 1024 + 10), up), 413, "file")
    # Cues past the end of the recording, once its length is known.
    db.execute(Rendition.__table__.update().values(duration=0.5))
    db.commit()
    assert "after the end" in error(attach(client, video, SRT_GBK, up), 422, "file")

    assert count(db, Subtitle) == 0 and count(db, Blob) == blobs
    assert set(app.extensions["hub.storage"].iter_hashes()) == stored


def test_errors_are_translated_for_chinese_readers(
    client: FlaskClient, seeded: SeededCourse, people: dict[str, dict[str, str]]
) -> None:
    # Pages translate the template; the API answers in English (hub.errors).
    from hub.errors import HubError
    from hub.subtitles.webvtt import normalise

    try:
        normalise(b"1\n00:00:05,000 --> 00:00:01,000\nx\n")
    except HubError as exc:
        with client.application.test_request_context(headers={"Accept-Language": "zh-CN"}):
            text = exc.localized()
    assert "第 2 行" in text and "Line" not in text


def test_openapi_documents_the_subtitle_upload(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    post = doc["paths"]["/api/v1/materials/{material_id}/subtitles"]["post"]
    schema = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    upload = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(upload["properties"]) == {"file", "language", "label"}
    assert upload["properties"]["file"]["format"] == "binary"
    assert set(upload["required"]) == {"file", "language"}
    assert post["security"] == [{"bearer": []}] and "201" in post["responses"]
    assert "get" in doc["paths"]["/api/v1/materials/{material_id}/subtitles"]
    assert "delete" in doc["paths"]["/api/v1/materials/{material_id}/subtitles/{language}"]
