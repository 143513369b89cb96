"""The quality floor on generated lessons of different character (issue 14), with real ffmpeg.

Each video rendition must keep its budget (total kbit/s: video + audio + container)
and either hold its SSIM floor against the original, or record that it did not
and say so on the lesson page and in the API. The clips come from
tests/support/clips.py; ``camera-grain-high-720p`` and ``zoom`` are held out:
hub/media/quality.py was not tuned on them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import i18n
from hub.catalog import services as catalog
from hub.catalog.models import Material
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import get_database
from hub.media import ffmpeg, pipeline, quality
from hub.media.profiles import PROFILES
from tests.conftest import COURSE, Accounts
from tests.support import clips as generated

pytestmark = pytest.mark.slow
LIMITS = ffmpeg.MediaLimits()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("clips")


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("fractal", "video-360p"),  # clean, every frame new: the floor is held at 288p and 10 fps
        ("slides", "video-240p"),
        ("camera-grain-high-720p", "video-360p"),  # held out: the noisy 720p30 camera
        ("zoom", "video-240p"),  # held out
    ],
)
def test_a_rendition_keeps_its_budget_and_its_floor_or_says_what_it_traded(
    app: Flask, clips: Path, tmp_path: Path, name: str, profile: str
) -> None:
    source = generated.make(generated.CLIPS[name], clips)
    probe = ffmpeg.probe(source, LIMITS)
    ladder = PROFILES[profile]
    info = ffmpeg.transcode(source, probe, ladder, tmp_path / "out.mp4", limits=LIMITS)
    assert info is not None and info.plan is not None and info.full_plan is not None and info.kbps is not None
    assert info.kbps <= ladder.budget_kbps, f"{name} {profile}: {info.kbps} kbit/s"
    # Against the original at the profile's full size, whatever size the rendition was made at.
    ssim = ffmpeg.ssim(source, tmp_path / "out.mp4", probe, info.full_plan.width, info.full_plan.height, limits=LIMITS)
    record = quality.describe(
        info.plan, info.full_plan, ssim=ssim, floor=ladder.ssim_floor, budget_kbps=ladder.budget_kbps
    )
    with app.test_request_context(headers={"Accept-Language": "en"}):
        note = i18n.quality_note(record, ssim)
    if ssim >= ladder.ssim_floor:
        assert record["met"]
    else:
        assert not record["met"] and "below the" in note, (name, profile, ssim, note)
    assert bool(note) == quality.traded(record)  # a trade of size or frame rate is always said
    if not generated.CLIPS[name].noise:
        assert record["met"], f"{name} {profile}: SSIM {ssim:.4f}"  # without grain the floor is held
    if name == "fractal":  # held by trading frame rate and size: it says so
        assert (info.plan.height, info.plan.rate) < (info.full_plan.height, info.full_plan.rate)
        assert note.startswith("Reduced to ") and f"SSIM {ssim:.3f} (target 0.95)" in note


@pytest.fixture
def lesson_id(make: Accounts, db: Session) -> int:
    user = make.user("up@x.cn", make.school(), "uploader", password="correct horse")
    course = catalog.create_course(db, user, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, user, course.id, LessonCreate(title="板书"))
    db.commit()
    return lesson.id


def test_what_a_rendition_traded_is_on_the_lesson_page_and_in_the_api(
    app: Flask, client: FlaskClient, db: Session, make: Accounts, lesson_id: int, clips: Path
) -> None:
    # Handwriting on a grainy board: measured against the original, the grain keeps the 360p below its floor.
    user = db.scalars(select(catalog.User)).first()
    storage, limits = app.extensions["hub.storage"], app.extensions["hub.media_limits"]
    data = generated.make(generated.CLIPS["board"], clips).read_bytes()
    material = catalog.add_material(db, storage, user, lesson_id, io.BytesIO(data), filename="board.mp4", title="板书")
    db.commit()
    # The 360p alone (the other renditions would only add minutes): it becomes ready on its own.
    queued = pipeline.process_material(db, storage, material.id, limits)
    db.expire_all()
    rendition = next(r for r in db.get(Material, material.id).renditions if r.profile == "video-360p")  # type: ignore[union-attr]
    assert rendition.id in queued
    assert pipeline.build_rendition(get_database(app), storage, rendition.id, limits, lease=60) == "ready"
    db.expire_all()
    missed = db.get(type(rendition), rendition.id)
    assert missed is not None and missed.kbps is not None and missed.ssim is not None and missed.quality is not None
    assert missed.kbps <= 200 and missed.ssim < 0.95 and not missed.quality["met"]

    auth = make.bearer(user)
    body = client.get(f"/api/v1/materials/{material.id}", headers={**auth, "Accept-Language": "en"}).get_json()
    shown = {r["profile"]: r for r in body["renditions"]}
    assert shown["video-360p"]["quality"]["met"] is False
    assert shown["video-360p"]["quality"]["floor"] == 0.95
    note = shown["video-360p"]["quality"]["note"]
    assert f"SSIM {missed.ssim:.3f}" in note and "below the 0.95 target" in note

    # The uploader, signed in, sees it under the download while the other renditions are still being made.
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert token is not None
    client.post("/login", data={"csrf_token": token[1], "email": "up@x.cn", "password": "correct horse"})
    page = client.get(f"/lessons/{lesson_id}", headers={"Accept-Language": "zh"}).get_data(as_text=True)
    assert f"SSIM 为 {missed.ssim:.3f}，低于目标 0.95" in page
    page = client.get(f"/lessons/{lesson_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert note in page
