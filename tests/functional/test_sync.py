"""Two hubs in one test: an upstream served over HTTP on loopback, and a school server mirroring it.

Each hub has its own HUB_DATA_DIR, database and storage. The school server
reaches the upstream through a small HTTP proxy in this file, which counts the
bytes it passes on and can cut a blob download short, or serve a different
manifest or different blob bytes (what an attacker on the link could do).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import cli as hub_cli
from hub import create_app
from hub.accounts import services as accounts
from hub.catalog import services as catalog
from hub.catalog.models import Course, Lesson, Material
from hub.catalog.schemas import CourseCreate, CourseUpdate, LessonCreate
from hub.db import get_database, utcnow
from hub.jobs import INDEX_COURSE, Outbox
from hub.media.downloads import record_download
from hub.media.models import Blob, DownloadCount, Rendition
from hub.media.storage import Storage
from hub.sync import bundles, services
from hub.sync import manifest as mf
from hub.sync.client import PullOptions, Window, pull
from hub.sync.models import MirrorCourse, MirrorState, SyncRun
from tests.conftest import COURSE, STORAGE, Accounts
from tests.functional.conftest import HUB, LiveServer, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(STORAGE == "s3", reason="the proxy counts bytes; S3 would redirect blob downloads past it"),
]

FAMOUS = "海淀实验小学"
RURAL = "山村小学"
VIDEO = 300_000  # over the client's small-blob size: fetched alone, resumable
POSTER = 6_000  # small: fetched in a batch


# -- a proxy that counts, cuts and tampers -------------------------------------------


@dataclass
class Proxy:
    upstream_port: int
    port: int = 0  # set once the proxy is listening
    blob_body_bytes: int = 0  # bytes of blob bodies passed to the school server
    total_bytes: int = 0  # every response byte passed on, headers included
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range)
    cut_blob_after: int | None = None  # the next GET of a blob is cut after this many body bytes
    manifest_override: bytes | None = None
    entries_tamper: Callable[[bytes], bytes] | None = None  # rewrites the course entries on the way
    before_entries: Callable[[bytes], None] | None = None  # sees each request for course entries
    blob_override: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset_counts(self) -> None:
        with self.lock:
            self.blob_body_bytes = self.total_bytes = 0
            self.requests.clear()

    def count(self, n: int, blob: bool) -> None:
        with self.lock:
            self.total_bytes += n
            if blob:
                self.blob_body_bytes += n


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _tamper_entries(self, body: bytes | None, tamper: Callable[[bytes], bytes]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
            skip = ("host", "connection", "accept-encoding")  # plain text, to rewrite
            conn.request(
                "POST", self.path, body=body, headers={k: v for k, v in self.headers.items() if k.lower() not in skip}
            )
            response = conn.getresponse()
            data = tamper(response.read())
            conn.close()
            return self._send(response.status, {"Content-Type": "application/x-ndjson"}, data, False)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            # Without the query: the client asks for what it reads (?with=subtitles) on both sync endpoints.
            path = self.path.split("?", 1)[0]
            with proxy.lock:
                proxy.requests.append((self.command, path, self.headers.get("Range", "")))
            is_blob = path.startswith("/api/v1/blobs/") or path == "/api/v1/sync/blobs"
            if self.command == "GET" and path == "/api/v1/sync/manifest" and proxy.manifest_override is not None:
                return self._send(200, {"Content-Type": "application/json"}, proxy.manifest_override, False)
            if path == "/api/v1/sync/courses" and proxy.before_entries is not None:
                proxy.before_entries(body or b"")
            if path == "/api/v1/sync/courses" and proxy.entries_tamper is not None:
                return self._tamper_entries(body, proxy.entries_tamper)
            sha = self.path.rsplit("/", 1)[-1]
            if self.path.startswith("/api/v1/blobs/") and sha in proxy.blob_override:
                data = proxy.blob_override[sha]
                return self._send(200, {"Content-Type": "application/octet-stream", "ETag": f'"{sha}"'}, data, True)
            conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            cut = None
            if self.command == "GET" and self.path.startswith("/api/v1/blobs/") and proxy.cut_blob_after is not None:
                cut, proxy.cut_blob_after = proxy.cut_blob_after, None
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                    self.send_header(key, value)
            self.end_headers()
            proxy.count(200, False)  # about what a status line and headers cost
            sent = 0
            while chunk := response.read(16384):
                if cut is not None and sent + len(chunk) > cut:
                    chunk = chunk[: cut - sent]
                    self.wfile.write(chunk)
                    proxy.count(len(chunk), is_blob)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the link drops mid-blob
                    conn.close()
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                proxy.count(len(chunk), is_blob)
            conn.close()

        def _send(self, status: int, headers: dict[str, str], data: bytes, is_blob: bool) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            proxy.count(len(data) + 200, is_blob)

    return Handler


@pytest.fixture
def proxy(live_server: LiveServer) -> Iterator[Proxy]:
    proxy = Proxy(upstream_port=live_server.port)
    # Port 0: the kernel picks a free port as it binds, so no other process can take it first.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.port = server.server_address[1]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield proxy
    server.shutdown()
    server.server_close()


# -- the upstream's catalog ----------------------------------------------------------


@dataclass
class Upstream:
    app: Flask
    db: Session
    storage: Storage
    public_key: str
    token: str
    course_id: int
    lesson_ids: list[int]
    video: dict[int, str]  # lesson id → sha256 of its mirrored video rendition

    def set_rendition(self, material: Material, profile: str, data: bytes) -> str:
        stored = self.storage.store(io.BytesIO(data))
        if self.db.get(Blob, stored.sha256) is None:
            self.db.add(Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4"))
        existing = next((r for r in material.renditions if r.profile == profile), None)
        if existing is None:
            self.db.add(Rendition(material=material, profile=profile, status="ready", blob_sha256=stored.sha256))
        else:
            existing.blob_sha256, existing.status = stored.sha256, "ready"
        self.db.commit()
        return stored.sha256

    def material(self, lesson_id: int) -> Material:
        self.db.expire_all()
        return self.db.scalars(select(Material).where(Material.lesson_id == lesson_id)).one()

    def retitle(self, title: str) -> None:
        uploader = accounts.get_user_by_email(self.db, "up@famous.example")
        catalog.update_course(self.db, uploader, self.course_id, CourseUpdate(title=title))
        self.db.commit()


def run_hub(env: dict[str, str], *args: str) -> Result:
    """A `hub` command in this process (start-up is seconds per process on a busy machine)."""
    return CliRunner(env=env).invoke(hub_cli.main, list(args))


def _keys_generate(env: dict[str, str]) -> str:
    done = run_hub(env, "keys", "generate")
    assert done.exit_code == 0, done.output
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def upstream(app: Flask, db: Session, make: Accounts, hub_env: dict[str, str]) -> Upstream:
    famous = make.school(FAMOUS, "famous")
    rural = make.school(RURAL, "rural")
    accounts.pair_schools(db, famous, rural)
    uploader = make.user("up@famous.example", famous, "uploader")
    server_user = make.user("server@rural.example", rural, "teacher")
    storage: Storage = app.extensions["hub.storage"]
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    lesson_ids, video = [], {}
    for position, title in enumerate(["配方法", "公式法"], start=1):
        lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title=title, unit="第二十一章"))
        material = catalog.add_material(
            db, storage, uploader, lesson.id, io.BytesIO(os.urandom(20_000)), filename=f"{position}.mp4", title=title
        )
        db.commit()
        lesson_ids.append(lesson.id)
        up = Upstream(app, db, storage, "", "", course.id, lesson_ids, video)
        video[lesson.id] = up.set_rendition(material, "video-360p", os.urandom(VIDEO))
        up.set_rendition(material, "video-240p", os.urandom(VIDEO // 3))  # never mirrored: one resolution only
        up.set_rendition(material, "poster", os.urandom(POSTER))
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    public_key = _keys_generate(hub_env)
    return Upstream(app, db, storage, public_key, make.token(server_user, "sync"), course.id, lesson_ids, video)


# -- the school server ----------------------------------------------------------------


@dataclass
class School:
    env: dict[str, str]
    app: Flask
    tmp: Path

    def session(self) -> Session:
        return get_database(self.app).sessionmaker()

    def hub(self, *args: str) -> Result:
        return run_hub(self.env, *args)

    def process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `hub` command as its own process, as cron would run it."""
        return subprocess.run(
            [*HUB, *args], env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120
        )

    def pull(self, **options: Any) -> Any:
        return pull(self.app, PullOptions(**options), out=io.StringIO())

    def courses(self) -> list[tuple[str, int, list[str]]]:
        """(title, version, sorted blob hashes of its renditions) of each mirrored course."""
        with self.session() as session:
            result = []
            for course in session.scalars(select(Course).order_by(Course.id)):
                shas = sorted(
                    r.blob_sha256 or ""
                    for lesson in course.lessons
                    for material in lesson.materials
                    for r in material.renditions
                )
                result.append((course.title, course.version, shas))
            return result

    def state(self) -> MirrorState | None:
        with self.session() as session:
            return session.get(MirrorState, 1)

    def last_run(self) -> SyncRun:
        with self.session() as session:
            run = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).one()
            session.expunge(run)
            return run


@pytest.fixture
def school(tmp_path: Path, sqlite_template: Path, upstream: Upstream, proxy: Proxy) -> Iterator[School]:
    data_dir = tmp_path / "school"
    data_dir.mkdir()
    # A school server runs the embedded defaults whatever the upstream uses.
    shutil.copy(sqlite_template, data_dir / "hub.db")
    env = {
        "HUB_DATA_DIR": str(data_dir),
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_UPSTREAM_URL": proxy.url,
        "HUB_UPSTREAM_PUBLIC_KEY": upstream.public_key,
        "HUB_UPSTREAM_TOKEN": upstream.token,
        "HUB_SYNC_DISK_RESERVE": "0",
    }
    app = create_app(env)
    yield School(env, app, tmp_path)
    get_database(app).engine.dispose()


def upstream_downloads(upstream: Upstream, sha: str) -> int:
    upstream.db.rollback()  # a fresh snapshot: the server counted in its own transaction
    rural = accounts.get_school_by_name(upstream.db, RURAL)
    return sum(
        row.count
        for row in upstream.db.scalars(
            select(DownloadCount).where(DownloadCount.blob_sha256 == sha, DownloadCount.school_id == rural.id)
        )
    )


def blob_bytes(storage: Storage, sha: str) -> bytes:
    return b"".join(storage.open_range(sha, 0, None))


# -- tests ------------------------------------------------------------------------------


def test_first_sync_then_an_edit_moves_only_the_changed_blob(upstream: Upstream, school: School, proxy: Proxy) -> None:
    subscribed = school.hub("sync", "subscribe", "--paired-with", FAMOUS)
    assert subscribed.exit_code == 0, subscribed.output
    assert "everything from 海淀实验小学" in subscribed.stdout

    first = school.process("sync", "pull", "--parallel", "2")
    assert first.returncode == 0, first.stderr
    assert "files," in first.stderr and "left" in first.stderr  # progress: bytes, files, rate, time left
    [(title, version, shas)] = school.courses()
    assert title == COURSE["title"]
    wanted = sorted(upstream.video.values())
    posters = sorted(
        sha for sha in upstream.db.scalars(select(Rendition.blob_sha256).where(Rendition.profile == "poster")) if sha
    )
    assert shas == sorted(wanted + posters)  # one video resolution per lesson, and its poster
    school_storage: Storage = school.app.extensions["hub.storage"]
    for sha in shas:
        assert hashlib.sha256(blob_bytes(school_storage, sha)).hexdigest() == sha
    assert proxy.blob_body_bytes <= 2 * VIDEO + 2 * POSTER + 1000
    with school.session() as session:
        course_id = session.scalar(select(MirrorCourse.course_id))
        queued = session.scalars(select(Outbox.args).where(Outbox.task == INDEX_COURSE)).all()
        assert [course_id] in queued  # the school's own search index is built from the mirrored catalog
        lessons = session.scalars(select(Lesson.title).order_by(Lesson.position)).all()
        assert lessons == ["配方法", "公式法"]
    run = school.last_run()
    assert (run.status, run.files_done, run.bytes_transferred) == ("ok", 4, 2 * VIDEO + 2 * POSTER)
    # Mirroring is not a teacher downloading: only the LAN's own counts, reported below, count.
    assert [upstream_downloads(upstream, sha) for sha in shas] == [0] * len(shas)

    # Teachers on the LAN download a poster three times; the next pull reports that upstream.
    for _ in range(3):
        record_download(get_database(school.app), posters[0], None)

    # An edit upstream: the course is retitled and one lesson's video is transcoded again.
    upstream.retitle("一元二次方程（修订）")
    new_video = os.urandom(VIDEO)
    old_sha = upstream.video[upstream.lesson_ids[0]]
    new_sha = upstream.set_rendition(upstream.material(upstream.lesson_ids[0]), "video-360p", new_video)
    proxy.reset_counts()
    report = school.pull()
    assert report.status == "ok", report.message
    assert report.bytes_transferred == len(new_video)
    assert proxy.blob_body_bytes == len(new_video)  # nothing else crossed the link as blob bytes
    [(title, version, shas)] = school.courses()
    assert title == "一元二次方程（修订）" and version == 2
    assert upstream_downloads(upstream, posters[0]) == 3  # aggregated: blob, day, school; never who
    assert new_sha in shas and old_sha not in shas
    assert not school_storage.exists(old_sha)  # the replaced rendition's bytes are reclaimed

    # Nothing changed: the same manifest version, nothing fetched.
    version_before = school.state().manifest_version  # type: ignore[union-attr]
    proxy.reset_counts()
    report = school.pull()
    assert (report.status, report.bytes_transferred, report.courses_applied) == ("ok", 0, 0)
    assert school.state().manifest_version == version_before  # type: ignore[union-attr]
    assert proxy.blob_body_bytes == 0
    # The manifest itself did not travel again: the upstream said 304 to the version held.
    assert ("GET", "/api/v1/sync/manifest", "") in proxy.requests
    assert proxy.total_bytes < 5_000
    assert upstream_downloads(upstream, posters[0]) == 3  # reported once, not again


def test_an_original_no_rendition_stands_in_for_is_mirrored_and_served_on_the_lan(
    upstream: Upstream, school: School
) -> None:
    uploader = accounts.get_user_by_email(upstream.db, "up@famous.example")
    lesson = catalog.create_lesson(upstream.db, uploader, upstream.course_id, LessonCreate(title="练习", unit="第一节"))
    handout = b"%PDF-1.4\n% a handout already smaller than any rendition of it\n" + os.urandom(3_000)
    material = catalog.add_material(
        upstream.db, upstream.storage, uploader, lesson.id, io.BytesIO(handout), filename="练习.pdf", title="练习"
    )
    clip = os.urandom(9_000)  # a short clip already below every video profile's bit rate
    video = catalog.add_material(
        upstream.db, upstream.storage, uploader, lesson.id, io.BytesIO(clip), filename="练习.mp4", title="示范"
    )
    # The pipeline found each compressed copy bigger than its original: skipped, and the materials ready.
    upstream.db.add(Rendition(material=material, profile="document", status="skipped"))
    for profile in ("video-360p", "video-240p"):
        upstream.db.add(Rendition(material=video, profile=profile, status="skipped"))
    material.status = video.status = "ready"
    upstream.db.commit()
    upstream.set_rendition(video, "poster", os.urandom(POSTER))
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0

    report = school.pull()
    assert report.status == "ok", report.message
    handout_sha = hashlib.sha256(handout).hexdigest()
    assert blob_bytes(school.app.extensions["hub.storage"], handout_sha) == handout
    assert blob_bytes(school.app.extensions["hub.storage"], hashlib.sha256(clip).hexdigest()) == clip

    client = school.app.test_client()
    with school.session() as session:
        lesson_ids: dict[str, int] = {title: lid for title, lid in session.execute(select(Lesson.title, Lesson.id))}
    handout_page = client.get(f"/lessons/{lesson_ids['练习']}").get_data(as_text=True)
    assert f'href="/api/v1/blobs/{handout_sha}?m=' in handout_page
    assert client.get(f"/api/v1/blobs/{handout_sha}").data == handout
    with school.session() as session:
        course_id = session.scalar(select(MirrorCourse.course_id))
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/courses/{course_id}/download?quality=smallest").data))
    carried = [archive.read(name) for name in archive.namelist()]
    assert handout in carried and clip in carried  # the course ZIP carries them too
    # A video's original stays upstream: linked there, not offered as a LAN download that would 404.
    original = upstream.material(upstream.lesson_ids[0]).original_sha256
    assert client.get(f"/api/v1/blobs/{original}").status_code == 404
    video_page = client.get(f"/lessons/{lesson_ids['配方法']}").get_data(as_text=True)
    upstream_link = f"{school.env['HUB_UPSTREAM_URL']}/api/v1/blobs/{original}"
    assert f'href="{upstream_link}"' in video_page
    assert f'href="/api/v1/blobs/{original}' not in video_page
    with urllib.request.urlopen(upstream_link, timeout=30) as answer:  # a teacher's browser: no token
        assert answer.read() == blob_bytes(upstream.storage, original)


def test_a_course_edited_during_a_pull_is_taken_at_its_new_version(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    uploader = accounts.get_user_by_email(upstream.db, "up@famous.example")
    other = catalog.create_course(upstream.db, uploader, CourseCreate(**{**COURSE, "title": "勾股定理"}))
    catalog.create_lesson(upstream.db, uploader, other.id, LessonCreate(title="勾股定理的证明"))
    catalog.publish_course(upstream.db, uploader, other.id)
    upstream.db.commit()
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0
    asked: list[list[int]] = []

    def edit_once(body: bytes) -> None:
        asked.append(json.loads(body)["courses"])
        if len(asked) > 1:
            return
        # A teacher upstream retitles a course after the school got the index, before its entry.
        with get_database(upstream.app).session() as session:  # this thread's own session
            editor = accounts.get_user_by_email(session, "up@famous.example")
            catalog.update_course(session, editor, upstream.course_id, CourseUpdate(title="一元二次方程（修订）"))
            session.commit()

    proxy.before_entries = edit_once
    report = school.pull()
    assert report.status == "ok", report.message
    assert [(title, version) for title, version, _shas in school.courses()] == [
        ("一元二次方程（修订）", 2),
        ("勾股定理", 1),
    ]
    manifests = [path for _method, path, _range in proxy.requests if path == "/api/v1/sync/manifest"]
    assert len(manifests) == 2  # the index signed before the edit, then the one after it
    assert sorted(asked[0]) == sorted([upstream.course_id, other.id])
    assert asked[1:] == [[upstream.course_id]]  # the other entry, still signed as it was, is kept
    assert school.state().manifest_version == report.manifest_version  # type: ignore[union-attr]


def test_limits_then_a_cut_connection_resumes_without_fetching_again(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    assert school.hub("sync", "subscribe", "--course", str(upstream.course_id)).exit_code == 0
    proxy.reset_counts()
    # Outside the time window: nothing is asked of the upstream at all.
    night = Window.parse("22:00-06:00")
    outside = pull(school.app, PullOptions(window=night), out=io.StringIO(), now=lambda: datetime(2026, 12, 1, 12))
    assert outside.status == "outside-window" and outside.ok
    assert proxy.requests == []
    # A storage budget too small for the course: skipped whole, said so, nothing fetched.
    budgeted = school.pull(storage_budget=VIDEO)
    assert budgeted.status == "partial" and budgeted.ok
    assert len(budgeted.skipped) == 1 and "more than the" in budgeted.skipped[0]
    assert school.courses() == [] and proxy.blob_body_bytes == 0

    proxy.cut_blob_after = VIDEO // 2
    report = school.pull(parallel=1)
    assert report.status == "ok", report.message
    resumed = [r for m, p, r in proxy.requests if p.startswith("/api/v1/blobs/") and r]
    assert len(resumed) == 1 and resumed[0].startswith("bytes=")
    offset = int(resumed[0].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= VIDEO // 2
    # Every byte crossed the link once: what arrived before the cut was kept, not fetched again.
    assert report.bytes_transferred == 2 * VIDEO + 2 * POSTER
    batch_headers = 2 * len(f"{'0' * 64} {POSTER}\n")  # the small posters came in one batch
    assert proxy.blob_body_bytes == 2 * VIDEO + 2 * POSTER + batch_headers + (VIDEO // 2 - offset)
    assert len(school.courses()) == 1


def test_killed_mid_sync_restarts_with_no_half_applied_course(upstream: Upstream, school: School) -> None:
    assert school.hub("sync", "subscribe", "--course", str(upstream.course_id)).exit_code == 0
    assert school.pull().status == "ok"
    before = school.courses()

    # A new version whose new video is large enough to be mid-transfer when the process dies.
    upstream.retitle("新版本")
    big = os.urandom(3_000_000)
    big_sha = upstream.set_rendition(upstream.material(upstream.lesson_ids[1]), "video-360p", big)
    log = (school.tmp / "pull.log").open("wb")
    child = subprocess.Popen(
        [*HUB, "sync", "pull", "--max-rate", "400k"],
        env={**os.environ, **school.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    partial = Path(school.env["HUB_DATA_DIR"]) / "sync" / "partial" / f"{big_sha}.part"
    try:
        wait_until(lambda: partial.exists() and partial.stat().st_size > 200_000, 60, "part of the big video")
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        log.close()
    assert school.courses() == before  # the old version, whole
    kept = partial.stat().st_size
    assert 0 < kept < len(big)

    report = school.pull()
    assert report.status == "ok", report.message
    [(title, _version, shas)] = school.courses()
    assert title == "新版本" and big_sha in shas
    assert report.bytes_transferred == len(big) - kept  # resumed from the partial file
    with school.session() as session:
        statuses = session.scalars(select(SyncRun.status).order_by(SyncRun.id)).all()
    assert statuses == ["ok", "failed", "ok"]  # the killed run is logged as failed, not left running


def _envelope_with(upstream: Upstream, **changes: Any) -> bytes:
    """A manifest signed with the upstream's own key, as issued, with `changes` to its payload."""
    key = mf.load_private_key(upstream.app.extensions["hub.settings"].sync_signing_key)
    school_row = accounts.get_school_by_name(upstream.db, RURAL)
    envelope = services.issue_manifest(upstream.db, school_row, private_key=key, lifetime=3600)
    payload = json.loads(envelope.split(b"\n", 1)[1])
    upstream.db.commit()
    payload.update(changes)
    return mf.sign(mf.canonical_json(payload), key)


def test_bad_manifests_and_bad_bytes_are_refused_keeping_the_old_state(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    assert school.hub("sync", "subscribe", "--course", str(upstream.course_id)).exit_code == 0
    assert school.pull().status == "ok"
    first_envelope = school.state().envelope.encode()  # type: ignore[union-attr]
    upstream.retitle("第二版")
    assert school.pull().status == "ok"
    good = school.courses()
    version = school.state().manifest_version  # type: ignore[union-attr]
    storage: Storage = school.app.extensions["hub.storage"]
    stored_before = sorted(storage.iter_hashes())

    def refused(expect: str) -> None:
        result = school.hub("sync", "pull")
        assert result.exit_code == 1
        assert expect in result.stderr, result.output
        assert school.courses() == good
        assert school.state().manifest_version == version  # type: ignore[union-attr]
        assert sorted(storage.iter_hashes()) == stored_before

    # Altered on the way: the signature no longer matches.
    header, payload = _envelope_with(upstream, version=version + 1).split(b"\n", 1)
    proxy.manifest_override = header + b"\n" + payload.replace(RURAL.encode(), "别的学校".encode())
    refused("signature does not match")
    # Unsigned: the bare payload.
    proxy.manifest_override = payload
    refused("not signed")
    # An older manifest, genuinely signed, replayed.
    proxy.manifest_override = first_envelope
    refused("replay")
    # Signed and newer, but expired.
    past = (utcnow() - timedelta(hours=1)).isoformat()
    proxy.manifest_override = _envelope_with(upstream, version=version + 5, expires_at=past)
    refused("expired")
    proxy.manifest_override = None

    # The signed index is genuine, the course entry it lists is altered on the way (first as a
    # patch, then whole): its sha256 is not the signed one, so the course stays as it was.
    upstream.retitle("第三版")
    proxy.entries_tamper = lambda data: data.replace("第三版".encode(), "第四版".encode())
    proxy.reset_counts()
    result = school.hub("sync", "pull")
    assert result.exit_code == 1 and "does not match the signed index" in result.stderr, result.output
    assert school.courses() == good
    assert [path for _method, path, _range in proxy.requests].count("/api/v1/sync/courses") == 2
    proxy.entries_tamper = None
    assert school.pull().status == "ok"
    assert school.courses()[0][0] == "第三版"
    good = school.courses()
    stored_before = sorted(storage.iter_hashes())

    # A new video whose bytes are swapped on the way: never stored, the course stays as it was.
    new_sha = upstream.set_rendition(upstream.material(upstream.lesson_ids[0]), "video-360p", os.urandom(VIDEO))
    proxy.blob_override[new_sha] = os.urandom(VIDEO)
    result = school.hub("sync", "pull")
    assert result.exit_code == 1 and "do not match their hash" in result.stderr, result.output
    assert school.courses() == good
    assert not storage.exists(new_sha)
    assert not any((Path(school.env["HUB_DATA_DIR"]) / "sync" / "partial").glob("*.part"))
    proxy.blob_override.clear()
    assert school.pull().status == "ok"
    assert new_sha in school.courses()[0][2]


def test_bundles_round_trip_through_a_directory_and_a_zip(
    upstream: Upstream, school: School, hub_env: dict[str, str], tmp_path: Path
) -> None:
    def upstream_hub(*args: str) -> Result:
        return run_hub(hub_env, *args)

    assert upstream_hub("sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS).exit_code == 0
    directory = tmp_path / "usb"
    exported = upstream_hub("bundle", "export", "--to", str(directory), "--school", RURAL)
    assert exported.exit_code == 0, exported.output
    assert (directory / "manifest.json").is_file()
    imported = school.hub("bundle", "import", str(directory))
    assert imported.exit_code == 0, imported.output
    [(title, _v, shas)] = school.courses()
    assert title == COURSE["title"] and len(shas) == 4

    # Incremental: the school says what it holds; the zip carries only the changed video.
    state = tmp_path / "state.json"
    assert school.hub("sync", "status", "--state-out", str(state)).exit_code == 0
    upstream.retitle("U盘版")
    new_sha = upstream.set_rendition(upstream.material(upstream.lesson_ids[1]), "video-360p", os.urandom(VIDEO))
    archive_path = tmp_path / "update.zip"
    exported = upstream_hub("bundle", "export", "--to", str(archive_path), "--school", RURAL, "--state", str(state))
    assert exported.exit_code == 0, exported.output
    with zipfile.ZipFile(archive_path) as zf:
        assert sorted(zf.namelist()) == sorted(["manifest.json", bundles.blob_name(new_sha)])
    # The same update with the video's bytes swapped: refused, nothing of it kept.
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(archive_path) as good, zipfile.ZipFile(forged, "w") as bad:
        bad.writestr("manifest.json", good.read("manifest.json"))
        bad.writestr(bundles.blob_name(new_sha), os.urandom(VIDEO))
    report = bundles.import_bundle(school.app, forged, out=io.StringIO())
    assert report.status == "failed" and "hashed to" in report.message, report.message
    assert school.courses()[0][0] == COURSE["title"]
    assert not school.app.extensions["hub.storage"].exists(new_sha)

    report = bundles.import_bundle(school.app, archive_path, out=io.StringIO())
    assert report.status == "ok", report.message
    [(title, _v, shas)] = school.courses()
    assert title == "U盘版" and new_sha in shas

    # A bundle with anything its manifest does not list is refused whole, and nothing lands outside.
    with zipfile.ZipFile(archive_path) as zf:
        manifest_bytes = zf.read("manifest.json")
    for extra in ("blobs/zz/not-listed", "../escape"):
        evil = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil, "w") as zf:
            zf.writestr("manifest.json", manifest_bytes)
            zf.writestr(extra, b"x")
        report = bundles.import_bundle(school.app, evil, out=io.StringIO())
        assert report.status == "refused", report.message
        assert not (tmp_path / "escape").exists()
    assert school.courses()[0][0] == "U盘版"
    with school.session() as session:
        assert session.scalar(select(func.count()).select_from(MirrorCourse)) == 1


SUBTITLE = "\r\n".join(
    [
        "1",
        "00:00:01,000 --> 00:00:02,500",
        "今天讲勾股定理的证明",
        "",
        "2",
        "00:00:03,000 --> 00:00:04,000",
        "hypotenuse",
    ]
)


def test_a_pulled_course_carries_its_subtitles_and_older_servers_see_entries_as_before(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    from hub.subtitles import services as subtitles
    from hub.subtitles.models import Subtitle

    material = upstream.material(upstream.lesson_ids[0])
    client = upstream.app.test_client()
    sync = {"Authorization": f"Bearer {upstream.token}"}
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0
    # What a school server of an earlier release gets (it never asks ?with=subtitles), before any track.
    before = client.post("/api/v1/sync/courses", json={"courses": [upstream.course_id]}, headers=sync).data

    uploader = accounts.get_user_by_email(upstream.db, "up@famous.example")
    track = subtitles.attach_subtitle(
        upstream.db, upstream.storage, uploader, material.id, SUBTITLE.encode("gbk"), language="zh"
    )
    upstream.db.commit()
    vtt = blob_bytes(upstream.storage, track.blob_sha256)

    report = school.pull()
    assert report.status == "ok", report.message
    school_storage: Storage = school.app.extensions["hub.storage"]
    assert blob_bytes(school_storage, track.blob_sha256) == vtt
    with school.session() as session:
        [(language, label, cues, transcript)] = session.execute(
            select(Subtitle.language, Subtitle.label, Subtitle.cues, Subtitle.transcript)
        ).all()
        lesson_id = session.scalar(select(Lesson.id).where(Lesson.title == "配方法"))
    assert (language, label, cues) == ("zh", "中文", 2) and "勾股定理" in transcript
    # The school's pages play it, and its own search finds the lesson by a spoken word, at its time.
    lan = school.app.test_client()
    page = lan.get(f"/lessons/{lesson_id}").text
    assert f'src="/api/v1/subtitles/{track.blob_sha256}.vtt" default>' in page
    served = lan.get(f"/api/v1/subtitles/{track.blob_sha256}.vtt")
    assert served.status_code == 200 and served.data == vtt and served.mimetype == "text/vtt"
    for word, time in (("勾股定理", 1), ("hypotenuse", 3)):
        hits = lan.get("/api/v1/search", query_string={"q": word}).json["hits"]
        assert [(h["id"], h["time"]) for h in hits] == [(lesson_id, time)]

    # An older school server: its entries are byte for byte what they were before the track.
    assert client.post("/api/v1/sync/courses", json={"courses": [upstream.course_id]}, headers=sync).data == before
    newer = client.post("/api/v1/sync/courses?with=subtitles", json={"courses": [upstream.course_id]}, headers=sync)
    assert b'"subtitles":[' in newer.data and b'"subtitles":[' not in before

    # The track removed upstream: gone from the school too, and its bytes reclaimed.
    subtitles.delete_subtitle(upstream.db, uploader, material.id, "zh")
    upstream.db.commit()
    assert school.pull().status == "ok"
    with school.session() as session:
        assert session.scalar(select(func.count()).select_from(Subtitle)) == 0
    assert not school_storage.exists(track.blob_sha256)
    assert "<track" not in lan.get(f"/lessons/{lesson_id}").text


def test_a_pulled_course_carries_its_chapters_and_older_servers_see_entries_as_before(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    material = upstream.material(upstream.lesson_ids[0])
    client = upstream.app.test_client()
    sync = {"Authorization": f"Bearer {upstream.token}"}
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0
    # What school servers of earlier releases get (no ?with=, or subtitles only), before any chapter.
    asks = ("", "?with=subtitles")
    before = {
        ask: client.post(f"/api/v1/sync/courses{ask}", json={"courses": [upstream.course_id]}, headers=sync).data
        for ask in asks
    }
    # The pipeline found three slides (hub.media.chapters); set here, as it would.
    material.chapters = [0.0, 8.0, 17.0]
    upstream.db.commit()

    assert school.pull().status == "ok"
    with school.session() as session:
        lesson_id = session.scalar(select(Lesson.id).where(Lesson.title == "配方法"))
        chapters = session.scalar(select(Material.chapters).where(Material.lesson_id == lesson_id))
    assert chapters == [0.0, 8.0, 17.0]
    lan = school.app.test_client()
    page = lan.get(f"/lessons/{lesson_id}", headers={"Accept-Language": "zh"}).text
    assert page.count('data-start="') == 3 and ">第 3 页</a>" in page

    for ask in asks:  # byte for byte what they were
        after = client.post(f"/api/v1/sync/courses{ask}", json={"courses": [upstream.course_id]}, headers=sync)
        assert after.data == before[ask] and b'"chapters"' not in after.data
    newer = client.post(
        "/api/v1/sync/courses?with=subtitles,chapters", json={"courses": [upstream.course_id]}, headers=sync
    )
    assert b'"chapters":[0.0,8.0,17.0]' in newer.data


def test_a_pulled_course_brings_its_textbook_and_chapters_and_older_servers_see_entries_as_before(
    upstream: Upstream, school: School, proxy: Proxy
) -> None:
    from hub.catalog.schemas import LessonUpdate
    from hub.textbooks import services as textbooks
    from hub.textbooks.models import Textbook, TextbookNode
    from tests.unit.textbooks.test_services import book

    client = upstream.app.test_client()
    sync = {"Authorization": f"Bearer {upstream.token}"}
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0
    asks = ("", "?with=subtitles,chapters")  # school servers of earlier releases
    before = {
        ask: client.post(f"/api/v1/sync/courses{ask}", json={"courses": [upstream.course_id]}, headers=sync).data
        for ask in asks
    }
    nine = textbooks.import_textbook(upstream.db, book())
    course = upstream.db.get(Course, upstream.course_id)
    assert course is not None
    admin = accounts.create_user(upstream.db, "admin@famous.example", course.school, "admin")
    catalog.update_course(upstream.db, admin, upstream.course_id, CourseUpdate(textbook=nine.id))
    node = next(n for n in nine.nodes if n.key == "21.2.1")
    catalog.update_lesson(upstream.db, admin, upstream.lesson_ids[0], LessonUpdate(node=node.id))
    upstream.db.commit()

    assert school.pull().status == "ok"
    with school.session() as session:
        here = session.scalar(select(Textbook).where(Textbook.key == "renjiao-math-9-1"))
        assert here is not None and [n.key for n in here.nodes] == [n.key for n in nine.nodes]
        assert session.scalar(select(Course.textbook_id)) == here.id
        aligned = session.execute(
            select(Lesson.title, TextbookNode.key).outerjoin(TextbookNode, TextbookNode.id == Lesson.textbook_node_id)
        ).all()
        assert sorted(tuple(row) for row in aligned) == [("公式法", None), ("配方法", "21.2.1")]
        lesson_id = session.scalar(select(Lesson.id).where(Lesson.title == "配方法"))
    page = school.app.test_client().get(f"/lessons/{lesson_id}", headers={"Accept-Language": "zh"}).text
    assert "21.2.1 配方法" in page  # the lesson page names its chapter on the school server too
    for ask in asks:  # what they were, but the new version: no key they would refuse
        after = client.post(f"/api/v1/sync/courses{ask}", json={"courses": [upstream.course_id]}, headers=sync).data
        assert b"textbook" not in after and b'"node"' not in after
        assert after.replace(b'"version":3', b'"version":1') == before[ask]
