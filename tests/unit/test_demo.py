"""`hub demo`: a realistic, idempotent demo catalog, and a worker child that never outlives the demo."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import hub.demo
from hub.accounts import services as accounts
from hub.accounts.models import ApiToken, Pairing, School, User
from hub.catalog.models import Course, Lesson, Material
from hub.db import get_database
from hub.demo import ACCOUNTS, COURSES, DEMO_PASSWORD, MEDIA, SeedReport, run_demo, seed_demo
from hub.jobs import PROCESS_DOCUMENT, PROCESS_MATERIAL, Outbox
from hub.migrate import upgrade
from hub.sync.models import Change
from hub.vocab import LICENSES, SUBJECTS

MODELS = (School, Pairing, User, Course, Lesson, Material, Change, Outbox)


def _counts(db: Session) -> dict[str, int]:
    db.expire_all()
    return {m.__name__: db.scalar(select(func.count()).select_from(m)) or 0 for m in MODELS}


def _seed(app: Flask, db: Session, **kwargs: Any) -> SeedReport:
    with app.app_context():
        return seed_demo(db, app.extensions["hub.storage"], **kwargs)


@pytest.fixture
def migrated(app: Flask) -> Flask:
    # As run_demo does; on the fixture's already migrated database it is a no-op.
    upgrade(app.extensions["hub.settings"].database_url)
    return app


def test_seed_builds_a_realistic_catalog(migrated: Flask, db: Session) -> None:
    report = _seed(migrated, db, media=False)

    schools = db.scalars(select(School)).all()
    kinds = [s.kind for s in schools]
    assert len(schools) >= 6 and kinds.count("famous") >= 3 and kinds.count("rural") >= 3
    assert all(s.region and s.county for s in schools if s.kind == "rural")
    paired = set(db.scalars(select(Pairing.rural_school_id)))
    assert paired == {s.id for s in schools if s.kind == "rural"}

    courses = db.scalars(select(Course)).all()
    assert len(courses) >= 30
    assert len({c.subject for c in courses}) >= 10
    assert {c.subject for c in courses} == set(SUBJECTS)
    published = [c for c in courses if c.status == "published"]
    assert set().union(*(c.grades for c in published)) == set(range(1, 10))
    assert {c.language for c in published} == {"zh", "en"}
    assert sum(c.language == "zh" for c in courses) > 3 * sum(c.language == "en" for c in courses)
    statuses = [c.status for c in courses]
    assert statuses.count("draft") >= 2 and statuses.count("withdrawn") >= 1
    assert statuses.count("published") > len(courses) // 2
    assert {c.category for c in courses} == {"curriculum", "after-school", "teacher-training"}
    assert {c.license for c in courses} <= set(LICENSES)
    curriculum = [c for c in courses if c.category == "curriculum"]
    assert all(c.edition for c in curriculum)
    assert {c.volume for c in curriculum} >= {"上册", "下册"}
    assert all(not c.edition and not c.volume for c in courses if c.category != "curriculum")
    # Only the owning school's uploaders created courses, never the rural schools.
    assert {c.school.kind for c in courses} == {"famous"}

    for course in courses:
        assert 3 <= len(course.lessons) <= 8, course.title
        assert [lesson.position for lesson in course.lessons] == list(range(1, len(course.lessons) + 1))
    titles = {lesson.title for lesson in db.scalars(select(Lesson))}
    assert {"古诗三首", "分数的初步认识", "Photosynthesis", "Unit 3 My School"} <= titles
    assert db.scalar(select(func.count()).select_from(Lesson).where(Lesson.unit.like("第%单元%"))) >= 10
    # Published courses went through publish_course: they are in the change feed.
    assert db.scalar(select(func.count(func.distinct(Change.course_id)))) == len(published) + 1

    assert report.schools_created == len(schools) and report.schools_existing == 0
    assert report.courses_created == len(courses) == len(COURSES)
    assert report.lessons_created == db.scalar(select(func.count()).select_from(Lesson))
    assert report.media_note and report.materials_created == 0
    assert db.scalar(select(func.count()).select_from(Material)) == 0


def test_every_demo_account_signs_in_with_the_printed_password(migrated: Flask, db: Session) -> None:
    report = _seed(migrated, db, media=False)
    assert [a.email for a in report.accounts] == [a.email for a in ACCOUNTS]
    roles = {}
    for account in report.accounts:
        user = accounts.authenticate_password(db, account.email, DEMO_PASSWORD)
        roles[user.email] = (user.role, user.school.kind)
    assert ("admin", "famous") in roles.values()
    assert sum(r == ("uploader", "famous") for r in roles.values()) == 3
    assert sum(r == ("teacher", "rural") for r in roles.values()) >= 3


def test_seeding_twice_creates_nothing(migrated: Flask, db: Session) -> None:
    first = _seed(migrated, db, media=False)
    after_first = _counts(db)
    second = _seed(migrated, db, media=False)

    assert _counts(db) == after_first
    assert second.created == 0
    assert (second.schools_created, second.users_created, second.courses_created) == (0, 0, 0)
    assert second.schools == first.schools and second.courses == first.courses
    assert second.courses_existing == first.courses_created
    assert second.summary().endswith("(0 new)")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_seed_with_generated_media_queues_processing(migrated: Flask, db: Session) -> None:
    # add_material sniffs the upload's kind with hub.media.ffmpeg.
    pytest.importorskip("hub.media.ffmpeg", reason="hub.media.ffmpeg is not there yet")
    report = _seed(migrated, db)

    assert report.materials_created == len(MEDIA) <= 5
    assert report.media_note == ""
    materials = db.scalars(select(Material)).all()
    assert {m.kind for m in materials} == {"video", "image", "audio"}
    assert all(m.status == "pending" for m in materials)
    queued = db.scalars(select(Outbox).where(Outbox.task.in_((PROCESS_MATERIAL, PROCESS_DOCUMENT)))).all()
    assert sorted(row.args for row in queued) == sorted([m.id] for m in materials)
    video = next(m for m in materials if m.kind == "video")
    assert video.original.media_type == "video/mp4" and video.original.size > 10_000
    # The demo video has subtitles in both languages, so `make demo` shows them and search finds their words.
    assert sorted((s.language, s.cues) for s in video.subtitles) == [("en", 3), ("zh", 3)]
    assert "完全平方" in next(s.transcript for s in video.subtitles if s.language == "zh")

    before = _counts(db)
    again = _seed(migrated, db)
    assert (again.materials_created, again.materials_existing) == (0, len(MEDIA))
    assert _counts(db) == before


def test_missing_ffmpeg_skips_media_and_says_so(migrated: Flask, db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.demo.shutil, "which", lambda _name: None)
    report = _seed(migrated, db)
    assert "ffmpeg" in report.media_note
    assert report.materials_created == 0 and report.courses_created == len(COURSES)


def test_worker_child_gets_this_instances_settings(app: Flask) -> None:
    settings = app.extensions["hub.settings"]
    env = hub.demo._child_env(settings)
    assert env["HUB_DATA_DIR"] == str(settings.data_dir)
    assert env["HUB_DATABASE_URL"] == settings.database_url
    assert env["HUB_BROKER_URL"] == settings.broker_url
    assert "HUB_SECRET_KEY" not in env or env["HUB_SECRET_KEY"] == os.environ.get("HUB_SECRET_KEY")


# --- run_demo: the worker is a child that dies with the demo -------------------------------


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    if Path("/proc/self").exists():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """A stand-in for the Celery worker that, like Celery's prefork pool, has a child of its own."""
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    monkeypatch.setattr(hub.demo, "worker_command", lambda: [sys.executable, "-c", script])
    monkeypatch.setattr(hub.demo, "MEDIA", ())  # no ffmpeg work in these tests
    started: list[hub.demo._Worker] = []

    class Recorded(hub.demo._Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(hub.demo, "_Worker", Recorded)
    return {"started": started, "pid_file": pid_file}


def _grandchild(pid_file: Path) -> int:
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the fake worker never started its child"
        time.sleep(0.05)
    return int(pid_file.read_text())


def test_run_demo_serves_then_stops_the_worker(
    migrated: Flask,
    fake_worker: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: dict[str, int] = {}

    def serve(app: Flask, host: str, port: int) -> None:
        worker = fake_worker["started"][0]
        seen["pid"] = worker.pid
        seen["grandchild"] = _grandchild(fake_worker["pid_file"])
        assert _alive(seen["pid"]) and _alive(seen["grandchild"])
        assert (host, port) == ("127.0.0.1", 8765)

    monkeypatch.setattr(hub.demo, "_serve", serve)
    previous = signal.getsignal(signal.SIGTERM)
    run_demo(migrated, "127.0.0.1", 8765)

    assert _wait_gone(seen["pid"]) and _wait_gone(seen["grandchild"])
    assert signal.getsignal(signal.SIGTERM) == previous
    out = capsys.readouterr().out
    assert "migrating…" in out
    assert f"worker started (pid {seen['pid']})" in out
    assert "open http://127.0.0.1:8765/" in out
    assert DEMO_PASSWORD in out and all(a.email in out for a in ACCOUNTS)
    token = next(line.strip() for line in out.splitlines() if line.strip().startswith("hub_"))
    with get_database(migrated).session() as session:
        assert accounts.authenticate_token(session, token).email == ACCOUNTS[0].email
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 1


def test_sigterm_stops_the_demo_and_its_worker(
    migrated: Flask, fake_worker: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, int] = {}

    def serve(app: Flask, host: str, port: int) -> None:
        seen["pid"] = fake_worker["started"][0].pid
        seen["grandchild"] = _grandchild(fake_worker["pid_file"])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the handler
        raise AssertionError("SIGTERM did not stop the server")

    monkeypatch.setattr(hub.demo, "_serve", serve)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        run_demo(migrated, "127.0.0.1", 8765)

    assert stopped.value.code == 128 + signal.SIGTERM
    assert _wait_gone(seen["pid"]) and _wait_gone(seen["grandchild"])
    assert signal.getsignal(signal.SIGTERM) == previous


def test_second_demo_start_reports_nothing_new(
    migrated: Flask,
    fake_worker: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(hub.demo, "_serve", lambda app, host, port: None)
    run_demo(migrated, "127.0.0.1", 8000)
    run_demo(migrated, "127.0.0.1", 8000)
    out = capsys.readouterr().out
    seeded = [line for line in out.splitlines() if line.startswith("seeding…")]
    assert seeded[0].endswith(f"{len(COURSES)} courses ({len(COURSES)} new)")
    assert seeded[1].endswith(f"{len(COURSES)} courses (0 new)")
