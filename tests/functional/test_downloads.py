"""Blob downloads over real HTTP (waitress on loopback): ranges, conditionals, counting."""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

import pytest
import requests
from flask import Flask
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson, Material
from hub.media.downloads import download_counts
from hub.media.models import Blob
from tests.conftest import STORAGE, Accounts
from tests.functional.conftest import LiveServer, wait_until

SIZE = 300_000
TITLE = "一元二次方程：配方法"
local_only = pytest.mark.skipif(STORAGE == "s3", reason="S3 storage redirects; see test_s3_redirect")
s3_only = pytest.mark.skipif(STORAGE != "s3", reason="needs HUB_TEST_STORAGE=s3")


@dataclass
class Served:
    data: bytes
    sha256: str
    url: str
    school_id: int

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


@pytest.fixture
def served(app: Flask, db: Session, make: Accounts, live_server: LiveServer) -> Served:
    """A published lesson whose original is a few hundred KB of random bytes."""
    data = os.urandom(SIZE)
    stored = app.extensions["hub.storage"].store(io.BytesIO(data))
    school = make.school()
    blob = Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4")
    course = Course(
        school_id=school.id,
        title="一元二次方程",
        category="curriculum",
        subject="math",
        grades_mask=1 << 9,
        language="zh",
        license="CC-BY-SA-4.0",
        status="published",
    )
    lesson = Lesson(course=course, position=1, title="配方法")
    db.add_all([blob, course, lesson])
    db.add(Material(lesson=lesson, kind="video", title=TITLE, filename="lesson.MP4", original=blob, status="ready"))
    db.commit()
    return Served(data, stored.sha256, live_server.api(f"/blobs/{stored.sha256}"), school.id)


def counted(db: Session, sha256: str) -> int:
    db.rollback()  # a fresh snapshot: the server counts in its own transaction
    return sum(t.count for t in download_counts(db, date(2000, 1, 1)) if t.sha256 == sha256)


def wait_counted(db: Session, sha256: str, expected: int) -> None:
    wait_until(lambda: counted(db, sha256) >= expected, 10, f"{expected} counted downloads")
    time.sleep(0.3)  # nothing else is on its way
    assert counted(db, sha256) == expected


def get(served: Served, **headers: str) -> requests.Response:
    return requests.get(served.url, headers=headers, timeout=10, allow_redirects=False)


@local_only
def test_whole_file_and_headers(served: Served, db: Session) -> None:
    r = get(served)
    assert r.status_code == 200
    assert r.content == served.data
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == served.etag
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.headers["Content-Type"] == "video/mp4"
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=UTF-8''{quote(TITLE + '.mp4')}" in disposition
    wait_counted(db, served.sha256, 1)


@local_only
@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-999", 0, 999), ("bytes=-500", SIZE - 500, SIZE - 1), ("bytes=1000-", 1000, SIZE - 1)],
)
def test_single_suffix_open_ended(served: Served, header: str, start: int, end: int) -> None:
    r = get(served, Range=header)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert r.headers["Content-Length"] == str(end - start + 1)
    assert r.content == served.data[start : end + 1]


@local_only
def test_multiple_unsatisfiable_and_malformed(served: Served) -> None:
    multi = get(served, Range="bytes=0-9,100-109")
    assert multi.status_code == 200 and multi.content == served.data
    bad = get(served, Range="bytes=oops")
    assert bad.status_code == 200 and bad.content == served.data
    r = get(served, Range=f"bytes={SIZE}-")
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{SIZE}"


@local_only
def test_conditionals(served: Served) -> None:
    fresh = get(served, Range="bytes=100-199", **{"If-Range": served.etag})
    assert fresh.status_code == 206 and fresh.content == served.data[100:200]
    stale = get(served, Range="bytes=100-199", **{"If-Range": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200 and stale.content == served.data
    dated = get(served, Range="bytes=100-199", **{"If-Range": "Mon, 23 Nov 2026 10:00:00 GMT"})
    assert dated.status_code == 200 and dated.content == served.data
    cached = get(served, **{"If-None-Match": served.etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == served.etag


@local_only
def test_head_and_name_hint(served: Served, db: Session) -> None:
    r = requests.head(served.url, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.headers["Accept-Ranges"] == "bytes"
    ranged = requests.head(served.url, headers={"Range": "bytes=-10"}, timeout=10)
    assert ranged.status_code == 206 and ranged.headers["Content-Range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    named = requests.get(served.url, params={"name": "../../etc/第一课\r\nX: y"}, timeout=10)
    disposition = named.headers["Content-Disposition"]
    assert "/" not in disposition.split("filename*=", 1)[1] and "\r" not in disposition and "\n" not in disposition
    assert quote("第一课") in disposition and disposition.endswith(".mp4")
    wait_counted(db, served.sha256, 1)  # HEAD never counts, the named GET does


@local_only
def test_interrupted_download_resumes(served: Served) -> None:
    half = SIZE // 2
    with requests.get(served.url, stream=True, timeout=10) as first:
        assert first.status_code == 200
        part = first.raw.read(half)
    assert len(part) == half
    rest = get(served, Range=f"bytes={half}-", **{"If-Range": first.headers["ETag"]})
    assert rest.status_code == 206
    assert hashlib.sha256(part + rest.content).hexdigest() == served.sha256


@local_only
def test_counting(served: Served, db: Session) -> None:
    third = SIZE // 3
    for header in (f"bytes=0-{third - 1}", f"bytes={third}-{2 * third - 1}", f"bytes={2 * third}-"):
        assert get(served, Range=header).status_code == 206
    wait_counted(db, served.sha256, 1)
    assert get(served).content == served.data
    wait_counted(db, served.sha256, 2)
    assert get(served, Range="bytes=0-99").status_code == 206  # not to the end: not counted
    assert get(served, **{"If-None-Match": served.etag}).status_code == 304
    wait_counted(db, served.sha256, 2)


@s3_only
def test_s3_redirect(served: Served, db: Session) -> None:
    r = get(served)
    assert r.status_code == 302
    location = r.headers["Location"]
    whole = requests.get(location, timeout=10)
    assert whole.status_code == 200 and whole.content == served.data
    assert f"filename*=UTF-8''{quote(TITLE + '.mp4')}" in whole.headers["Content-Disposition"]
    ranged = requests.get(location, headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == served.data[1000:2000]
    with requests.get(location, stream=True, timeout=10) as interrupted:
        part = interrupted.raw.read(SIZE // 2)
    rest = requests.get(location, headers={"Range": f"bytes={len(part)}-"}, timeout=10)
    assert rest.status_code == 206
    assert hashlib.sha256(part + rest.content).hexdigest() == served.sha256
    followed = requests.get(served.url, headers={"Range": "bytes=-100"}, timeout=10)
    assert followed.status_code == 206 and followed.content == served.data[-100:]
    assert get(served, **{"If-None-Match": served.etag}).status_code == 304
    # Counted at redirect time: the plain GET and not the suffix-range resumption.
    wait_counted(db, served.sha256, 1)
    assert get(served, Range="bytes=0-99").status_code == 302
    wait_counted(db, served.sha256, 2)


@s3_only
def test_s3_unsatisfiable_and_multiple_ranges(served: Served) -> None:
    # 416 is answered by the hub, with the Content-Range some S3 servers leave out.
    r = get(served, Range=f"bytes={SIZE}-")
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{SIZE}"
    # Several ranges are redirected too; S3 answers them with the whole object.
    multi = requests.get(served.url, headers={"Range": "bytes=0-9,100-109"}, timeout=10)
    assert multi.status_code == 200 and multi.content == served.data


@s3_only
def test_s3_interrupted_download_resumes_through_the_hub_url(served: Served) -> None:
    with requests.get(served.url, stream=True, timeout=10) as first:
        assert first.status_code == 200
        part = first.raw.read(SIZE // 2)
    # A browser resumes at the URL it started from, with the ETag it has; the hub
    # redirects again and S3 sends the rest.
    rest = requests.get(served.url, headers={"Range": f"bytes={len(part)}-", "If-Range": served.etag}, timeout=10)
    assert rest.status_code == 206 and rest.headers["Content-Range"] == f"bytes {len(part)}-{SIZE - 1}/{SIZE}"
    assert hashlib.sha256(part + rest.content).hexdigest() == served.sha256
