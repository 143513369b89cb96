"""The lesson player a teacher expects, in Debian's Chromium at 360 px, against real processes.

One hub and one worker (real ffmpeg) for the module: a course of three lessons, the
middle one a slides video with chapters. Each test opens a fresh phone-sized context.
Screenshots of the lesson page in Chinese and English go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from hub import create_app
from hub.db import get_database
from hub.reach.models import UsageCount
from tests.conftest import COURSE, hub_settings
from tests.functional.conftest import LiveServer, Worker, uploader_bearer, wait_processed, wait_until
from tests.functional.test_pages_browser import PHONE, SLOW_PHONE_UA, _shot
from tests.support.browser import CHROMIUM
from tests.support.media import slides_video

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_csp_violations")]

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@dataclass
class Lessons:
    server: LiveServer
    ids: list[int]
    material: dict[str, Any]

    def url(self, index: int = 1, query: str = "") -> str:
        return f"{self.server.url}/lessons/{self.ids[index]}{query}"


@pytest.fixture(scope="module")
def lessons(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lessons]:
    logs = tmp_path_factory.mktemp("player-logs")
    env = module_env
    auth = uploader_bearer(env)
    # The worker starts with the server (each takes seconds to import the hub) and is waited for
    # once the material it is to transcode is uploaded.
    server = LiveServer(env, logs, wait=False)
    worker = Worker(env, logs / "worker.log", wait=False)
    try:
        server.wait()
        http = requests.Session()
        http.headers.update(auth)

        def api(method: str, path: str, **kwargs: Any) -> Any:
            response = http.request(method, server.api(path), timeout=30, **kwargs)
            assert response.status_code < 300, response.text
            return response.json() if response.content else None

        course = api("POST", "/courses", json=COURSE)
        ids = [
            api("POST", f"/courses/{course['id']}/lessons", json={"title": title})["id"]
            for title in ("直接开平方法", "配方法", "公式法")
        ]
        video = slides_video(logs / "配方法.mp4", durations=(8, 9, 7), inset="smptebars")
        with video.open("rb") as f:
            material = api("POST", f"/lessons/{ids[1]}/materials", data={"title": "配方法讲解"}, files={"file": f})
        api("POST", f"/courses/{course['id']}/publish")
        worker.wait()
        state = wait_processed(lambda: api("GET", f"/materials/{material['id']}"), "the slides video to be transcoded")
        assert state["status"] == "ready" and len(state["chapters"]) == 3, state
        yield Lessons(server, ids, state)
    finally:
        worker.process.stop()
        server.process.stop()


def _tab(browser: Any, locale: str = "zh-CN", javascript: bool = True, user_agent: str = SLOW_PHONE_UA) -> Any:
    context = browser.new_context(
        viewport=PHONE, user_agent=user_agent, locale=locale, is_mobile=True, java_script_enabled=javascript
    )
    context.set_default_timeout(30_000)
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    tab = _tab(browser)
    yield tab
    assert not tab.errors, tab.errors
    tab.context.close()


def _video_state(page: Any) -> dict[str, Any]:
    return page.evaluate(  # type: ignore[no-any-return]
        "() => { const v = document.querySelector('video.player');"
        # Through stream.js (MSE) the element's src is a blob: URL; the file it plays is the stream's.
        " return {time: v.currentTime, rate: v.playbackRate, src: v.hubStream ? v.hubStream.url : v.currentSrc,"
        " ready: v.readyState, stream: v.getAttribute('data-stream')}; }"
    )


def _wait_time(page: Any, near: float) -> None:
    wait_until(lambda: abs(_video_state(page)["time"] - near) < 1.5, 30, f"the player at {near} s", interval=0.2)


@pytest.mark.parametrize(
    ("locale", "texts"),
    [
        ("zh-CN", ("清晰度", "倍速", "第 2 页", "上一课：直接开平方法", "下一课：公式法")),
        ("en", ("Quality", "Speed", "Slide 2", "Previous: 直接开平方法", "Next: 公式法")),
    ],
)
def test_lesson_page_is_usable_at_360px(browser: Any, lessons: Lessons, locale: str, texts: tuple[str, ...]) -> None:
    tab = _tab(browser, locale)
    try:
        tab.goto(lessons.url(1))
        body = tab.locator("main").inner_text()
        for text in texts:
            assert text in body, (text, body)
        assert tab.locator(".player-tools .speed").is_visible()  # shown by the script
        assert tab.locator(".chapters a").count() == 3
        _shot(tab, f"{locale[:2]}-lesson-player")
        # Every control is at least 24 px tall: a finger can hit it.
        heights = tab.evaluate(
            "() => [...document.querySelectorAll('.player-tools a, .player-tools button, .chapters a, .lesson-nav a')]"
            ".map(e => e.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 24, heights
        assert not tab.errors, tab.errors
    finally:
        tab.context.close()


def test_speed_is_chosen_and_kept_on_the_device(page: Any, lessons: Lessons) -> None:
    page.goto(lessons.url(1))
    assert _video_state(page)["rate"] == 1
    page.click(".speed [data-speed='1.5']")
    assert _video_state(page)["rate"] == 1.5
    assert page.locator(".speed [data-speed='1.5']").get_attribute("aria-pressed") == "true"
    page.reload()
    assert _video_state(page)["rate"] == 1.5


def test_chapter_links_seek_in_place(page: Any, lessons: Lessons) -> None:
    page.goto(lessons.url(1))
    here = page.url
    page.click(".chapters a >> nth=2")  # 第 3 页, at 17 s
    _wait_time(page, lessons.material["chapters"][2]["start"])
    assert page.url == here  # no page load: the script seeked the player


def test_chapter_links_work_without_javascript(browser: Any, lessons: Lessons) -> None:
    tab = _tab(browser, javascript=False)
    try:
        tab.goto(lessons.url(1))
        assert not tab.locator(".player-tools .speed").is_visible()  # nothing that cannot work
        tab.click(".chapters a >> nth=1")  # 第 2 页, at 8 s
        tab.wait_for_url("**/lessons/*?*t=8*")
        src = tab.locator("video.player source").first.get_attribute("src")
        assert src.endswith("#t=8"), src
        # Nothing is fetched before the reader presses play (a fetch would count as a play without
        # JavaScript); then the media fragment starts the player at 8 s.
        assert _video_state(tab)["ready"] == 0
        tab.evaluate("() => { const v = document.querySelector('video.player'); v.muted = true; return v.play(); }")
        wait_until(lambda: _video_state(tab)["ready"] >= 1, 30, "the video's metadata", interval=0.2)
        assert 8 - 0.5 < _video_state(tab)["time"] < 8 + 5
    finally:
        tab.context.close()


def test_position_is_remembered_per_lesson(page: Any, lessons: Lessons) -> None:
    page.goto(lessons.url(1))
    page.evaluate(
        "() => new Promise(done => { const v = document.querySelector('video.player');"
        " v.addEventListener('loadedmetadata', () => { v.currentTime = 12.5; v.pause(); done(); }, {once: true});"
        " v.preload = 'metadata'; v.load(); })"
    )
    _wait_time(page, 12.5)
    page.evaluate("() => document.querySelector('video.player').dispatchEvent(new Event('pause'))")
    page.goto(lessons.url(2))  # another lesson, then back
    page.goto(lessons.url(1))
    page.evaluate("() => { const v = document.querySelector('video.player'); v.preload = 'metadata'; v.load(); }")
    _wait_time(page, 12.5)


def test_quality_links_switch_the_rendition(page: Any, lessons: Lessons) -> None:
    page.goto(lessons.url(1))
    assert "240p" in page.locator(".quality [aria-current=true]").inner_text()  # data saver: the smallest
    renditions = {r["profile"]: r for r in lessons.material["renditions"]}
    page.evaluate(
        "() => new Promise(done => { const v = document.querySelector('video.player');"
        " v.addEventListener('loadedmetadata', () => { v.currentTime = 10; done(); }, {once: true});"
        " v.preload = 'metadata'; v.load(); })"
    )
    _wait_time(page, 10)
    page.click(".quality a[data-quality='360p']")
    wait_until(lambda: renditions["video-360p"]["sha256"] in _video_state(page)["src"], 30, "the 360p source")
    _wait_time(page, 10)  # in place: the position stays
    assert _video_state(page)["stream"] == "mse"  # and still through stream.js
    # Without JavaScript the same link renders the page with 360p first, and "audio only" an <audio>.
    page.goto(lessons.url(1, "?quality=audio"))
    assert page.locator("audio.player").count() == 1 and page.locator("video.player").count() == 0
    played = page.evaluate(
        "() => { const a = document.querySelector('audio.player');"
        " return a.hubStream ? a.hubStream.url : a.getAttribute('src'); }"
    )
    assert renditions["audio"]["sha256"] in played


def test_previous_and_next_lesson(page: Any, lessons: Lessons) -> None:
    page.goto(lessons.url(0))
    assert page.locator(".lesson-nav a[rel=prev]").count() == 0
    page.click(".lesson-nav a[rel=next]")
    page.wait_for_url(f"**/lessons/{lessons.ids[1]}")
    page.click(".lesson-nav a[rel=next]")
    page.wait_for_url(f"**/lessons/{lessons.ids[2]}")
    assert page.locator(".lesson-nav a[rel=next]").count() == 0
    page.click(".lesson-nav a[rel=prev]")
    page.wait_for_url(f"**/lessons/{lessons.ids[1]}")


@pytest.fixture(scope="module")
def plays(module_env: dict[str, str]) -> Iterator[Callable[[int], int]]:
    """Plays of a material in the hub's usage counts (hub.reach), read from its database."""
    app = create_app(hub_settings(module_env))
    database = get_database(app)

    def count(material_id: int) -> int:
        with database.session() as session:
            rows = session.scalars(
                select(UsageCount.count).where(UsageCount.material_id == material_id, UsageCount.kind == "play")
            )
            return sum(rows)

    yield count
    database.engine.dispose()


def test_a_play_is_reported_by_the_beacon_once_per_device_and_day(
    page: Any, lessons: Lessons, plays: Callable[[int], int]
) -> None:
    material = lessons.material["id"]
    before = plays(material)
    start = (
        "() => { const v = document.querySelector('video.player'); v.muted = true; v.playbackRate = 2;"
        " return v.play(); }"
    )
    page.goto(lessons.url(1))
    page.evaluate(start)
    # A quarter of the 24 s video (6 s) at double speed: about 3 s.
    wait_until(lambda: plays(material) == before + 1, 30, "the beacon's play", interval=0.3)
    played = page.evaluate("() => document.querySelector('video.player').played.end(0)")
    assert played >= 6
    # The same browser again: its id (localStorage) was seen today.
    page.reload()
    page.evaluate(start)
    wait_until(lambda: page.evaluate("() => document.querySelector('video.player').currentTime") > 7, 30, "7 s")
    assert plays(material) == before + 1
    # player.js marked this browser's blob requests: the fallback left them to the beacon.
    cookies = {c["name"]: c["path"] for c in page.context.cookies()}
    assert cookies.get("hub_player") == "/api/v1/blobs"


def test_without_javascript_the_first_media_request_counts_the_play(
    browser: Any, lessons: Lessons, plays: Callable[[int], int]
) -> None:
    material = lessons.material["id"]
    before = plays(material)
    # A device of its own: without a script the device is its address and browser, and the other
    # tabs of this module (same address, same browser) may have been counted for this material today.
    tab = _tab(browser, javascript=False, user_agent=SLOW_PHONE_UA + " NoScript")
    try:
        tab.goto(lessons.url(1))
        tab.evaluate("() => { const v = document.querySelector('video.player'); v.muted = true; return v.play(); }")
        wait_until(lambda: plays(material) == before + 1, 30, "the media request's play", interval=0.3)
        wait_until(lambda: _video_state(tab)["time"] > 2, 30, "2 s played")  # more range requests by then
        assert plays(material) == before + 1
    finally:
        tab.context.close()


def test_a_page_that_loads_the_video_before_its_script_counts_one_play(
    browser: Any, lessons: Lessons, plays: Callable[[int], int]
) -> None:
    """A first visit through a chapter link (?m=&t=) with JavaScript: one play, the beacon's.

    The link's page asks for the video's metadata while it loads (the no-script way to start
    at the chapter), and that request may leave before player.js has run and set its cookie:
    the fallback must not take it for a play without JavaScript, and the page's mere loading
    is no play at all.
    """
    material = lessons.material["id"]
    # A fresh context (no cookie, no device id) and a device of its own for the fallback's key.
    tab = _tab(browser, user_agent=SLOW_PHONE_UA + " FirstVisit")
    try:
        before = plays(material)
        tab.goto(lessons.url(1, f"?m={material}&t=8"))
        wait_until(lambda: _video_state(tab)["ready"] >= 1, 30, "the video's metadata", interval=0.2)
        assert abs(_video_state(tab)["time"] - 8) < 1  # the chapter link still starts there
        on_loading = plays(material) - before
        tab.evaluate(
            "() => { const v = document.querySelector('video.player'); v.muted = true; v.playbackRate = 2;"
            " return v.play(); }"
        )
        wait_until(lambda: _video_state(tab)["time"] > 16, 30, "8 s played")  # a quarter played: the beacon
        wait_until(lambda: plays(material) > before + on_loading, 30, "the beacon's play", interval=0.3)
        # Loading counted nothing, and the play counted once.
        assert (on_loading, plays(material) - before) == (0, 1)
        assert not tab.errors, tab.errors
    finally:
        tab.context.close()
