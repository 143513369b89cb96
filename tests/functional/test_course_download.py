"""Whole-course ZIPs over real HTTP (waitress on loopback), on local storage and S3.

A blob URL never changes its bytes, so "the content changed under an If-Range" is
tested here, on the course ZIP, whose URL stays while the course changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy.orm import Session

from hub.catalog.models import Material
from hub.media.downloads import download_counts
from hub.media.models import Blob
from tests.conftest import STORAGE, Accounts
from tests.functional.conftest import HUB, LiveServer, Process, free_port, wait_until
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
    # A completed ZIP counts each media file in it once (hub.media.views), one after another
    # in a background thread: wait for all of them, not the first.
    in_zip = (seeded.by_role["video-240p"], seeded.by_role["document"])
    wait_until(lambda: all(counted(db, sha256) == 1 for sha256 in in_zip), 10, "the ZIP's files counted")
    assert counted(db, seeded.by_role["video-360p"]) == 0


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


@pytest.mark.skipif(STORAGE == "s3", reason="S3 course ZIPs are read by a worker thread (README)")
def test_stalled_downloads_hold_no_worker_thread(
    app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path
) -> None:
    """Clients that stop reading must not take waitress's threads (here 2) from page views.

    Bodies bigger than waitress's 16 MiB output buffer are what used to hold a thread:
    a generator blocks once that buffer is full. Files go to the I/O loop instead.
    """
    seeded = seed_course(app.extensions["hub.storage"], db, make.school().id)
    big = app.extensions["hub.storage"].store(io.BytesIO(os.urandom(24 * 1024 * 1024)))
    video = db.get(Material, seeded.material_ids["video"])
    assert video is not None
    rendition = next(r for r in video.renditions if r.profile == "video-240p")
    db.add(Blob(sha256=big.sha256, size=big.size, media_type="video/mp4"))
    rendition.blob_sha256, rendition.bytes = big.sha256, big.size
    db.commit()
    port = free_port()
    server = Process([*HUB, "serve", "--port", str(port), "--threads", "2"], hub_env, tmp_path / "serve2.log")
    base = f"http://127.0.0.1:{port}"
    stalled: list[socket.socket] = []
    try:
        wait_until(lambda: _up(base), 30, "the web server")
        for path in [f"/api/v1/blobs/{big.sha256}"] * 2 + [f"/courses/{seeded.course_id}/download"] * 2:
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert sock.recv(12).startswith(b"HTTP/1.1 200")  # it started, then the client stops reading
            stalled.append(sock)
        for _ in range(3):
            page = requests.get(f"{base}/courses/{seeded.course_id}", timeout=20)
            assert page.status_code == 200
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
