"""Every rendition starts and seeks in Chromium on a 256 kbit/s link (issue 14).

A hub (waitress) and a real worker (ffmpeg, two renditions at a time) on loopback
make the renditions of five generated lessons, one per content type: slides,
camera, mixed (slides with a small moving inset, which the probe takes for camera
video), audio only, and very short (3 s). Each video/audio rendition then plays in
Debian's Chromium (no downloaded browser) in a phone-sized tab of its own opened on
the lesson's page (so under the hub's Content-Security-Policy, and, in the service
run, through the redirect to S3), throttled through the DevTools protocol to
256 kbit/s with 300 ms of latency (tests/support/playback.py). Each plays twice, side by
side in the same run: as a bare element with the file as its src (what plays without
JavaScript and from a course ZIP), and through the lesson page's hub/static/stream.js (Media
Source Extensions: the page fetches the fragment a seek needs and aborts what it was reading),
which must have held to the end (no fallback to the plain src) and meet the same budgets.

Asserted: a first frame after at most what 5 s at 256 kbit/s carries (160 KB), and
five seeks (10..90 %) that each resume with no media error, each after at most
160 KB too, without reading backwards first nor anything before the fragment that
holds its target (the fragment index is read from the file as served); and a first
fragment of at most 4 s in every video rendition (the first picture waits for its
fragment's audio run). Bytes, not seconds, are asserted: the
page marks when each phase began and when it played (so the player's read-ahead
while the test polls does not count), but on a shared machine at load 20 a seek
with nothing to fetch was seen to take 9 s. The seconds are recorded:
test-artifacts/playback.json and the test output have them; the media benchmark
reports them for lesson-length inputs, including a 45-minute one
(benchmarks/media/RESULTS.md).

Until issue 14, fragments cut every 2 s inside 5 s camera GOPs made the mixed and
camera 360p renditions stop on seeks with PIPELINE_ERROR_DECODE (is_key_frame=0);
until ENCODER_REVISION 3, each seek read the previous fragment for the AAC frame
playing at the keyframe (hub.media.fmp4); until ENCODER_REVISION 4, a slides
rendition's first fragment was its whole first GOP, up to 20 s; until ENCODER_REVISION 5, a
camera rendition's was its whole first 5 s GOP (through MSE the first picture waits for it all).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from benchmarks.media import mp4
from tests.conftest import COURSE
from tests.functional.conftest import LiveServer, Worker, uploader_bearer, wait_until
from tests.support import playback
from tests.support.browser import CHROMIUM, chromium
from tests.support.media import lesson_video, slides_video, speech_audio

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

# Content type -> how to make it. Short clips keep the suite's run time small; the
# structure that matters (GOPs longer than the old 2 s fragments, slide changes,
# audio alone) is already there at 20-30 s.
CONTENT = {
    # A still inset (smptebars): the probe calls it slides, GOPs up to the slide changes.
    "slides": lambda p: slides_video(p / "slides.mp4", (10, 10, 10), size="640x360", inset="smptebars"),
    "camera": lambda p: lesson_video(p / "camera.mp4", seconds=20),
    # A moving inset (a teacher's camera): the probe calls it camera video, 5 s GOPs.
    "mixed": lambda p: slides_video(p / "mixed.mp4", (10, 10, 10), size="640x360", inset="testsrc2"),
    "audio": lambda p: speech_audio(p / "talk.wav", 30),
    "short": lambda p: lesson_video(p / "short.mp4", seconds=3),
}
PROFILES = {"video-360p": "video", "video-240p": "video", "audio": "audio"}
PLAYERS = ("plain", "mse")
"""plain: a bare <video src>, what plays without JavaScript (and from a course ZIP); mse: the lesson
page's hub/static/stream.js (Media Source Extensions), which fetches the fragment a seek needs."""
CASES = [(c, p, w) for c in CONTENT for p in PROFILES if c != "audio" or p == "audio" for w in PLAYERS]
BLOCK = 32768
"""Chromium's media cache reads and requests whole blocks of 32 KiB (MultiBuffer, block_size_shift 15)."""


@pytest.fixture(scope="module")
def measured(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """{(content, profile): Playback} for every case, measured once for the module."""
    folder = tmp_path_factory.mktemp("playback-media")
    auth = uploader_bearer(module_env)
    # The worker starts with the server and transcodes each lesson as it arrives, while the
    # next one is generated and uploaded.
    server = LiveServer(module_env, folder, wait=False)
    worker: Worker | None = Worker(module_env, folder / "worker.log", concurrency=2, wait=False)
    try:
        server.wait()
        http = requests.Session()
        http.headers.update(auth)

        def api(method: str, path: str, **kwargs: Any) -> Any:
            response = http.request(method, server.api(path), timeout=60, **kwargs)
            assert response.status_code < 300, response.text
            return response.json() if response.content else None

        course = api("POST", "/courses", json=COURSE)
        lessons: dict[str, int] = {}
        materials: dict[str, int] = {}
        for content, make in CONTENT.items():
            lesson = api("POST", f"/courses/{course['id']}/lessons", json={"title": f"播放测试 {content}"})
            with make(folder).open("rb") as f:
                material = api("POST", f"/lessons/{lesson['id']}/materials", data={"title": content}, files={"file": f})
            lessons[content], materials[content] = lesson["id"], material["id"]
        api("POST", f"/courses/{course['id']}/publish")
        assert worker is not None
        worker.wait()
        ready: dict[str, dict[str, Any]] = {}

        def processed() -> bool:
            for content, material_id in materials.items():
                if content not in ready:
                    state = api("GET", f"/materials/{material_id}")
                    if state["status"] in ("ready", "failed"):
                        assert state["status"] == "ready", state
                        ready[content] = state
            return len(ready) == len(materials)

        wait_until(processed, 600, "the lessons to be transcoded", interval=0.5)
        fragments: dict[tuple[str, str], list[tuple[float, int]]] = {}
        worker.process.stop()
        worker = None
        media: list[tuple[str, str, str]] = []
        for content, profile, player in CASES:
            rendition = next(r for r in ready[content]["renditions"] if r["profile"] == profile)
            assert rendition["status"] == "ready", rendition
            media.append((f"{content} {profile} {player}", server.url + rendition["url"], PROFILES[profile]))
            if (content, profile) not in fragments:
                # The fragment index, read from the file as served: where a seek to each time must read.
                copy = folder / f"{content}-{profile}.mp4"
                copy.write_bytes(http.get(server.url + rendition["url"], timeout=60).content)
                fragments[(content, profile)] = mp4.fragment_starts(copy)
        # Every tab opens on a lesson page: the media element lives under the hub's policy.
        page = f"{server.url}/lessons/{lessons['slides']}"
        with chromium("--autoplay-policy=no-user-gesture-required") as browser:
            # The two ways side by side, each rendition plain then through MSE, in the same run.
            results = playback.measure(browser, page, media, mse={m[0] for m in media if m[0].endswith(" mse")})
        found = {case: (result, fragments[case[:2]]) for case, result in zip(CASES, results, strict=True)}
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "playback.json").write_text(
            json.dumps([r.as_dict() for r in results], indent=1, ensure_ascii=False), encoding="utf-8"
        )
        for result in results:
            print(result.summary())
        yield found
    finally:
        if worker is not None:
            worker.process.stop()
        server.process.stop()


@pytest.mark.parametrize(("content", "profile", "player"), CASES, ids=[f"{c}-{p}-{w}" for c, p, w in CASES])
def test_starts_within_budget_and_every_seek_resumes(
    measured: dict[tuple[str, str, str], tuple[playback.Playback, list[tuple[float, int]]]],
    content: str,
    profile: str,
    player: str,
) -> None:
    result, fragments = measured[(content, profile, player)]
    assert result.error is None, result.summary()
    # The lesson page's stream.js took over (and never gave the element back its plain src), or,
    # for the no-JavaScript path, the element played the file itself.
    assert result.stream == ("mse" if player == "mse" else None), result.summary()
    assert result.first_frame_bytes is not None and result.first_frame_bytes <= playback.BUDGET_BYTES, result.summary()
    assert [s.at for s in result.seeks] == list(playback.SEEKS), result.summary()
    failed = [s for s in result.seeks if not s.resumed]
    assert not failed, result.summary()
    for seek in result.seeks:
        assert seek.error is None
    # Every seek within the budget: what the tab received before it played again fits in
    # what 5 s at 256 kbit/s carries (the seconds are recorded; see the module's docstring).
    slow = [s.at for s in result.seeks if s.bytes > playback.BUDGET_BYTES]
    assert not slow, result.summary()
    # No seek reads backwards first: until the audio at each keyframe moved into its fragment
    # (hub.media.fmp4), a seek fetched the fragment, then the one before it, then onwards.
    backwards = [(s.at, s.ranges) for s in result.seeks if any(r < s.ranges[0] for r in s.ranges[1:])]
    assert not backwards, result.summary()
    # Nor before the fragment that holds its target (Chromium asks for whole 32 KiB blocks).
    assert fragments and fragments[0][0] == 0
    early = [
        (s.at, s.ranges)
        for s in result.seeks
        if any(r < max(o for t, o in fragments if t <= s.target + 1e-6) // BLOCK * BLOCK for r in s.ranges)
    ]
    assert not early, result.summary()
    # The first picture (or sound) waits for its fragment's audio run: the first fragment is
    # short whatever the GOP after it (a keyframe at 4 s in a slides rendition, at 2 s in a camera one).
    if profile != "audio" and len(fragments) > 1:
        assert fragments[1][0] <= 4.1, fragments[:3]
