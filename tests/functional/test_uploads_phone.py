"""An uploader on a phone (issue 16): a 360 px screen, a slow uplink, pause and resume, renditions.

One hub (waitress) and one worker (real ffmpeg) serve the module; the browser,
Debian's Chromium through Playwright, reaches the hub through a slow uplink on
loopback (tests/support/slow_link.py), which also keeps what each request sent,
so the tests can tell a byte sent once from a byte sent twice.

Screenshots of the upload pages at 360 px go to test-artifacts/ (gitignored) for a
person to look at.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from hub import create_app
from hub.db import get_database
from tests.conftest import COURSE, Accounts, hub_settings
from tests.functional.conftest import LiveServer, Worker, get_material, upload_material, wait_processed, wait_until
from tests.support.browser import CHROMIUM
from tests.support.media import ffmpeg, lesson_video
from tests.support.slow_link import SlowLink

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_csp_violations")]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 360, "height": 740}
EMAIL, PASSWORD = "up@haidian.cn", "a long password"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@dataclass
class Site:
    server: LiveServer
    link: SlowLink
    auth: dict[str, str]
    course_id: int
    lesson_id: int
    files: Path

    @property
    def url(self) -> str:
        return self.link.url

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.server.api(path), headers=self.auth, timeout=30, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def site(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    files = tmp_path_factory.mktemp("phone")
    app = create_app(hub_settings(module_env))
    try:
        with get_database(app).session() as db:
            make = Accounts(db)
            auth = make.bearer(make.user(EMAIL, make.school(), "uploader", password=PASSWORD))
    finally:
        get_database(app).engine.dispose()
    # Both start at once: each takes seconds to import the hub (and Celery).
    server = LiveServer(module_env, files, wait=False)
    worker = Worker(module_env, files / "worker.log", wait=False)
    link = SlowLink(("127.0.0.1", server.port))
    try:
        server.wait()
        worker.wait()
        course = requests.post(server.api("/courses"), json=COURSE, headers=auth, timeout=30).json()
        lesson = requests.post(
            server.api(f"/courses/{course['id']}/lessons"), json={"title": "配方法"}, headers=auth, timeout=30
        ).json()
        yield Site(server, link, auth, course["id"], lesson["id"], files)
    finally:
        link.close()
        worker.process.stop()
        server.process.stop()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A signed-in, phone-sized tab whose browser asks for Chinese."""
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    site.link.kbit_per_s = None
    try:
        yield tab
        assert not errors, errors
    finally:
        context.close()
        site.link.kbit_per_s = None


def _sign_in(page: Any, site: Site, next_path: str | None = None) -> None:
    page.goto(site.url + ("/login" if next_path is None else f"/login?next={next_path}"))
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than a 360px screen"


# -- sign-in and the header ---------------------------------------------------------------


def test_sign_in_from_the_header_lands_on_the_dashboard(page: Any, site: Site) -> None:
    page.goto(site.url + "/")
    page.click("header a[href^='/login']")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(site.url + "/upload/")
    assert page.locator("h1").count() == 1


def test_sign_in_still_follows_next(page: Any, site: Site) -> None:
    _sign_in(page, site, f"/upload/lessons/{site.lesson_id}")
    page.wait_for_url(f"{site.url}/upload/lessons/{site.lesson_id}")
    _sign_in(page, site, "/courses")
    page.wait_for_url(f"{site.url}/courses")


# Everything in the header is measured: one line means every item's box starts on the
# first line's band, and the header is no taller than one line of its tallest item.
_HEADER_LINES = """() => {
  const header = document.querySelector('header.top');
  const items = [...header.querySelectorAll('a, button, span')].filter(e => e.getClientRects().length);
  const boxes = items.map(e => e.getBoundingClientRect());
  const tallest = Math.max(...boxes.map(b => b.height));
  return {header: header.getBoundingClientRect().height, tallest,
          tops: boxes.map(b => Math.round(b.top)), right: Math.max(...boxes.map(b => b.right)),
          texts: items.map(e => e.textContent.trim())};
}"""


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_the_signed_in_header_is_one_line_at_360px(browser: Any, site: Site, locale: str) -> None:
    context = browser.new_context(viewport=PHONE, locale=locale, is_mobile=True)
    page = context.new_page()
    try:
        _sign_in(page, site)
        for path in ("/upload/", f"/upload/lessons/{site.lesson_id}", f"/upload/courses/{site.course_id}", "/"):
            page.goto(site.url + path)
            measured = page.evaluate(_HEADER_LINES)
            assert max(measured["tops"]) - min(measured["tops"]) < measured["tallest"] / 2, (path, measured)
            # One line: the header's height is one item's plus its padding (0.6rem each side).
            assert measured["header"] < measured["tallest"] + 2 * 0.6 * 16 + 4, (path, measured)
            # and all of it on the screen: sign-out and the language switch are not scrolled away.
            assert measured["right"] <= PHONE["width"], (path, measured)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        _shot(page, f"{locale[:2]}-upload-lesson-header")
    finally:
        context.close()


# -- the upload: a slow uplink, pause, resume ------------------------------------------------

# Every value the progress bar's transfer showed (data-sent), as the page set them.
_WATCH_SENT = """() => {
  window.sentSeen = [];
  new MutationObserver(() => {
    const item = document.querySelector('#transfers li');
    if (item && item.dataset.sent) { window.sentSeen.push(Number(item.dataset.sent)); }
  }).observe(document.getElementById('transfers'), {subtree: true, attributes: true, childList: true});
}"""


def _noisy_video(path: Path) -> Path:
    """About 3 MB of lossless test picture: 12 s at 2 Mbit/s, a short transcode."""
    return ffmpeg(
        path,
        *("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:d=8"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=8"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-c:a", "aac", "-shortest"),
    )


def test_pause_and_resume_over_a_slow_link_send_each_byte_once(page: Any, site: Site) -> None:
    video = _noisy_video(site.files / "一元二次方程 配方法 第一课时 课堂实录.mp4")
    size = video.stat().st_size
    assert size > 2_000_000, size
    _sign_in(page, site, f"/upload/lessons/{site.lesson_id}")
    page.evaluate(_WATCH_SENT)
    site.link.kbit_per_s = 2000  # 250 KB/s: the file takes about 12 s
    page.set_input_files("#upload-form input[type=file]", str(video))
    page.fill("#upload-form input[name=title]", "配方法课堂实录")
    page.click("#upload-form button[type=submit]")
    item = page.locator("#transfers li")

    # The progress box is on the screen, all of it, as soon as it starts.
    item.wait_for()
    box = item.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box

    # Speed and time left, in Chinese, once a few seconds have been measured.
    rate = item.locator(".rate")
    wait_until(lambda: bool(re.search(r"\d.* [KM]B/s · 还剩.*\d+ 秒", rate.inner_text())), 20, "speed and time left")
    _shot(page, "zh-upload-progress")

    wait_until(lambda: int(item.get_attribute("data-sent") or 0) > size * 0.3, 30, "a third of the file")
    item.locator("button.pause").click()
    state = item.locator(".state")
    wait_until(lambda: state.inner_text().startswith("已暂停"), 30, "the pause")
    assert item.locator("button.resume").is_visible()
    _shot(page, "zh-upload-paused")

    # Paused means paused: nothing goes out, and what the bar says is what the server has.
    patches = site.link.sent("PATCH")
    at_pause = sum(p.forwarded for p in patches)
    time.sleep(3)
    assert sum(p.forwarded for p in site.link.sent("PATCH")) == at_pause
    upload = requests.get(site.server.url + patches[-1].path, headers=site.auth, timeout=10).json()
    assert upload["offset"] == at_pause == int(item.get_attribute("data-sent") or 0), (upload, at_pause)
    assert at_pause < size

    item.locator("button.resume").click()
    wait_until(lambda: state.inner_text().startswith("已添加"), 60, "the upload to finish")
    site.link.kbit_per_s = None

    # Each byte crossed the link once: the pieces follow each other without a gap or an
    # overlap, none was cut off, and together they are the file.
    patches = site.link.sent("PATCH")
    assert all(p.forwarded == p.length for p in patches), patches
    offsets = [p.upload_offset for p in patches]
    assert offsets == [sum(p.length for p in patches[:i]) for i in range(len(patches))], patches
    assert sum(p.forwarded for p in patches) == size
    # Pieces follow the link: small at first and on this slow link, never one big request.
    assert len(patches) >= 4 and max(p.length for p in patches) < 2_000_000, [p.length for p in patches]
    seen = page.evaluate("window.sentSeen")
    assert seen == sorted(seen) and seen[-1] == size, "the bar went backwards"

    # The page follows the processing and, once it settles, shows what the worker made
    # (the server's rendering of the material, without a reload).
    made = page.locator("#materials li[data-material] tr[data-profile='video-360p'][data-status='ready'] .ssim")
    made.wait_for(timeout=600_000)
    assert 0.5 < float(made.inner_text()) <= 1
    assert page.locator("#materials li[data-material] .status").first.inner_text() == "可用"


def test_pause_when_the_link_collapses_stops_soon_and_resumes_from_the_servers_offset(page: Any, site: Site) -> None:
    lesson = site.api("POST", f"/courses/{site.course_id}/lessons", json={"title": "因式分解法"})
    video = _noisy_video(site.files / "因式分解法.mp4")
    size = video.stat().st_size
    _sign_in(page, site, f"/upload/lessons/{lesson['id']}")
    before = len(site.link.requests)
    site.link.kbit_per_s = 2000
    page.set_input_files("#upload-form input[type=file]", str(video))
    page.click("#upload-form button[type=submit]")
    item = page.locator("#transfers li")
    state = item.locator(".state")
    wait_until(lambda: int(item.get_attribute("data-sent") or 0) > size * 0.3, 30, "a third of the file")
    # The link all but stops under the piece in flight; Pause still pauses, within seconds.
    site.link.kbit_per_s = 8
    asked = time.monotonic()
    item.locator("button.pause").click()
    wait_until(lambda: state.inner_text() == "已暂停", 30, "the pause")
    assert time.monotonic() - asked < 20
    site.link.kbit_per_s = 2000
    patches = [r for r in site.link.requests[before:] if r.method == "PATCH"]
    cut = [p for p in patches if p.forwarded < p.length]
    assert len(cut) == 1, patches  # the piece in flight, given up
    upload = requests.get(site.server.url + patches[-1].path, headers=site.auth, timeout=10).json()
    kept = upload["offset"]
    assert kept == cut[0].upload_offset  # the server keeps only whole pieces (waitress reads bodies whole)

    item.locator("button.resume").click()
    wait_until(lambda: state.inner_text().startswith("已添加"), 60, "the upload to finish")
    site.link.kbit_per_s = None
    patches = [r for r in site.link.requests[before:] if r.method == "PATCH"]
    after = patches[patches.index(cut[0]) + 1 :]
    # Resumed from the server's offset, and nothing but the piece that was cut off went twice.
    assert after[0].upload_offset == kept, after
    assert sum(p.forwarded for p in patches) - size == cut[0].forwarded <= cut[0].length
    assert sum(p.length for p in after) == size - kept


# -- what the pipeline made -----------------------------------------------------------------


@pytest.fixture(scope="module")
def processed(site: Site) -> dict[str, Any]:
    """A generated lesson video and a damaged file, processed by the real worker."""
    lesson = site.api("POST", f"/courses/{site.course_id}/lessons", json={"title": "公式法"})
    video = upload_material(site.server, site.auth, lesson["id"], lesson_video(site.files / "公式法.mp4"), "公式法讲解")
    whole = lesson_video(site.files / "whole.mp4", seconds=2)
    damaged = site.files / "损坏.mp4"
    damaged.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    broken = upload_material(site.server, site.auth, lesson["id"], damaged, "损坏的视频")
    states = {
        name: wait_processed(lambda m=m: get_material(site.server, site.auth, m["id"]), f"the {name} to be processed")
        for name, m in (("video", video), ("broken", broken))
    }
    assert states["video"]["status"] == "ready", states["video"]
    assert states["broken"]["status"] == "failed", states["broken"]
    return {"lesson": lesson["id"], **states}


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("zh-CN", ["为慢速网络制作的版本", "画质", "视频 360p", "原始文件"]),
        ("en-US", ["Renditions made for slow links", "SSIM", "Video 360p"]),
    ],
)
def test_the_lesson_page_lists_each_rendition(
    browser: Any, site: Site, processed: dict[str, Any], locale: str, words: list[str]
) -> None:
    context = browser.new_context(viewport=PHONE, locale=locale, is_mobile=True)
    page = context.new_page()
    try:
        _sign_in(page, site, f"/upload/lessons/{processed['lesson']}")
        video = page.locator(f"#material-{processed['video']['id']}")
        text = video.inner_text()
        for word in words:
            assert word in text, (word, text)
        api = {r["profile"]: r for r in processed["video"]["renditions"]}
        for profile in ("video-360p", "video-240p"):
            row = video.locator(f"tr[data-profile='{profile}']")
            assert row.get_attribute("data-status") == "ready"
            r = api[profile]
            # Size, bit rate, SSIM and the time at 256 kbit/s, as the API has them.
            assert row.locator(".kbps").inner_text() == str(round(r["kbps"]))
            assert row.locator(".ssim").inner_text() == f"{r['ssim']:.3f}"
            assert 0.5 < float(row.locator(".ssim").inner_text()) <= 1
            assert re.fullmatch(r"\d+(\.\d)? [KM]B", row.locator(".size").inner_text())
            seconds = r["bytes"] * 8 / 256_000
            unit = "秒" if locale == "zh-CN" else "s"
            assert row.locator(".time").inner_text().endswith(unit), row.locator(".time").inner_text()
            assert seconds > 0
        _shot(page, f"{locale[:2]}-upload-renditions")
    finally:
        context.close()


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("zh-CN", re.compile(r"[\u4e00-\u9fff]")), ("en-US", re.compile(r"^[\x20-\x7e]+$"))],
)
def test_a_failure_is_said_in_plain_words_in_the_readers_language(
    browser: Any, site: Site, processed: dict[str, Any], locale: str, expected: re.Pattern[str]
) -> None:
    context = browser.new_context(viewport=PHONE, locale=locale, is_mobile=True)
    page = context.new_page()
    try:
        _sign_in(page, site, f"/upload/lessons/{processed['lesson']}")
        error = page.locator(f"#material-{processed['broken']['id']} .error").first.inner_text().strip()
        assert error, "no error shown"
        assert expected.search(error), error
        if locale == "zh-CN":
            assert not re.search(r"[A-Za-z]{3,}", error), f"English on the Chinese page: {error}"
        # Never ffmpeg's own words.
        assert not re.search(r"moov|Invalid data|ffmpeg|\[mov", error), error
    finally:
        context.close()
