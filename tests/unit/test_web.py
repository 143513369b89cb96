"""Pages for 2G links: gzip where it helps and never where it breaks, Vary, cache headers."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.catalog import services
from hub.catalog.models import Material
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.media.models import Blob
from tests.conftest import STORAGE, Accounts

GZIP = {"Accept-Encoding": "gzip, deflate"}


def test_pages_are_gzipped_when_the_browser_accepts_it(client: FlaskClient) -> None:
    plain = client.get("/")
    assert "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]
    packed = client.get("/", headers=GZIP)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 3
    assert {"Accept-Encoding", "Accept-Language", "Cookie"} <= set(re.split(r",\s*", packed.headers["Vary"]))
    assert "Content-Encoding" not in client.get("/", headers={"Accept-Encoding": "gzip;q=0, br"}).headers
    # The JSON API too (a course list is text), but not a tiny answer.
    assert client.get("/api/v1/openapi.json", headers=GZIP).headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in client.get("/api/v1/courses", headers=GZIP).headers


@pytest.mark.skipif(STORAGE == "s3", reason="S3 blob downloads redirect to presigned URLs: the hub sends no body")
def test_blob_downloads_and_ranges_are_never_compressed(
    client: FlaskClient, app: Flask, db: Session, make: Accounts, course_body: dict[str, Any]
) -> None:
    text = ("第一课 配方法\n" * 2000).encode()  # compressible on purpose
    stored = app.extensions["hub.storage"].store(io.BytesIO(text))
    db.add(Blob(sha256=stored.sha256, size=len(text), media_type="text/plain"))
    uploader = make.user("up@x.cn", make.school(), "uploader")
    course = services.create_course(db, uploader, CourseCreate(**course_body))
    lesson = services.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    services.publish_course(db, uploader, course.id)
    db.add(Material(lesson_id=lesson.id, kind="document", title="讲义", original_sha256=stored.sha256, status="ready"))
    db.commit()
    url = f"/api/v1/blobs/{stored.sha256}"
    whole = client.get(url, headers=GZIP)
    assert whole.status_code == 200 and "Content-Encoding" not in whole.headers
    assert hashlib.sha256(whole.data).hexdigest() == stored.sha256
    part = client.get(url, headers={**GZIP, "Range": "bytes=100-199"})
    assert part.status_code == 206 and "Content-Encoding" not in part.headers and part.data == text[100:200]


def test_cache_headers(client: FlaskClient, make: Accounts) -> None:
    home = client.get("/")
    assert home.headers["Cache-Control"] == "public, max-age=60"
    assert client.get("/courses/999").headers["Cache-Control"] == "private, no-store"  # a 404 is not kept
    login = client.get("/login")  # sets the CSRF session cookie
    assert login.headers["Cache-Control"] == "private, no-store"

    make.user("t@rural.cn", make.school("通渭县中心小学", "rural"), "teacher", password="correct horse")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"csrf_token": token, "email": "t@rural.cn", "password": "correct horse"})
    signed_in = client.get("/")
    assert "t@rural.cn" in signed_in.text and signed_in.headers["Cache-Control"] == "private, no-store"


def test_static_files_have_versioned_urls_and_long_lifetimes(client: FlaskClient, app: Flask) -> None:
    html = client.get("/").text
    href = re.search(r'href="(/static/hub\.css\?v=([0-9a-f]+))"', html)
    assert href, html[:500]
    css = (app.static_folder or "") + "/hub.css"
    with open(css, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest().startswith(href.group(2))
    versioned = client.get(href.group(1), headers=GZIP)
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["Content-Encoding"] == "gzip"
    with open(css, "rb") as f:
        assert gzip.decompress(versioned.data) == f.read()
    assert "immutable" not in client.get("/static/hub.css").headers.get("Cache-Control", "")
