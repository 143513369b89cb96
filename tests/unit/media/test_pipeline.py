"""The media pipeline's services with real ffmpeg on generated media, no broker."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import jobs
from hub.catalog import services as catalog
from hub.catalog.models import Material
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.cli import main
from hub.db import get_database, utcnow
from hub.jobs import Outbox
from hub.media import pipeline
from hub.media.models import Blob, Rendition
from hub.media.storage import StoredBlob
from tests.conftest import COURSE, Accounts
from tests.support.media import lesson_video


@pytest.fixture
def lesson_id(make: Accounts, db: Session) -> int:
    user = make.user("up@x.cn", make.school(), "uploader")
    course = catalog.create_course(db, user, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, user, course.id, LessonCreate(title="配方法"))
    db.commit()
    return lesson.id


def _material(app: Flask, db: Session, lesson_id: int, data: bytes, name: str) -> Material:
    user = db.scalars(select(catalog.User)).first()
    material = catalog.add_material(
        db, app.extensions["hub.storage"], user, lesson_id, io.BytesIO(data), filename=name, title=name
    )
    db.commit()
    return material


def _run(app: Flask, db: Session, material_id: int) -> Material:
    """What the worker does, in this process: probe, then each rendition."""
    limits = app.extensions["hub.media_limits"]
    storage = app.extensions["hub.storage"]
    for rendition_id in pipeline.process_material(db, storage, material_id, limits):
        pipeline.build_rendition(get_database(app), storage, rendition_id, limits, lease=60)
    db.expire_all()
    material = db.get(Material, material_id)
    assert material is not None
    return material


def test_video_ladder_is_built_once(app: Flask, db: Session, lesson_id: int, tmp_path: Path) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    done = _run(app, db, material.id)
    assert done.status == "ready" and done.progress == 100 and done.error == ""
    by_profile = {r.profile: r for r in done.renditions}
    assert {"video-360p", "video-240p", "audio", "poster"} <= set(by_profile)
    small = by_profile["video-240p"]
    assert small.status == "ready" and small.height == 240 and small.blob_sha256
    assert small.bytes is not None and small.bytes < done.original.size  # never larger than the source
    assert small.ssim is not None and 0.8 < small.ssim <= 1
    assert by_profile["poster"].kbps is None or by_profile["poster"].kbps >= 0

    # A redelivered message finds the work done and changes nothing.
    before = {r.profile: (r.blob_sha256, r.updated_at) for r in done.renditions}
    limits = app.extensions["hub.media_limits"]
    assert pipeline.process_material(db, app.extensions["hub.storage"], material.id, limits) == []
    assert (
        pipeline.build_rendition(get_database(app), app.extensions["hub.storage"], small.id, limits, lease=60)
        == "ready"
    )
    db.expire_all()
    assert {r.profile: (r.blob_sha256, r.updated_at) for r in db.get(Material, material.id).renditions} == before


def test_a_live_claim_is_respected_and_a_dead_one_taken_over(
    app: Flask, db: Session, lesson_id: int, tmp_path: Path
) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    storage, limits = app.extensions["hub.storage"], app.extensions["hub.media_limits"]
    rendition_ids = pipeline.process_material(db, storage, material.id, limits)
    rendition = db.get(Rendition, rendition_ids[0])
    assert rendition is not None
    rendition.status = "processing"  # another worker is on it, and alive
    db.commit()
    assert pipeline.build_rendition(get_database(app), storage, rendition.id, limits, lease=60) == "busy"
    assert pipeline.requeue_stalled(db, lease=60) == 0

    rendition.updated_at = utcnow() - timedelta(seconds=120)  # that worker went silent: dead
    db.commit()
    sent_before = len(db.scalars(select(Outbox).where(Outbox.task == jobs.BUILD_RENDITION)).all())
    assert pipeline.requeue_stalled(db, lease=60) == 1
    assert len(db.scalars(select(Outbox).where(Outbox.task == jobs.BUILD_RENDITION)).all()) == sent_before + 1
    assert pipeline.build_rendition(get_database(app), storage, rendition.id, limits, lease=60) == "ready"


def test_the_lease_is_kept_while_the_ssim_is_measured(
    app: Flask, db: Session, lesson_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    storage, limits = app.extensions["hub.storage"], app.extensions["hub.media_limits"]
    rendition_ids = pipeline.process_material(db, storage, material.id, limits)
    video = next(r for r in db.get(Material, material.id).renditions if r.profile == "video-240p")
    assert video.id in rendition_ids
    measure = pipeline.ffmpeg.ssim
    during: list[int] = []

    def slow_ssim(*args: Any, **kwargs: Any) -> float:
        # As if the transcode had ended long ago and the SSIM of a long lesson were still running.
        with get_database(app).session() as session:
            session.get(Rendition, video.id).updated_at = utcnow() - timedelta(seconds=600)
            session.commit()
        score = measure(*args, **kwargs)
        with get_database(app).session() as session:
            during.append(pipeline.requeue_stalled(session, lease=60))
        return score

    monkeypatch.setattr(pipeline.ffmpeg, "ssim", slow_ssim)
    assert pipeline.build_rendition(get_database(app), storage, video.id, limits, lease=60) == "ready"
    assert during == [0]  # the measuring worker still held it: nobody else was sent to redo it


def test_bad_input_fails_with_a_reason(app: Flask, db: Session, lesson_id: int) -> None:
    bad = _material(app, db, lesson_id, b"hello, this is a text file\n" * 50, "lesson.mp4")
    done = _run(app, db, bad.id)
    assert done.status == "failed"
    assert "not a video, audio, image or PDF" in done.error
    assert done.renditions == []


def test_reprocess_profile_redoes_only_that_profile(app: Flask, db: Session, lesson_id: int, tmp_path: Path) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    done = _run(app, db, material.id)
    poster = next(r for r in done.renditions if r.profile == "poster")
    queued = pipeline.reprocess_profile(db, "poster")
    assert queued == [poster.id]
    db.expire_all()
    assert db.get(Rendition, poster.id).status == "pending"
    assert db.get(Material, material.id).status == "processing"
    assert (
        pipeline.build_rendition(
            get_database(app), app.extensions["hub.storage"], poster.id, app.extensions["hub.media_limits"], lease=60
        )
        == "ready"
    )
    db.expire_all()
    again = db.get(Rendition, poster.id)
    assert again.blob_sha256 == poster.blob_sha256  # same input, same bytes: nothing new stored
    assert db.get(Material, material.id).status == "ready"
    with pytest.raises(ValueError, match="unknown profile"):
        pipeline.reprocess_profile(db, "video-8k")


def test_lesson_page_plays_and_prices_renditions(app: Flask, db: Session, lesson_id: int, tmp_path: Path) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    done = _run(app, db, material.id)
    course = done.lesson.course
    catalog.publish_course(db, db.scalars(select(catalog.User)).first(), course.id)
    db.commit()
    page = app.test_client().get(f"/lessons/{lesson_id}")
    assert page.status_code == 200
    html = page.text
    small = next(r for r in done.renditions if r.profile == "video-240p")
    assert f'<source src="/api/v1/blobs/{small.blob_sha256}?m={material.id}&amp;use=play"' in html
    assert "poster=" in html
    # The player works without JavaScript; the scripts only add (stream.js: seeking through
    # Media Source Extensions; player.js: speed, seeking in place), both deferred, no inline one.
    # (The JSON-LD block is data for harvesters, not a script.)
    scripts = re.findall(r"<script(?! type=\"application/ld\+json\")[^>]*>", html)
    assert scripts == [
        re.search(rf'<script src="/static/{name}\.js\?v=\w+" defer>', html)[0] for name in ("stream", "player")
    ]
    assert "256 kbit/s" in html and " 秒</td>" in html  # a few seconds' download for a 3 s clip


def test_progress_shows_in_the_api_and_on_the_lesson_page(
    app: Flask, db: Session, lesson_id: int, make: Accounts, tmp_path: Path
) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    user = db.scalars(select(catalog.User)).first()
    catalog.publish_course(db, user, material.lesson.course_id)
    db.commit()
    rendition_ids = pipeline.process_material(
        db, app.extensions["hub.storage"], material.id, app.extensions["hub.media_limits"]
    )
    db.get(Rendition, rendition_ids[0]).status = "processing"  # a worker has claimed it
    db.commit()
    # What that worker's progress callback writes as ffmpeg reports 40 % of the rendition.
    pipeline._Progress(get_database(app), rendition_ids[0])(40.0)

    client = app.test_client()
    shown = client.get(f"/api/v1/materials/{material.id}", headers=make.bearer(user)).get_json()
    assert shown["status"] == "processing"
    assert [r["progress"] for r in shown["renditions"] if r["status"] == "processing"] == [40]
    expected = 40 // len(rendition_ids)  # the material's progress: the mean over its renditions
    assert shown["progress"] == expected > 0
    page = client.get(f"/lessons/{lesson_id}").text
    assert f'<progress max="100" value="{expected}"' in page


def test_cli_reprocess_is_idempotent(
    app: Flask, db: Session, lesson_id: int, hub_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    material = _material(app, db, lesson_id, lesson_video(tmp_path / "v.mp4").read_bytes(), "lesson.mp4")
    done = _run(app, db, material.id)
    before = {r.profile: (r.id, r.blob_sha256, r.bytes) for r in done.renditions}
    storage = app.extensions["hub.storage"]
    stored_before = set(storage.iter_hashes())
    runner = CliRunner(env=hub_env)
    for _ in range(2):  # an operator running it twice, or before the first run was worked off
        result = runner.invoke(main, ["media", "reprocess", "--profile", "video-240p"])
        assert result.exit_code == 0, result.output
        assert "queued 1 video-240p renditions" in result.output
    db.expire_all()
    rendition_id = before["video-240p"][0]
    assert db.get(Rendition, rendition_id).status == "pending"
    assert db.get(Material, material.id).status == "processing"

    created: list[bool] = []
    store_file = storage.store_file

    def recording(path: Path) -> StoredBlob:
        blob = store_file(path)
        created.append(blob.created)
        return blob

    monkeypatch.setattr(storage, "store_file", recording)
    limits = app.extensions["hub.media_limits"]
    # Two messages: the first redoes the rendition, the second finds it done.
    assert [pipeline.build_rendition(get_database(app), storage, rendition_id, limits, lease=60) for _ in range(2)] == [
        "ready",
        "ready",
    ]
    assert created == [False]  # the same input gives the same bytes: nothing is written again
    db.expire_all()
    again = db.get(Material, material.id)
    assert again.status == "ready"
    assert {r.profile: (r.id, r.blob_sha256, r.bytes) for r in again.renditions} == before
    assert set(storage.iter_hashes()) == stored_before

    unknown = runner.invoke(main, ["media", "reprocess", "--profile", "video-8k"])
    assert unknown.exit_code != 0 and "unknown profile" in unknown.output


def test_an_uploaded_program_reads_nothing_of_the_hub(app: Flask, db: Session, lesson_id: int) -> None:
    """PostScript passed off as a PDF once printed other schools' drafts and the secret into its rendition."""
    settings = app.extensions["hub.settings"]
    secret = (settings.data_dir / "secret_key").read_text().strip()
    program = (
        b"%!PS\n%PDF-1.7\n/Helvetica findfont 10 scalefont setfont 20 700 moveto\n"
        + f"({settings.data_dir}/secret_key) (r) file 200 string readstring pop show\n".encode()
        + b"(/tmp/*) { 20 680 moveto show } 1024 string filenameforall showpage\n"
    )
    material = _material(app, db, lesson_id, program, "讲义.pdf")
    done = _run(app, db, material.id)
    assert done.status == "failed" and "not a video, audio, image or PDF" in done.error
    assert not [r for r in done.renditions if r.status == "ready"]
    storage = app.extensions["hub.storage"]
    for blob in db.scalars(select(Blob)):
        assert secret.encode() not in b"".join(storage.open_range(blob.sha256, 0, blob.size - 1))
