"""Fixtures of the upload tests: a wired app, schools with uploaders, a lesson, tus helpers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.catalog import services as catalog
from hub.catalog.schemas import CourseCreate, LessonCreate
from tests.conftest import COURSE, Accounts

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024


@dataclass
class School:
    uploader: dict[str, str]
    teacher: dict[str, str]
    other: dict[str, str]
    lesson_id: int
    course_id: int


@pytest.fixture
def school(make: Accounts, db: Session) -> School:
    haidian = make.school("海淀实验小学", "famous")
    shanghai = make.school("上海第一中学", "famous")
    uploader = make.user("up@haidian.cn", haidian, "uploader")
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    db.commit()
    return School(
        uploader=make.bearer(uploader),
        teacher=make.bearer(make.user("t@haidian.cn", haidian, "teacher")),
        other=make.bearer(make.user("up@shyz.cn", shanghai, "uploader")),
        lesson_id=lesson.id,
        course_id=course.id,
    )


def metadata(filename: str = "第一课.mp4", filetype: str = "video/mp4", **extra: str) -> str:
    pairs = {"filename": filename, "filetype": filetype, **extra}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items() if v is not None)


def mp4_bytes(size: int, seed: int = 0) -> bytes:
    """Bytes that sniff as an MP4 (an ftyp box), then deterministic filler."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    filler = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return (head + filler)[:size]


class Tus:
    """Raw tus requests through Flask's test client."""

    def __init__(self, client: FlaskClient, auth: dict[str, str]) -> None:
        self.client = client
        self.auth = auth

    def create(self, length: int, meta: str | None = None, **headers: str) -> Any:
        sent = {**TUS, **self.auth, "Upload-Length": str(length), "Upload-Metadata": meta or metadata()}
        sent.update(headers)
        return self.client.post("/api/v1/uploads/", headers=sent)

    def new(self, length: int, meta: str | None = None) -> str:
        created = self.create(length, meta)
        assert created.status_code == 201, created.get_data(as_text=True)
        return str(created.headers["Location"])

    def head(self, url: str, auth: dict[str, str] | None = None) -> Any:
        return self.client.head(url, headers={**TUS, **(auth or self.auth)})

    def offset(self, url: str) -> int:
        response = self.head(url)
        assert response.status_code == 200, response.status_code
        return int(response.headers["Upload-Offset"])

    def patch(self, url: str, offset: int, data: bytes, auth: dict[str, str] | None = None, **headers: str) -> Any:
        sent = {**PATCH, **(auth or self.auth), "Upload-Offset": str(offset)}
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.client.patch(url, headers=sent, data=data)

    def upload(self, data: bytes, chunk: int = MiB, meta: str | None = None) -> str:
        url = self.new(len(data), meta)
        for start in range(0, len(data), chunk):
            response = self.patch(url, start, data[start : start + chunk])
            assert response.status_code == 204, response.get_data(as_text=True)
        return url


@pytest.fixture
def tus(client: FlaskClient, school: School) -> Tus:
    return Tus(client, school.uploader)


@pytest.fixture
def uploads(app: Flask) -> Iterator[Any]:
    from hub.uploads import get_uploads

    yield get_uploads(app)
