"""Who sends a local blob's bytes: the server's file_wrapper window, or a reverse proxy."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from hub import create_app
from hub.catalog.models import Course, Lesson, Material
from hub.db import get_database
from hub.media.api import _RangeFile
from hub.media.downloads import download_counts
from hub.media.models import Blob
from hub.media.storage import key_for
from tests.conftest import STORAGE, Accounts

local_only = pytest.mark.skipif(STORAGE == "s3", reason="offload applies to local storage")


def test_range_file_is_a_window(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(100)))
    done: list[bool] = []
    window = _RangeFile(path, 10, 20, lambda: done.append(True))
    assert window.tell() == 10
    assert window.seek(0, 2) == 20  # "end of file" is the end of the range
    window.seek(10)
    assert window.read() == bytes(range(10, 20)) and window.read(5) == b""
    window.close()
    assert done == [True]


def test_range_file_counts_only_when_all_was_sent(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)
    done: list[bool] = []
    window = _RangeFile(path, 0, 100, lambda: done.append(True))
    assert len(window.read(60)) == 60
    window.close()  # the client went away after 60 bytes
    window.close()
    assert done == []


@pytest.fixture
def offload_app(hub_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Flask]:
    app = create_app({**hub_env, "HUB_DOWNLOAD_OFFLOAD": request.param})
    yield app
    get_database(app).engine.dispose()


def _published_blob(app: Flask, make: Accounts, db: Session) -> tuple[str, bytes]:
    data = os.urandom(5000)
    stored = app.extensions["hub.storage"].store(io.BytesIO(data))
    blob = Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4")
    course = Course(
        school_id=make.school().id,
        title="课程",
        category="curriculum",
        subject="math",
        grades_mask=1 << 9,
        language="zh",
        license="CC-BY-4.0",
        status="published",
    )
    lesson = Lesson(course=course, position=1, title="第一课")
    db.add_all(
        [blob, course, lesson, Material(lesson=lesson, kind="video", title="视频", original=blob, status="ready")]
    )
    db.commit()
    return stored.sha256, data


@local_only
@pytest.mark.parametrize("offload_app", ["x-accel-redirect", "x-sendfile"], indirect=True)
def test_offload_hands_the_file_to_the_proxy(offload_app: Flask, db: Session, make: Accounts) -> None:
    sha, _data = _published_blob(offload_app, make, db)
    client = offload_app.test_client()
    r = client.get(f"/api/v1/blobs/{sha}", headers={"Range": "bytes=0-99"})
    assert r.status_code == 200 and r.data == b""  # the proxy answers the Range from the request
    if offload_app.extensions["hub.settings"].download_offload == "x-accel-redirect":
        assert r.headers["X-Accel-Redirect"] == "/_blobs/" + key_for(sha)
    else:
        assert r.headers["X-Sendfile"] == str(offload_app.extensions["hub.storage"].local_path(sha))
    assert r.headers["ETag"] == f'"{sha}"' and "filename*=UTF-8''" in r.headers["Content-Disposition"]
    # The hub still answers what it can without the bytes.
    assert client.get(f"/api/v1/blobs/{sha}", headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    assert client.get(f"/api/v1/blobs/{sha}", headers={"Range": "bytes=9999-"}).status_code == 416
    head = client.head(f"/api/v1/blobs/{sha}")
    assert head.headers["Content-Length"] == "5000" and "X-Accel-Redirect" not in head.headers
    # Counted at hand-off when the request starts the file; a resumption is not.
    client.get(f"/api/v1/blobs/{sha}", headers={"Range": "bytes=100-"})
    db.rollback()
    assert sum(t.count for t in download_counts(db, date(2000, 1, 1)) if t.sha256 == sha) == 1
