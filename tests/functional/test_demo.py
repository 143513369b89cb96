"""`hub demo` as a person runs it: a fresh data directory, real web server and worker, twice."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import requests

from tests.functional.conftest import HUB, Process, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _run_demo(env: dict[str, str], log: Path, port: int) -> tuple[Process, str]:
    demo = Process([*HUB, "demo", "--port", str(port)], env, log)

    def serving() -> bool:
        if demo.popen.poll() is not None:
            pytest.fail(f"hub demo exited:\n{demo.output()}")
        return re.search(r"^open (http://\S+)$", demo.output(), re.MULTILINE) is not None

    wait_until(serving, 120, "hub demo to print its URL")
    url = re.findall(r"^open (http://\S+)$", demo.output(), re.MULTILINE)[-1]
    wait_until(lambda: _up(url), 30, "the demo's web server")
    return demo, url


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.slow
def test_demo_serves_the_seeded_catalog_and_a_second_start_adds_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"  # nothing in it: no database, no index
    # No ffmpeg on PATH: the demo seeds the catalog without generated media, so the
    # worker is not busy transcoding on a shared test machine. Everything else is real.
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING", "PATH": str(empty_bin), "PYTHONPATH": str(ROOT)}
    port = free_port()

    demo, url = _run_demo(env, tmp_path / "demo-1.log", port)
    try:
        assert url == f"http://127.0.0.1:{port}/"
        first = demo.output()
        assert "ffmpeg" in first  # it says why there are no media files
        home = requests.get(url, timeout=10)
        assert "数学" in home.text and "/courses?subject=" in home.text
        courses = requests.get(f"{url}api/v1/courses", params={"per_page": 100}, timeout=10).json()
        assert courses["total"] >= 20  # published ones (drafts are not listed)
        assert {c["language"] for c in courses["items"]} == {"zh", "en"}
        assert len({c["school"]["id"] for c in courses["items"]}) >= 3
        # The worker indexed the seeded courses: search finds them.
        wait_until(
            lambda: requests.get(f"{url}api/v1/search", params={"q": "古诗"}, timeout=10).json()["total"] > 0,
            90,
            "the demo's worker to index the catalog",
            interval=1,
        )
        seeded = re.search(r"^seeding… (.*)$", first, re.MULTILINE)
        assert seeded and "new)" in seeded.group(1) and "(0 new)" not in seeded.group(1)
    finally:
        demo.kill(signal.SIGTERM)
        demo.popen.wait(timeout=30)
        demo.stop()

    again, _ = _run_demo(env, tmp_path / "demo-2.log", port)
    try:
        second = re.search(r"^seeding… (.*)$", again.output(), re.MULTILINE)
        assert second and second.group(1).endswith("(0 new)"), again.output()
        total = requests.get(f"{url}api/v1/courses", timeout=10).json()["total"]
        assert total == courses["total"]
    finally:
        again.kill(signal.SIGTERM)
        again.popen.wait(timeout=30)
        again.stop()
