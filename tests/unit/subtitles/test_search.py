"""Words spoken in a lesson find it: subtitles are indexed, and a hit links to when they are said."""

from __future__ import annotations

import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.search import SearchEngine, services
from tests.conftest import Accounts
from tests.support.courses import SeededCourse, seed_course

ZH = "1\n00:00:05,000 --> 00:00:08,000\n今天先复习一下\n\n2\n00:01:23,000 --> 00:01:27,000\n这就是韦达定理的由来\n"
EN = "WEBVTT\n\n00:00:40.000 --> 00:00:44.000\nNow we complete the square with a parabola sketch.\n"


@pytest.fixture
def engine(app: Flask) -> SearchEngine:
    engine: SearchEngine = app.extensions["hub.search"]
    return engine


@pytest.fixture
def seeded(app: Flask, db: Session, make: Accounts) -> SeededCourse:
    return seed_course(app.extensions["hub.storage"], db, make.school().id)


def _attach(client: FlaskClient, headers: dict[str, str], material: int, text: str, language: str) -> None:
    r = client.post(
        f"/api/v1/materials/{material}/subtitles",
        data={"file": (io.BytesIO(text.encode("gbk" if language == "zh" else "utf-8")), "a.srt"), "language": language},
        headers=headers,
    )
    assert r.status_code == 201, r.json


def test_a_word_only_spoken_finds_the_lesson_at_its_time(
    client: FlaskClient, db: Session, make: Accounts, engine: SearchEngine, seeded: SeededCourse
) -> None:
    up = make.bearer(make.user("up@haidian.cn", db.get_one(School, 1), "uploader"))
    video = seeded.material_ids["video"]
    lesson = seeded.lesson_ids[0]
    services.index_course(db, engine, seeded.course_id)
    assert client.get("/api/v1/search", query_string={"q": "韦达定理"}).json["total"] == 0

    _attach(client, up, video, ZH, "zh")
    _attach(client, up, video, EN, "en")
    db.expire_all()
    services.index_course(db, engine, seeded.course_id)  # what the queued INDEX_COURSE task does

    for q, time, word in (("韦达定理", 83, "韦达定理"), ("parabola", 40, "parabola")):
        hits = client.get("/api/v1/search", query_string={"q": q}).json["hits"]
        assert [(h["type"], h["id"], h["time"]) for h in hits] == [("lesson", lesson, time)]
        assert f"<mark>{word}</mark>" in hits[0]["snippet"]
        assert hits[0]["url"] == f"/lessons/{lesson}?t={time}&m={video}#material-{video}"
        page = client.get("/search", query_string={"q": q}).text
        assert f'href="/lessons/{lesson}?t={time}&amp;m={video}#material-{video}"' in page
    # A lesson found by its own words links to the lesson, with no time.
    own = client.get("/api/v1/search", query_string={"q": "配方法"}).json["hits"]
    assert any(h["id"] == lesson and h["time"] is None and h["url"] == f"/lessons/{lesson}" for h in own)

    # The search check agrees with what was indexed; removing the subtitles removes the words.
    assert services.check(db, engine).ok
    assert client.delete(f"/api/v1/materials/{video}/subtitles/zh", headers=up).status_code == 204
    db.expire_all()
    assert not services.check(db, engine).ok  # stale until the queued re-index runs
    services.index_course(db, engine, seeded.course_id)
    assert client.get("/api/v1/search", query_string={"q": "韦达定理"}).json["total"] == 0
    assert re.search(r"<mark>parabola</mark>", client.get("/search", query_string={"q": "parabola"}).text)
