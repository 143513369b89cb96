"""Whole-course ZIPs over real HTTP (waitress on loopback), on local storage and S3.

A blob URL never changes its bytes, so "the content changed under an If-Range" is
tested here, on the course ZIP, whose URL stays while the course changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import date
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy.orm import Session

from hub.catalog.models import Material
from hub.media.downloads import download_counts
from tests.conftest import Accounts
from tests.functional.conftest import LiveServer, wait_until
from tests.support.courses import SeededCourse, seed_course


@pytest.fixture
def seeded(app: Flask, db: Session, make: Accounts, live_server: LiveServer) -> SeededCourse:
    return seed_course(app.extensions["hub.storage"], db, make.school().id)


def zip_url(live_server: LiveServer, seeded: SeededCourse) -> str:
    return f"{live_server.url}/courses/{seeded.course_id}/download"


def check_archive(body: bytes, seeded: SeededCourse) -> dict[str, Any]:
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    for entry in manifest["files"]:
        data = archive.read(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        if entry["path"] != "index.html":
            assert seeded.blobs[entry["sha256"]] == data  # the stored bytes, read from storage
    return manifest


def counted(db: Session, sha256: str) -> int:
    db.rollback()  # a fresh snapshot: the server counts in its own transaction
    return sum(t.count for t in download_counts(db, date(2000, 1, 1)) if t.sha256 == sha256)


def test_course_zip_streams_with_its_size_known(live_server: LiveServer, seeded: SeededCourse, db: Session) -> None:
    page = requests.get(f"{live_server.url}/courses/{seeded.course_id}", timeout=10).text
    href = re.search(r'<a id="download-course" href="([^"]+)"', page)
    assert href is not None
    r = requests.get(live_server.url + href.group(1), timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.headers["Accept-Ranges"] == "bytes"
    assert "filename*=UTF-8''" in r.headers["Content-Disposition"]
    manifest = check_archive(r.content, seeded)
    assert manifest["quality"] == "smallest"
    assert (
        r.headers["ETag"]
        == '"' + hashlib.sha256(zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json")).hexdigest() + '"'
    )
    # A completed ZIP counts each media file in it once (hub.media.views).
    wait_until(lambda: counted(db, seeded.by_role["video-240p"]) == 1, 10, "the ZIP's files counted")
    assert counted(db, seeded.by_role["document"]) == 1 and counted(db, seeded.by_role["video-360p"]) == 0


def test_interrupted_course_zip_resumes(live_server: LiveServer, seeded: SeededCourse) -> None:
    url = zip_url(live_server, seeded)
    whole = requests.get(url, timeout=30).content
    with requests.get(url, stream=True, timeout=30) as first:
        part = first.raw.read(len(whole) // 2)
        etag = first.headers["ETag"]
    rest = requests.get(url, headers={"Range": f"bytes={len(part)}-", "If-Range": etag}, timeout=30)
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes {len(part)}-{len(whole) - 1}/{len(whole)}"
    assert hashlib.sha256(part + rest.content).hexdigest() == hashlib.sha256(whole).hexdigest()
    check_archive(part + rest.content, seeded)


def test_stale_if_range_gives_the_whole_new_zip(live_server: LiveServer, seeded: SeededCourse, db: Session) -> None:
    url = zip_url(live_server, seeded)
    with requests.get(url, stream=True, timeout=30) as first:
        part = first.raw.read(1000)
        etag = first.headers["ETag"]
    video = db.get(Material, seeded.material_ids["video"])
    assert video is not None
    video.title = "配方法讲解（修订版）"  # the course changes while the teacher is offline
    db.commit()
    r = requests.get(url, headers={"Range": f"bytes={len(part)}-", "If-Range": etag}, timeout=30)
    assert r.status_code == 200 and r.headers["ETag"] != etag
    assert r.headers["Content-Length"] == str(len(r.content))
    manifest = check_archive(r.content, seeded)
    titles = {f["material"]["title"] for f in manifest["files"] if "material" in f}
    assert "配方法讲解（修订版）" in titles
    assert requests.get(url, headers={"If-None-Match": r.headers["ETag"]}, timeout=10).status_code == 304


def test_anonymous_users_get_published_courses_only(
    app: Flask, db: Session, make: Accounts, live_server: LiveServer
) -> None:
    draft = seed_course(app.extensions["hub.storage"], db, make.school().id, status="draft", title="草稿课程")
    r = requests.get(f"{live_server.url}/courses/{draft.course_id}/download", timeout=10)
    assert r.status_code == 404
