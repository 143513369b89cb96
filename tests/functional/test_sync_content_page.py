"""The school server's content page, over HTTP, with two hubs on loopback.

The upstream is a `hub serve` process on this test's data directory; the school
server is another `hub serve` process with its own data directory, in mirror
mode, reaching the upstream through a small proxy that can hold blob downloads
back (so a pull stays "running" until the test lets it go). Everything the admin
does goes through the page's forms, with its CSRF token, as a browser sends them.
"""

from __future__ import annotations

import html
import http.client
import io
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import cli as hub_cli
from hub import create_app
from hub.accounts import services as accounts
from hub.catalog import services as catalog
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import get_database
from hub.media.models import Blob, Rendition
from hub.sync.models import MirrorCourse, Subscription, SyncRun
from tests.conftest import COURSE, STORAGE, Accounts, hub_settings
from tests.functional.conftest import LiveServer, wait_until
from tests.support.browser import CHROMIUM, chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(STORAGE == "s3", reason="the gate holds blob downloads; S3 would redirect them past it"),
]

FAMOUS = "海淀实验小学"
OTHER = "朝阳实验小学"
RURAL = "山村小学"
VIDEO = 300_000
POSTER = 6_000
BUDGET = 800_000  # the first course (2 lessons, 612,000 bytes) fits; with it subscribed the second does not
PASSWORD = "a long password 42"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


# -- a proxy that can hold blob downloads ---------------------------------------------


@dataclass
class Gate:
    upstream_port: int
    port: int = 0
    open: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _gate_handler(gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.path.startswith("/api/v1/blobs/") or self.path == "/api/v1/sync/blobs":
                gate.open.wait(120)
            conn = http.client.HTTPConnection("127.0.0.1", gate.upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()  # as sent: still gzipped when it was
            conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "keep-alive", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _forward

    return Handler


@pytest.fixture
def gate(live_server: LiveServer) -> Iterator[Gate]:
    gate = Gate(live_server.port)
    gate.open.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _gate_handler(gate))
    server.daemon_threads = True
    gate.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield gate
    gate.open.set()
    server.shutdown()
    server.server_close()


# -- the two hubs ---------------------------------------------------------------------


@dataclass
class Hubs:
    upstream: Flask
    db: Session
    courses: dict[str, int]  # title → upstream id
    sizes: dict[str, int]  # title → bytes a pull fetches for it
    school: LiveServer
    school_env: dict[str, str]
    famous_id: int

    def session(self) -> Session:
        app = create_app(hub_settings(self.school_env))
        self._apps.append(app)
        return get_database(app).sessionmaker()

    _apps: list[Flask] = field(default_factory=list)


def _add_course(db: Session, app: Flask, uploader: Any, title: str, subject: str, lessons: int) -> tuple[int, int]:
    storage = app.extensions["hub.storage"]
    course = catalog.create_course(db, uploader, CourseCreate(**{**COURSE, "title": title, "subject": subject}))
    size = 0
    for n in range(lessons):
        lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title=f"{title} {n + 1}"))
        material = catalog.add_material(
            db, storage, uploader, lesson.id, io.BytesIO(os.urandom(20_000)), filename=f"{n}.mp4", title=title
        )
        for profile, length in (("video-360p", VIDEO), ("video-240p", VIDEO // 3), ("poster", POSTER)):
            stored = storage.store(io.BytesIO(os.urandom(length)))
            db.add(Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4"))
            db.add(Rendition(material=material, profile=profile, status="ready", blob_sha256=stored.sha256))
        size += VIDEO + POSTER  # one video profile (360p) and the poster: the 240p one is never mirrored
        db.commit()
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    return course.id, size


def _hub(env: dict[str, str], *args: str) -> str:
    result = CliRunner(env=env).invoke(hub_cli.main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


@pytest.fixture
def hubs(
    app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], gate: Gate, tmp_path: Path
) -> Iterator[Hubs]:
    famous, other = make.school(FAMOUS, "famous"), make.school(OTHER, "famous")
    rural = make.school(RURAL, "rural")
    accounts.pair_schools(db, famous, rural)
    db.commit()
    courses, sizes = {}, {}
    uploaders = {FAMOUS: make.user("up@famous.example", famous), OTHER: make.user("up@other.example", other)}
    for school, title, subject, lessons in (
        (FAMOUS, "一元二次方程", "math", 2),
        (FAMOUS, "二次函数", "math", 1),
        (OTHER, "英语阅读", "english", 1),
    ):
        courses[title], sizes[title] = _add_course(db, app, uploaders[school], title, subject, lessons)
    server_user = make.user("server@shancun.example", rural, "teacher")
    public_key = _hub(hub_env, "keys", "generate")
    token = make.token(server_user, "sync")

    data = tmp_path / "school"
    data.mkdir()
    school_env = {
        "HUB_DATA_DIR": str(data),
        "HUB_DATABASE_URL": f"sqlite:///{data / 'hub.db'}",
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_UPSTREAM_URL": gate.url,
        "HUB_UPSTREAM_PUBLIC_KEY": public_key,
        "HUB_UPSTREAM_TOKEN": token,
        "HUB_SYNC_DISK_RESERVE": "0",
        "HUB_SYNC_STORAGE_BUDGET": str(BUDGET),
    }
    _hub(school_env, "db", "upgrade")
    _hub(school_env, "school", "create", RURAL, "--kind", "rural")
    for email, role in (("admin@shancun.example", "admin"), ("t@shancun.example", "teacher")):
        _hub(school_env, "user", "create", email, "--school", RURAL, "--role", role, "--password", PASSWORD)
    logs = tmp_path / "school-logs"
    logs.mkdir()
    school = LiveServer(school_env, logs)
    hubs = Hubs(app, db, courses, sizes, school, school_env, famous.id)
    yield hubs
    school.process.stop()
    for mirror in hubs._apps:
        get_database(mirror).engine.dispose()


def _signed_in(server: LiveServer, email: str, language: str = "zh") -> requests.Session:
    browser = requests.Session()
    browser.headers["Accept-Language"] = language
    page = browser.get(f"{server.url}/login").text
    sent = browser.post(
        f"{server.url}/login",
        data={"email": email, "password": PASSWORD, "csrf_token": _csrf(page)},
        allow_redirects=False,
    )
    assert sent.status_code == 302, sent.text
    return browser


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _course_item(page: str, course_id: int) -> str:
    match = re.search(rf'<li class="course" data-course="{course_id}">(.*?)</li>', page, re.S)
    assert match, f"course {course_id} is not listed"
    return _text(match.group(1))


def _section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}".*?</section>', page, re.S)
    assert match, f"no section {name}"
    return _text(match.group(0))


def _post(browser: requests.Session, url: str, **form: Any) -> requests.Response:
    page = browser.get(url.split("/admin/sync/")[0] + "/admin/sync/").text
    return browser.post(url, data={"csrf_token": _csrf(page), **form}, allow_redirects=False)


def _mirrored(hubs: Hubs) -> list[int]:
    with hubs.session() as session:
        return sorted(session.scalars(select(MirrorCourse.upstream_id)))


def test_an_admin_chooses_content_pulls_now_and_watches_it_arrive(hubs: Hubs, gate: Gate) -> None:
    page_url = f"{hubs.school.url}/admin/sync/"
    first, second, english = (hubs.courses[t] for t in ("一元二次方程", "二次函数", "英语阅读"))

    # Anonymous readers sign in first; a teacher of the school is refused.
    assert requests.get(page_url, allow_redirects=False, timeout=30).status_code == 302
    teacher = _signed_in(hubs.school, "t@shancun.example")
    assert teacher.get(page_url).status_code == 403
    assert _post(teacher, f"{page_url}pull").status_code == 403

    admin = _signed_in(hubs.school, "admin@shancun.example")
    page = admin.get(page_url).text
    # The upstream's catalog by name, each course's size in the mirrored profile, against the disk.
    assert "一元二次方程" in page and "二次函数" in page and "英语阅读" in page
    assert _course_item(page, first).count("597.7 KB") == 1  # 2 × (300,000 + 6,000) bytes
    assert "放得下" in _course_item(page, first) and "放得下" in _course_item(page, second)
    storage = _section(page, "storage")
    assert "存储预算 781.2 KB" in storage and "磁盘空闲" in storage
    assert re.search(r"磁盘空闲 [\d,.]+ (KB|MB|GB)", storage), storage
    paired = _section(page, "paired")
    assert FAMOUS in paired and "共 2 门课程" in paired and OTHER not in paired
    assert "尚无订阅" in page

    # Subscribe to one course through the page: the upstream keeps it; the next pull mirrors it.
    answer = _post(admin, f"{page_url}subscriptions", course=str(first))
    assert answer.status_code == 303
    hubs.db.expire_all()
    assert [s.course_id for s in hubs.db.scalars(select(Subscription))] == [first]
    page = admin.get(urljoin(page_url, answer.headers["Location"])).text
    assert "已订阅，下次拉取时下载" in page
    assert "课程：一元二次方程" in _section(page, "subscriptions")
    assert "已订阅：下次拉取时下载" in _course_item(page, first)
    # With it on its way, 188,000 bytes are left: the second course (306,000) no longer fits.
    assert "放不下" in _course_item(page, second) and "183.6 KB" in _course_item(page, second)

    # Pull now: the request returns at once, the page shows the run going, then its result.
    # The gate holds the blobs back: a request that waited for the pull would only come back
    # after the run was over, and the page would never show it going.
    gate.open.clear()
    answer = _post(admin, f"{page_url}pull")
    assert answer.status_code == 303

    def shows_progress() -> bool:
        pull = _section(admin.get(page_url).text, "pull")
        return "正在拉取" in pull and "正在获取：一元二次方程" in pull and "0 / 4 个文件" in pull

    wait_until(shows_progress, 60, "the page to show the running pull")
    page = admin.get(page_url).text
    assert 'http-equiv="refresh"' in page
    assert _post(admin, f"{page_url}pull").status_code == 409  # one pull at a time
    gate.open.set()

    def finished() -> bool:
        return "正在拉取" not in _section(admin.get(page_url).text, "pull")

    wait_until(finished, 120, "the pull to finish")
    page = admin.get(page_url).text
    runs = _section(page, "runs")
    assert "完成" in runs and "已更新：一元二次方程" in runs and "从上级平台拉取" in runs
    assert " ok " not in f" {runs} " and "running" not in runs
    # The pull's own summary, stored as its message id and values, in the page's language.
    assert re.search(r"已与清单版本 \d+ 同步：应用 1 门课程，移除 0 门，0 门未变。", runs), runs
    assert "Up to date" not in runs
    with hubs.session() as session:
        run = session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert run is not None and run.status == "ok"
        local = run.started_at.replace(tzinfo=run.started_at.tzinfo or UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{local:%Y-%m-%d %H:%M}" in runs and "(Asia/Shanghai)" in page
    assert _mirrored(hubs) == [first]
    assert "已在本校服务器" in _course_item(page, first)
    assert "一元二次方程" in _section(page, "mirrored")

    # Unsubscribe it and subscribe to the second one: the next pull swaps them.
    page = admin.get(page_url).text
    subscription = re.search(r'action="/admin/sync/subscriptions/(\d+)/delete"', page)
    assert subscription
    assert _post(admin, f"{page_url}subscriptions/{subscription.group(1)}/delete").status_code == 303
    assert _post(admin, f"{page_url}subscriptions", course=str(second)).status_code == 303
    assert _post(admin, f"{page_url}pull").status_code == 303
    wait_until(lambda: _mirrored(hubs) == [second], 120, "the next pull to mirror the second course only")
    wait_until(finished, 60, "the second pull to finish")
    runs = _section(admin.get(page_url).text, "runs")
    assert "已更新：二次函数" in runs and "已移除：一元二次方程" in runs

    # The same page in English, statuses and all.
    english_page = admin.get(page_url, headers={"Accept-Language": "en"}, cookies={"hub_lang": "en"}).text
    runs = _section(english_page, "runs")
    assert "done" in runs and "Applied: 二次函数" in runs and "Removed: 一元二次方程" in runs
    assert re.search(r"Up to date with manifest version \d+: 1 courses applied, 1 removed, 0 unchanged\.", runs), runs
    assert "Fits" in _course_item(english_page, english) or "Does not fit" in _course_item(english_page, english)


def test_the_page_says_when_the_upstream_cannot_be_reached_and_still_lists_what_is_here(
    hubs: Hubs, gate: Gate, tmp_path: Path
) -> None:
    admin = _signed_in(hubs.school, "admin@shancun.example")
    page_url = f"{hubs.school.url}/admin/sync/"
    page = admin.get(page_url).text
    # The paired school's two courses (918,000 bytes) are over the budget: the page says so.
    assert "放不下" in _section(page, "paired")
    assert _post(admin, f"{page_url}subscriptions", course=str(hubs.courses["二次函数"])).status_code == 303
    assert _post(admin, f"{page_url}pull").status_code == 303
    wait_until(lambda: _mirrored(hubs) == [hubs.courses["二次函数"]], 120, "the course subscribed to")
    hubs.school.process.stop()
    # The same school server, now with an upstream that does not answer (a closed port).
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        dead = f"http://127.0.0.1:{closed.server_address[1]}"
    logs = tmp_path / "offline-logs"
    logs.mkdir()
    offline = LiveServer({**hubs.school_env, "HUB_UPSTREAM_URL": dead}, logs)
    try:
        admin = _signed_in(offline, "admin@shancun.example")
        page = admin.get(f"{offline.url}/admin/sync/?refresh=1").text
        assert "目前无法连接上级平台" in page
        assert "下面显示的是" in page  # the catalog kept from the last visit, with its time
        mirrored = _section(page, "mirrored")
        assert "二次函数" in mirrored and "一元二次方程" not in mirrored
        assert "立即拉取" in page
    finally:
        offline.process.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_page_fits_a_phone_in_both_languages(hubs: Hubs, gate: Gate) -> None:
    admin = _signed_in(hubs.school, "admin@shancun.example")
    page_url = f"{hubs.school.url}/admin/sync/"
    assert _post(admin, f"{page_url}subscriptions", course=str(hubs.courses["二次函数"])).status_code == 303
    assert _post(admin, f"{page_url}pull").status_code == 303
    wait_until(lambda: len(_mirrored(hubs)) == 1, 120, "the first pull")  # so the page has a run to show
    wait_until(lambda: 'id="pull-now"' in admin.get(page_url).text, 60, "the first pull's end")
    assert _post(admin, f"{page_url}subscriptions", course=str(hubs.courses["英语阅读"])).status_code == 303
    gate.open.clear()  # the second pull stays running while the pages are looked at
    assert _post(admin, f"{page_url}pull").status_code == 303
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        pages = {}
        for language in ("zh", "en"):
            context = browser.new_context(viewport={"width": 360, "height": 740}, locale=language)
            context.add_cookies([{"name": "hub_lang", "value": language, "url": hubs.school.url}])
            page = context.new_page()
            page.goto(f"{hubs.school.url}/login?next=/admin/sync/")
            page.fill("input[name=email]", "admin@shancun.example")
            page.fill("input[name=password]", PASSWORD)
            page.click("main button[type=submit]")
            page.wait_for_url("**/admin/sync/**")
            page.wait_for_selector("#pull progress")  # the running pull, with its progress
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
            page.screenshot(path=str(ARTIFACTS / f"sync-content-running-{language}.png"), full_page=True)
            pages[language] = page
        gate.open.set()
        for language, page in pages.items():
            page.wait_for_selector("#pull-now", timeout=120_000)  # the page reloads itself until the run ends
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
            for selector in ("#pull-now", "#storage", "#room-left", "#subscriptions li", "#courses li", "#runs li"):
                assert page.locator(selector).first.is_visible(), selector
            page.screenshot(path=str(ARTIFACTS / f"sync-content-{language}.png"), full_page=True)
