"""Counting plays, downloads and course ZIPs per lesson and material (hub.reach.services), through the routes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson, Material
from hub.db import get_database, utcnow
from hub.jobs import ROLL_UP_REACH, Outbox
from hub.media.models import DownloadCount, Rendition
from hub.reach import services as reach
from hub.reach.models import PendingDay, PlaySeen, UsageCount
from hub.sync.models import MirrorCourse
from tests.conftest import STORAGE, Accounts
from tests.support.courses import SeededCourse, seed_course

DEVICE = "0123456789abcdef0123456789abcdef"
# On S3 the hub redirects to the bucket and counts as it redirects (hub.media.api).
WHOLE, PART = (302, 302) if STORAGE == "s3" else (200, 206)


@pytest.fixture
def seeded(app: Flask, db: Session, make: Accounts) -> SeededCourse:
    school = make.school()
    return seed_course(app.extensions["hub.storage"], db, school.id)


def usage(db: Session, **where: Any) -> dict[tuple[int, int, int, str, str, int], int]:
    """(course, lesson, material, kind, source, school) → count, today's rows."""
    db.rollback()  # a fresh snapshot: the routes count in their own transactions
    rows = db.scalars(select(UsageCount).where(*(getattr(UsageCount, k) == v for k, v in where.items())))
    return {(r.course_id, r.lesson_id, r.material_id, r.kind, r.source, r.school_id): r.count for r in rows}


def fetch(client: FlaskClient, url: str, **headers: str) -> int:
    """GET `url` to its last byte (a download counts once the body has been sent), its status."""
    response = client.get(url, headers=headers)
    response.get_data()
    response.close()
    return response.status_code


def play(client: FlaskClient, material: int, device: str = DEVICE, **headers: str) -> Any:
    return client.post("/plays", data={"material": str(material), "device": device}, headers=headers)


def test_a_beacon_play_counts_once_per_device_material_and_day(
    client: FlaskClient, db: Session, seeded: SeededCourse
) -> None:
    video, lesson = seeded.material_ids["video"], seeded.lesson_ids[0]
    first = play(client, video)
    assert first.status_code == 204 and first.headers["Cache-Control"] == "no-store"
    assert play(client, video).status_code == 204  # the same device again today: answered alike, not counted
    assert play(client, video, "another-device-0123456789").status_code == 204
    assert usage(db) == {(seeded.course_id, lesson, video, "play", "hub", 0): 2}
    assert db.scalars(select(PendingDay.day)).all() == [utcnow().date()]  # marked once for the roll-up
    assert db.scalar(select(func.count()).select_from(Outbox).where(Outbox.task == ROLL_UP_REACH)) == 1
    # Nothing about the device is in the counts; the de-duplication keeps a keyed hash of it.
    seen = db.scalars(select(PlaySeen.device)).all()
    assert len(seen) == 2 and DEVICE not in seen and all(len(d) == 32 for d in seen)


def test_the_beacon_refuses_what_it_cannot_count(
    client: FlaskClient, db: Session, make: Accounts, seeded: SeededCourse
) -> None:
    bad = client.post("/plays", data={"material": "x", "device": "short"}, headers={"Accept": "application/json"})
    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"material", "device"}
    assert play(client, seeded.material_ids["doc"]).status_code == 404  # a document has no player
    assert play(client, 10**12).status_code == 404
    draft = seed_course(client.application.extensions["hub.storage"], db, make.school("草稿学校").id, status="draft")
    assert play(client, draft.material_ids["video"]).status_code == 404  # a draft reaches nobody
    cross = play(client, seeded.material_ids["video"], Origin="https://elsewhere.example")
    assert cross.status_code == 403
    assert usage(db) == {}


def test_a_signed_in_teacher_counts_for_the_school(
    client: FlaskClient, db: Session, make: Accounts, seeded: SeededCourse
) -> None:
    rural = make.school("山村小学", "rural")
    headers = make.bearer(make.user("t@rural.cn", rural, "teacher"))
    video = seeded.material_ids["video"]
    assert fetch(client, f"/api/v1/blobs/{seeded.by_role['video-240p']}?m={video}", **headers) == WHOLE
    assert usage(db) == {(seeded.course_id, seeded.lesson_ids[0], video, "download", "hub", rural.id): 1}


def test_a_download_counts_for_the_material_the_url_names(
    app: Flask, client: FlaskClient, db: Session, seeded: SeededCourse
) -> None:
    # The same video in a second lesson: a new material using the same renditions.
    first = db.get(Material, seeded.material_ids["video"])
    assert first is not None
    second_lesson = seeded.lesson_ids[1]
    twin = Material(
        lesson_id=second_lesson,
        kind="video",
        title="复习",
        filename="lesson.mov",
        original_sha256=first.original_sha256,
        status="ready",
    )
    db.add(twin)
    db.flush()
    sha = seeded.by_role["video-360p"]
    db.add(Rendition(material_id=twin.id, profile="video-360p", status="ready", blob_sha256=sha, bytes=60_000))
    db.commit()
    course, lesson = seeded.course_id, seeded.lesson_ids[0]

    assert fetch(client, f"/api/v1/blobs/{sha}?m={twin.id}") == WHOLE
    assert fetch(client, f"/api/v1/blobs/{sha}?m={twin.id}") == WHOLE
    assert fetch(client, f"/api/v1/blobs/{sha}?m={first.id}") == WHOLE
    # No ?m= (an API client), or one that does not use the file: the first material using it.
    assert fetch(client, f"/api/v1/blobs/{sha}") == WHOLE
    assert fetch(client, f"/api/v1/blobs/{sha}?m={seeded.material_ids['doc']}") == WHOLE
    # Ranges: counted once, as the per-blob counts are (with the one that reaches the end,
    # or on S3 the one that starts the file).
    assert fetch(client, f"/api/v1/blobs/{sha}?m={twin.id}", Range="bytes=0-99") == PART
    assert fetch(client, f"/api/v1/blobs/{sha}?m={twin.id}", Range="bytes=100-") == PART
    # Not downloads: a poster, the player's own requests, an image the page shows.
    assert fetch(client, f"/api/v1/blobs/{seeded.by_role['poster']}") == WHOLE
    assert fetch(client, f"/api/v1/blobs/{sha}?m={first.id}&use=view") == WHOLE
    assert usage(db, kind="download") == {
        (course, second_lesson, twin.id, "download", "hub", 0): 3,
        (course, lesson, first.id, "download", "hub", 0): 3,
    }
    # The per-blob counts go on as before (every completed transfer, the school servers' reports read them).
    db.rollback()
    per_blob = sum(db.scalars(select(DownloadCount.count).where(DownloadCount.blob_sha256 == sha)))
    assert per_blob == 7


def test_without_javascript_the_first_media_request_of_a_device_counts_the_play(
    client: FlaskClient, db: Session, seeded: SeededCourse
) -> None:
    video, sha = seeded.material_ids["video"], seeded.by_role["video-240p"]
    url = f"/api/v1/blobs/{sha}?m={video}&use=play"
    phone = {"User-Agent": "Mozilla/5.0 (Linux; Android 4.4) 旧手机"}
    for start in (0, 1000, 20_000):  # a player's range requests: one play
        assert client.get(url, headers={**phone, "Range": f"bytes={start}-"}).status_code == PART
    assert fetch(client, url, **{"User-Agent": "another browser"}) == WHOLE
    assert client.head(url, headers={"User-Agent": "a third"}).status_code == WHOLE  # no body, no play
    # The player's requests are not downloads, even when one reaches the end.
    assert usage(db) == {(seeded.course_id, seeded.lesson_ids[0], video, "play", "hub", 0): 2}
    # player.js marks its browser's blob requests: the beacon counts those plays, not the request.
    client.set_cookie(reach.PLAYER_COOKIE, "1", path="/api/v1/blobs")
    assert fetch(client, url, **{"User-Agent": "a browser with player.js"}) == WHOLE
    assert usage(db)[(seeded.course_id, seeded.lesson_ids[0], video, "play", "hub", 0)] == 2


def test_a_completed_course_zip_counts_once_for_the_course(
    client: FlaskClient, db: Session, seeded: SeededCourse
) -> None:
    assert fetch(client, f"/courses/{seeded.course_id}/download") == 200
    assert client.head(f"/courses/{seeded.course_id}/download").status_code == 200
    assert usage(db) == {(seeded.course_id, 0, 0, "zip", "hub", 0): 1}


def test_the_lesson_page_names_the_material_in_every_file_url(client: FlaskClient, seeded: SeededCourse) -> None:
    page = client.get(f"/lessons/{seeded.lesson_ids[0]}").text
    video = seeded.material_ids["video"]
    assert f'src="/api/v1/blobs/{seeded.by_role["video-240p"]}?m={video}&amp;use=play"' in page
    assert f'href="/api/v1/blobs/{seeded.by_role["video-360p"]}?m={video}" download' in page
    assert 'data-plays="/plays"' in page and 'data-blobs="/api/v1/blobs"' in page


def test_play_de_duplication_forgets_the_days_before_yesterday(app: Flask, seeded: SeededCourse) -> None:
    counting = reach.Counting.for_app(app, None)
    today = utcnow().date()
    video = seeded.material_ids["video"]
    assert reach.record_play(counting, video, DEVICE, day=today - timedelta(days=3))
    assert reach.record_play(counting, video, DEVICE, day=today - timedelta(days=1))
    assert not reach.record_play(counting, video, DEVICE, day=today - timedelta(days=1))
    assert reach.record_play(counting, video, DEVICE, day=today)
    with get_database(app).session() as session:
        assert sorted(session.scalars(select(PlaySeen.day))) == [today - timedelta(days=1), today]


def test_add_usage_adds_and_caps(app: Flask) -> None:
    day = date(2026, 11, 30)
    with get_database(app).session() as session:
        assert reach.add_usage(session, {(day, 7, 8, 9, "play"): 3}, school_id=5, source="lan") == 3
        assert reach.add_usage(session, {(day, 7, 8, 9, "play"): 4}, school_id=5, source="lan", cap=5) == 2
        assert reach.add_usage(session, {(day, 7, 8, 9, "play"): 4}, school_id=5, source="lan", cap=5) == 0
        assert reach.add_usage(session, {(day, 7, 8, 9, "play"): 1}, school_id=5, source="usb", cap=5) == 1
        session.commit()
        counts = {r.source: r.count for r in session.scalars(select(UsageCount))}
    assert counts == {"lan": 5, "usb": 1}


def test_a_school_server_counts_in_the_upstreams_ids(app: Flask, db: Session, seeded: SeededCourse) -> None:
    # This hub as a school server that mirrored the seeded course: upstream course 70,
    # its lessons 700 and 701, the video 7000 and, in lesson 2, its three materials.
    course = db.get(Course, seeded.course_id)
    assert course is not None
    lessons = {lesson.position: lesson for lesson in course.lessons}

    def materials(lesson: Lesson, first_id: int) -> list[dict[str, Any]]:
        return [
            {"id": first_id + i, "kind": m.kind, "title": m.title, "filename": m.filename,
             "original": {"sha256": m.original_sha256}}
            for i, m in enumerate(sorted(lesson.materials, key=lambda m: m.id))
        ]  # fmt: skip

    entry = {
        "id": 70,
        "lessons": [
            {"id": 700, "position": 1, "materials": materials(lessons[1], 7000)},
            {"id": 701, "position": 2, "materials": materials(lessons[2], 7100)},
        ],
    }
    db.add(MirrorCourse(upstream_id=70, course_id=course.id, version=1, revision="a" * 64, entry=json.dumps(entry)))
    db.commit()
    counting = reach.Counting(get_database(app), True, "secret", 0)
    assert counting.source == "lan"
    assert reach.record_play(counting, seeded.material_ids["video"], DEVICE)
    assert reach.record_download(counting, seeded.by_role["doc-original"])
    assert reach.record_zip(counting, seeded.course_id)
    assert usage(db) == {
        (70, 700, 7000, "play", "lan", 0): 1,
        (70, 701, 7100, "download", "lan", 0): 1,
        (70, 0, 0, "zip", "lan", 0): 1,
    }
    # A course of the school server's own has no upstream id: not counted.
    db.delete(db.scalars(select(MirrorCourse)).one())
    db.commit()
    assert not reach.record_zip(counting, seeded.course_id)
