"""Subtitles end to end against real processes: upload, <track> playing in Chromium, search, course ZIP.

One hub (waitress) and one worker (real ffmpeg, the search queue): a generated 4-second
lesson is transcoded, a Chinese SRT in GBK and an English WebVTT are attached through the
API, and Debian's Chromium plays the page (no CSP violation allowed, see
tests/support/browser.py).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import COURSE
from tests.functional.conftest import LiveServer, Worker, uploader_bearer, wait_processed, wait_until
from tests.functional.test_pages_browser import PHONE
from tests.support.browser import CHROMIUM, chromium
from tests.support.media import lesson_video

pytestmark = pytest.mark.slow

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

# Words that appear only in the subtitles: neither titles nor summaries have them.
ZH_SRT = "\r\n".join(
    ["1", "00:00:00,500 --> 00:00:03,500", "今天我们证明勾股定理", "", "2", "00:00:03,600 --> 00:00:04,000", "下课", ""]
)
EN_VTT = "WEBVTT\n\n00:00:01.000 --> 00:00:03.500\nThe <b>hypotenuse</b> is the longest side.\n"


@dataclass
class Site:
    server: LiveServer
    course_id: int
    lesson_id: int
    material_id: int
    tracks: dict[str, dict[str, Any]]  # language → the API's answer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Site]:
    from tests.conftest import instance_env

    env_iter = instance_env(request, tmp_path_factory.mktemp("subtitles") / "var")
    env = next(env_iter)
    logs = tmp_path_factory.mktemp("subtitles-logs")
    http = requests.Session()
    http.headers.update(uploader_bearer(env))
    # The worker starts with the server (each takes seconds to import the hub) and is waited for
    # once the material it is to transcode is uploaded.
    server = LiveServer(env, logs, wait=False)
    worker = Worker(env, logs / "worker.log", wait=False)
    try:
        server.wait()

        def api(method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
            response = http.request(method, server.api(path), timeout=30, **kwargs)
            assert response.status_code == expect, response.text
            return response.json() if response.content else None

        course = api("POST", "/courses", 201, json=COURSE)
        lesson = api("POST", f"/courses/{course['id']}/lessons", 201, json={"title": "直角三角形"})
        with lesson_video(logs / "lesson.mp4", seconds=4).open("rb") as f:
            material = api("POST", f"/lessons/{lesson['id']}/materials", 201, data={"title": "讲解"}, files={"file": f})
        api("POST", f"/courses/{course['id']}/publish")
        worker.wait()
        state = wait_processed(lambda: api("GET", f"/materials/{material['id']}"), "the video to be transcoded")
        assert state["status"] == "ready", state

        tracks = {}
        for language, data, name in (("zh", ZH_SRT.encode("gbk"), "第一课.srt"), ("en", EN_VTT.encode(), "a.vtt")):
            tracks[language] = api(
                "POST",
                f"/materials/{material['id']}/subtitles",
                201,
                data={"language": language},
                files={"file": (name, io.BytesIO(data))},
            )

        def indexed() -> bool:
            hits = requests.get(server.api("/search"), params={"q": "勾股定理"}, timeout=10).json()["hits"]
            return any(h["id"] == lesson["id"] for h in hits)

        wait_until(indexed, 60, "the worker to index the subtitles", interval=0.5)
        yield Site(server, course["id"], lesson["id"], material["id"], tracks)
    finally:
        worker.process.stop()
        server.process.stop()
        next(env_iter, None)


def test_the_lesson_page_plays_the_subtitles_in_chromium(site: Site) -> None:
    with chromium("--autoplay-policy=no-user-gesture-required") as browser:
        page = browser.new_page(viewport=PHONE, locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN"})
        page.goto(f"{site.server.url}/lessons/{site.lesson_id}?t=1&m={site.material_id}")
        video = page.locator(f"#material-{site.material_id} video")
        assert video.count() == 1
        tracks = page.evaluate(
            "() => Array.from(document.querySelector('video').textTracks, t => [t.language, t.label, t.mode])"
        )
        # The page's language is on; the other is there to choose.
        assert sorted(tracks) == [["en", "English", "disabled"], ["zh", "中文", "showing"]]
        page.wait_for_function(
            "() => { const t = Array.from(document.querySelector('video').textTracks).find(t => t.mode === 'showing');"
            " return t && t.cues && t.cues.length === 2; }"
        )
        cues = page.evaluate(
            "() => Array.from(Array.from(document.querySelector('video').textTracks)"
            ".find(t => t.language === 'zh').cues, c => [c.startTime, c.endTime, c.text])"
        )
        assert cues == [[0.5, 3.5, "今天我们证明勾股定理"], [3.6, 4.0, "下课"]]
        # ?t=1 started the player at 1 s (a #t=1 media fragment): the first cue is the active one.
        page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " const t = Array.from(v.textTracks).find(t => t.mode === 'showing');"
            " return v.currentTime >= 1 && t.activeCues && t.activeCues.length > 0; }"
        )
        started = page.evaluate(
            "() => [document.querySelector('video').currentTime,"
            " Array.from(document.querySelector('video').textTracks).find(t => t.mode === 'showing')"
            ".activeCues[0].text, document.querySelector('video').error]"
        )
        assert started[0] >= 1 and started[1] == "今天我们证明勾股定理" and started[2] is None
        browser.assert_no_csp_violations()

        english = browser.new_page(viewport=PHONE, locale="en", extra_http_headers={"Accept-Language": "en"})
        english.goto(f"{site.server.url}/lessons/{site.lesson_id}")
        modes = english.evaluate(
            "() => Array.from(document.querySelector('video').textTracks, t => [t.language, t.mode])"
        )
        assert sorted(modes) == [["en", "showing"], ["zh", "disabled"]]


@pytest.mark.parametrize(("q", "time", "word"), [("勾股定理", 0, "勾股定理"), ("hypotenuse", 1, "hypotenuse")])
def test_a_spoken_word_finds_the_lesson_and_its_moment(site: Site, q: str, time: int, word: str) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport=PHONE, java_script_enabled=False)
        page.goto(f"{site.server.url}/search?q={q}")
        link = page.locator(f'a.title[href^="/lessons/{site.lesson_id}"]')
        assert link.count() == 1
        assert page.locator("mark", has_text=word).count() >= 1
        link.click()
        assert page.url.endswith(f"/lessons/{site.lesson_id}?t={time}&m={site.material_id}#material-{site.material_id}")
        sources = page.eval_on_selector_all("video source", "els => els.map(e => e.getAttribute('src'))")
        if time:
            assert sources and all(s.endswith(f"#t={time}") for s in sources)


def test_the_course_zip_carries_the_tracks(site: Site, tmp_path: Path) -> None:
    response = requests.get(f"{site.server.url}/courses/{site.course_id}/download", timeout=60)
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    vtts = sorted(name for name in archive.namelist() if name.endswith(".vtt"))
    assert [name.rsplit(".", 2)[1] for name in vtts] == ["en", "zh"]
    videos = [name for name in archive.namelist() if name.endswith(".mp4")]
    assert len(videos) == 1 and all(name.startswith(videos[0].rsplit(".", 1)[0] + ".") for name in vtts)
    zh = next(name for name in vtts if name.endswith(".zh.vtt"))
    served = requests.get(site.server.url + site.tracks["zh"]["url"], timeout=10)
    assert served.headers["Content-Type"] == "text/vtt; charset=utf-8"
    assert archive.read(zh) == served.content and "勾股定理" in served.text
    index = archive.read("index.html").decode()
    assert index.count("<track ") == 2

    # Unzipped and opened from disk, as a teacher does: Chromium shows the subtitles there too.
    archive.extractall(tmp_path)
    with chromium() as browser:
        page = browser.new_page(viewport=PHONE)
        page.goto((tmp_path / "index.html").as_uri())
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && Array.from(v.textTracks).some(t => t.mode === 'showing' && t.cues && t.cues.length > 0); }"
        )
        texts = page.evaluate(
            "() => Array.from(Array.from(document.querySelector('video').textTracks)"
            ".find(t => t.mode === 'showing').cues, c => c.text)"
        )
        assert texts == ["今天我们证明勾股定理", "下课"]  # the ZIP was asked for in Chinese (the default)
