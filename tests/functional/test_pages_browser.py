"""A rural teacher's visit in Chromium on a phone-sized screen, against real processes.

One hub (waitress) and one worker (real ffmpeg, the search queue) are shared by the
module: the catalog is made once through the API, a tiny generated video is
transcoded once, and each test walks one part of the visit in a fresh browser
context (own cookies), so they do not depend on each other's order. Debian's
/usr/bin/chromium is driven through Playwright: no browser download.

Screenshots of each main page, in Chinese and in English, go to test-artifacts/
(gitignored) for a person to look at.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import COURSE
from tests.functional.conftest import LiveServer, Worker, uploader_bearer, wait_processed, wait_until
from tests.support.browser import CHROMIUM
from tests.support.media import lesson_video

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_csp_violations")]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 360, "height": 740}
# An old Android phone's Chrome: what a rural teacher's browser says about itself.
SLOW_PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 7.0; Redmi 4A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/79.0.3945.136 Mobile Safari/537.36"
)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@dataclass
class Site:
    server: LiveServer
    course_id: int
    lesson_id: int
    other_course_id: int
    material: dict[str, Any]


@pytest.fixture(scope="module")
def site(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    logs = tmp_path_factory.mktemp("browser-logs")
    auth = uploader_bearer(module_env)
    # The worker starts with the server (each takes seconds to import the hub) and is waited for
    # once the material it is to transcode is uploaded.
    server = LiveServer(module_env, logs, wait=False)
    worker = Worker(module_env, logs / "worker.log", wait=False)
    try:
        server.wait()
        http = requests.Session()
        http.headers.update(auth)

        def api(method: str, path: str, **kwargs: Any) -> Any:
            response = http.request(method, server.api(path), timeout=30, **kwargs)
            assert response.status_code < 300, response.text
            return response.json() if response.content else None

        course = api("POST", "/courses", json=COURSE)
        lessons = f"/courses/{course['id']}/lessons"
        lesson = api("POST", lessons, json={"title": "一元二次方程的配方法", "unit": "第二十一章"})
        api("POST", lessons, json={"title": "公式法", "unit": "第二十一章"})
        video = lesson_video(logs / "配方法.mp4", seconds=2)
        with video.open("rb") as f:
            material = api(
                "POST", f"/lessons/{lesson['id']}/materials", data={"title": "配方法讲解"}, files={"file": f}
            )
        api("POST", f"/courses/{course['id']}/publish")
        chinese = {**COURSE, "title": "统编版语文三年级上册", "subject": "chinese", "grades": [3]}
        other = api("POST", "/courses", json=chinese)
        api("POST", f"/courses/{other['id']}/lessons", json={"title": "古诗三首"})
        api("POST", f"/courses/{other['id']}/publish")

        worker.wait()
        state = wait_processed(lambda: api("GET", f"/materials/{material['id']}"), "the video to be transcoded")
        assert state["status"] == "ready", state

        def indexed() -> bool:
            hits = requests.get(server.api("/search"), params={"q": "二次方程"}, timeout=10).json()["hits"]
            return {h["title"] for h in hits} >= {"一元二次方程", "一元二次方程的配方法"}

        wait_until(indexed, 60, "the worker to index the course", interval=0.5)
        yield Site(server, course["id"], lesson["id"], other["id"], state)
    finally:
        worker.process.stop()
        server.process.stop()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A new phone-sized tab with its own cookies, whose browser asks for Chinese."""
    context = browser.new_context(
        viewport=PHONE, user_agent=SLOW_PHONE_UA, locale="zh-CN", accept_downloads=True, is_mobile=True
    )
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
        assert not errors, errors
    finally:
        context.close()


def _shot(page: Any, name: str) -> None:
    """A full-page screenshot, and a check that nothing is wider than the phone's screen."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: the page is {overflow}px wider than a 360px screen"


def test_browse_by_subject_and_grade(page: Any, site: Site) -> None:
    page.goto(site.server.url + "/")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text() == "按学科和年级浏览"
    _shot(page, "zh-home")
    cell = page.locator('table.grid a[href="/courses?subject=math&grade=9"]')
    assert cell.inner_text() == "1"
    cell.click()
    page.wait_for_url("**/courses?subject=math&grade=9")
    titles = page.locator("ul.courses a.title").all_inner_texts()
    assert titles == ["一元二次方程"]
    assert "数学 · 九年级" in page.locator("ul.courses .meta").first.inner_text()
    _shot(page, "zh-courses")
    page.click("text=一元二次方程")
    page.wait_for_url(f"**/courses/{site.course_id}")
    assert page.locator("ol.lessons a").all_inner_texts() == ["一元二次方程的配方法", "公式法"]
    _shot(page, "zh-course")
    # The other subject's row leads to the other course only.
    page.goto(site.server.url + "/")
    page.click('table.grid a[href="/courses?subject=chinese&grade=3"]')
    assert page.locator("ul.courses a.title").all_inner_texts() == ["统编版语文三年级上册"]


def test_search_in_chinese(page: Any, site: Site) -> None:
    page.goto(site.server.url + "/")
    page.fill("form[role=search] input[name=q]", "二次方程")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**/search?q=*")
    titles = page.locator("ul.courses a.title").all_inner_texts()
    # The course and the lesson named by the words come first; lessons of the course may follow.
    assert set(titles[:2]) == {"一元二次方程", "一元二次方程的配方法"}, titles
    assert page.locator("ul.courses a.title mark").count() >= 2  # the words found are highlighted
    assert page.locator("p.count").inner_text() == f"共 {len(titles)} 条结果"
    assert page.locator("img.thumb").count() == 0  # data saver (on by default): no thumbnails
    page.context.add_cookies([{"name": "data_saver", "value": "0", "url": site.server.url}])
    page.reload()
    thumb = page.locator("img.thumb")
    assert thumb.count() == 1  # the lesson with a video
    assert thumb.get_attribute("loading") == "lazy"
    assert (thumb.get_attribute("width"), thumb.get_attribute("height")) == ("96", "54")  # 480x270, no reflow
    poster = next(r for r in site.material["renditions"] if r["profile"] == "poster")
    assert (thumb.get_attribute("src") or "").endswith(poster["sha256"])
    page.wait_for_function("() => document.querySelector('img.thumb').naturalWidth > 0")
    _shot(page, "zh-search")
    page.click("ul.courses a.title >> text=一元二次方程的配方法")
    page.wait_for_url(f"**/lessons/{site.lesson_id}")


def test_typing_in_the_search_box_shows_suggestions(page: Any, site: Site) -> None:
    page.goto(site.server.url + "/search")
    box = page.locator("form[role=search] input[name=q]")
    box.press_sequentially("peif", delay=80)  # pinyin of 配方法, still being typed
    option = page.get_by_role("option", name="一元二次方程的配方法")
    option.wait_for()
    assert box.get_attribute("aria-expanded") == "true"
    assert page.get_by_role("listbox").get_attribute("aria-label") == "搜索建议"
    _shot(page, "zh-search-suggestions")  # nothing wider than the phone's screen
    box.press("ArrowDown")
    assert box.get_attribute("aria-activedescendant") == option.get_attribute("id")
    assert option.get_attribute("aria-selected") == "true"
    box.press("Enter")  # picks the title and searches for it
    page.wait_for_url("**/search?q=*")
    assert box.input_value() == "一元二次方程的配方法"
    assert page.locator("ul.courses a.title").first.inner_text() == "一元二次方程的配方法"
    # Escape closes the list; clearing the box empties it.
    box.fill("")
    box.press_sequentially("gus", delay=80)
    page.get_by_role("option", name="古诗三首").wait_for()
    box.press("Escape")
    assert page.get_by_role("listbox").is_hidden() and box.get_attribute("aria-expanded") == "false"


def test_open_a_lesson_and_play_the_smallest_rendition(page: Any, site: Site) -> None:
    page.goto(f"{site.server.url}/courses/{site.course_id}")
    page.click("ol.lessons >> text=一元二次方程的配方法")
    page.wait_for_url(f"**/lessons/{site.lesson_id}")
    video = page.locator("ul.materials video")
    assert video.count() == 1
    videos = [r for r in site.material["renditions"] if r["status"] == "ready" and r["profile"].startswith("video")]
    smallest = min(videos, key=lambda r: r["bytes"])
    # Data saver is on by default: the smallest rendition is the first source, so it is what plays.
    first_source = video.locator("source").first.get_attribute("src")
    # The link names the material it plays (hub.reach counts per material): the blob is the path.
    assert first_source is not None and first_source.split("?")[0].endswith(smallest["sha256"])
    assert page.locator("table.downloads").first.inner_text().count("256 kbit/s") == 1
    _shot(page, "zh-lesson")
    player = "document.querySelector('ul.materials video')"
    # play() not awaited: evaluate has no time limit, and a video the browser refuses to
    # load (a media-src the policy lacks) never starts; the wait below has one.
    page.evaluate(f"() => {{ const v = {player}; v.muted = true; v.play().catch(() => {{}}); }}")
    # Enough data for the current frame, and the clock moving: it really plays.
    page.wait_for_function(f"() => {player}.readyState >= 2 && {player}.currentTime > 0")
    # Through stream.js (MSE) the element's src is a blob: URL; the file is the stream's.
    current = page.evaluate(f"{player}.hubStream ? {player}.hubStream.url : {player}.currentSrc")
    assert current.split("?")[0].endswith(smallest["sha256"]), current
    assert page.evaluate(f"{player}.getAttribute('data-stream')") == "mse"


def test_switch_language_and_see_every_page_in_english(page: Any, site: Site) -> None:
    page.goto(site.server.url + "/")
    page.click("a.lang[hreflang=en]")
    page.wait_for_url(site.server.url + "/")
    assert page.locator("h1").inner_text() == "Browse by subject and grade"
    assert page.locator("html").get_attribute("lang") == "en"
    _shot(page, "en-home")
    # Remembered (a cookie), though the browser still asks for Chinese.
    page.click("text=Mathematics")
    assert "Mathematics · Grade 9" in page.locator("ul.courses .meta").first.inner_text()
    _shot(page, "en-courses")
    page.goto(f"{site.server.url}/search?q=二次方程")
    assert page.locator("p.count").inner_text().endswith(" results")
    _shot(page, "en-search")
    page.goto(f"{site.server.url}/courses/{site.course_id}")
    assert page.locator("h2").all_inner_texts()[:2] == ["Reusing this course", "Lessons"]
    _shot(page, "en-course")
    page.goto(f"{site.server.url}/lessons/{site.lesson_id}")
    assert "Materials" in page.locator("h2").first.inner_text()
    assert "Video 240p" in page.locator("table.downloads").first.inner_text()
    _shot(page, "en-lesson")
    page.click("a.lang[hreflang=zh]")
    page.wait_for_url(f"**/lessons/{site.lesson_id}")  # back to the same page, in Chinese
    assert page.locator("h2").first.inner_text() == "材料"


def test_everything_works_without_javascript(browser: Any, site: Site) -> None:
    context = browser.new_context(viewport=PHONE, user_agent=SLOW_PHONE_UA, locale="zh-CN", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.server.url + "/")
        page.click('table.grid a[href="/courses?subject=math&grade=9"]')
        # Reading the list right after a click may read the page being left: wait for the new one.
        page.wait_for_url("**/courses?subject=math&grade=9")
        assert page.locator("ul.courses a.title").all_inner_texts() == ["一元二次方程"]
        page.select_option("select[name=subject]", "chinese")
        page.select_option("select[name=grade]", "3")
        page.click("form.filters button[type=submit]")  # a plain GET form
        page.wait_for_url("**/courses?*grade=3*")
        assert page.locator("ul.courses a.title").all_inner_texts() == ["统编版语文三年级上册"]
        page.goto(site.server.url + "/")
        page.fill("form[role=search] input[name=q]", "古诗")
        page.click("form[role=search] button[type=submit]")
        page.wait_for_url("**/search?*")
        assert "古诗三首" in page.locator("ul.courses a.title").all_inner_texts()
        page.click("a.lang[hreflang=en]")
        page.locator("h1", has_text="Search").wait_for()
        assert page.locator("h1").inner_text() == "Search"
        assert "古诗三首" in page.locator("ul.courses a.title").all_inner_texts()  # same search, in English
        page.goto(f"{site.server.url}/lessons/{site.lesson_id}")
        assert page.locator("ul.materials video source").count() >= 1
        page.click(".data-saver button[type=submit]")  # the other preference is a plain form too
        page.locator("#data-saver-state", has_text="off").wait_for()
        assert page.locator("#data-saver-state").inner_text() == "off"
    finally:
        context.close()


def test_download_the_course_zip(page: Any, site: Site, tmp_path: Path) -> None:
    page.goto(f"{site.server.url}/courses/{site.course_id}")
    with page.expect_download() as info:
        page.click("#download-course")
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(str(saved))
    assert saved.suffix == ".zip"
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        media = [n for n in names if n.endswith(".mp4")]
        assert len(media) == 1, names  # one video, at the data saver's (smallest) quality
        sums = json.dumps(manifest, ensure_ascii=False)
        digest = hashlib.sha256(archive.read(media[0])).hexdigest()
    assert "index.html" in names and digest in sums
    videos = [r for r in site.material["renditions"] if r["status"] == "ready" and r["profile"].startswith("video")]
    assert digest == min(videos, key=lambda r: r["bytes"])["sha256"]


def _reported(browser: Any, page: Any, *directives: str) -> str:
    """The violations reported so far, once each directive is among them (console messages arrive late)."""
    wait_until(
        lambda: page.wait_for_timeout(50) or all(d in " ".join(browser.csp_violations) for d in directives),
        10,
        f"the browser to report {directives}",
        interval=0,
    )
    found = " ".join(browser.csp_violations)
    browser.csp_violations.clear()
    return found


def test_the_policy_refuses_inline_code_and_the_tests_see_it(page: Any, browser: Any, site: Site) -> None:
    """The hub's policy is strict (no inline script or style), and a violation fails a browser test."""
    home = requests.get(site.server.url + "/", timeout=10)
    policy = home.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert home.headers["X-Frame-Options"] == "DENY"
    injected = (
        "<!doctype html><title>x</title><p style='color:red'>x</p>"
        "<script>document.title = 'ran'</script><img src='http://elsewhere.example/x.png'>"
    )
    headers = {"Content-Type": "text/html", "Content-Security-Policy": policy}
    page.route("**/injected", lambda route: route.fulfill(status=200, body=injected, headers=headers))
    page.goto(site.server.url + "/injected")
    _reported(browser, page, "script-src", "style-src", "img-src")
    assert page.title() == "x"  # the inline script did not run
    # Another site cannot frame the hub's pages (the upload and publish forms).
    framing = f"<!doctype html><title>f</title><iframe src='{site.server.url}/login'></iframe>"
    page.route(
        "http://elsewhere.example/", lambda route: route.fulfill(status=200, body=framing, content_type="text/html")
    )
    page.goto("http://elsewhere.example/")  # returns once the frame has loaded, or failed to
    assert len(page.frames) == 2
    framed = page.frames[1]
    assert framed.url != f"{site.server.url}/login" and framed.locator("input[name=password]").count() == 0
