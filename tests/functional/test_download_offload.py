"""HUB_DOWNLOAD_OFFLOAD=x-accel-redirect behind a real nginx on loopback (the README's snippet)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy.orm import Session

from benchmarks.downloads.nginx import nginx_binary, start_nginx, write_config
from hub import create_app
from hub.catalog.models import Course, Lesson, Material
from hub.db import get_database
from hub.media.models import Blob
from tests.conftest import STORAGE, Accounts
from tests.functional.conftest import LiveServer, free_port, wait_until

pytestmark = [
    pytest.mark.skipif(STORAGE == "s3", reason="S3 downloads redirect to presigned URLs instead"),
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make system-deps)"),
]
SIZE = 200_000


@pytest.fixture
def offload_env(hub_env: dict[str, str]) -> dict[str, str]:
    return {**hub_env, "HUB_DOWNLOAD_OFFLOAD": "x-accel-redirect"}


@pytest.fixture
def proxied(offload_env: dict[str, str], make: Accounts, tmp_path: Path) -> Iterator[tuple[str, str, bytes]]:
    app: Flask = create_app(offload_env)
    data = os.urandom(SIZE)
    with get_database(app).session() as db:
        sha = _publish(app, db, make.school().id, data)
    server = LiveServer(offload_env, tmp_path)
    port = free_port()
    config = write_config(
        tmp_path / "nginx", f"127.0.0.1:{port}", f"127.0.0.1:{server.port}", app.extensions["hub.settings"].storage_dir
    )
    nginx = start_nginx(config, tmp_path / "nginx.log")

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, 20, "nginx in front of the hub")
        yield f"http://127.0.0.1:{port}/api/v1/blobs/{sha}", sha, data
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        server.process.stop()
        get_database(app).engine.dispose()


def _publish(app: Flask, db: Session, school_id: int, data: bytes) -> str:
    stored = app.extensions["hub.storage"].store(io.BytesIO(data))
    blob = Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4")
    course = Course(
        school_id=school_id,
        title="课程",
        category="curriculum",
        subject="math",
        grades_mask=1 << 9,
        language="zh",
        license="CC-BY-4.0",
        status="published",
    )
    lesson = Lesson(course=course, position=1, title="第一课")
    db.add_all([blob, course, lesson])
    db.add(Material(lesson=lesson, kind="video", title="一元二次方程", original=blob, status="ready"))
    db.commit()
    return stored.sha256


def test_nginx_sends_the_file_with_the_hubs_headers(proxied: tuple[str, str, bytes]) -> None:
    url, sha, data = proxied
    etag = f'"{sha}"'
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["ETag"] == etag and whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "filename*=UTF-8''" in whole.headers["Content-Disposition"]
    assert whole.headers["Accept-Ranges"] == "bytes" and "Last-Modified" not in whole.headers
    assert "X-Accel-Redirect" not in whole.headers
    suffix = requests.get(url, headers={"Range": "bytes=-100"}, timeout=10)
    assert suffix.status_code == 206 and suffix.content == data[-100:]
    gone = requests.get(url, headers={"Range": f"bytes={SIZE}-"}, timeout=10)
    assert gone.status_code == 416 and gone.headers["Content-Range"] == f"bytes */{SIZE}"
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=10).status_code == 304
    stale = requests.get(url, headers={"Range": "bytes=10-", "If-Range": '"' + "0" * 64 + '"'}, timeout=10)
    assert stale.status_code == 200 and stale.content == data


def test_interrupted_download_resumes_through_nginx(proxied: tuple[str, str, bytes]) -> None:
    url, sha, _data = proxied
    with requests.get(url, stream=True, timeout=10) as first:
        part = first.raw.read(SIZE // 2)
        etag = first.headers["ETag"]
    rest = requests.get(url, headers={"Range": f"bytes={len(part)}-", "If-Range": etag}, timeout=10)
    assert rest.status_code == 206
    assert hashlib.sha256(part + rest.content).hexdigest() == sha
