"""`hub upload`, `hub course list/show` as an uploader runs them: the real command, a hub on loopback, a worker.

The command runs as a subprocess with its stdout a pipe, as in a script or a cron job:
one summary line there (or one JSON document with --json), never a progress bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import COURSE
from tests.functional.conftest import LiveServer, Worker, uploader_bearer
from tests.support.media import lesson_video

pytestmark = pytest.mark.slow


class Hub:
    def __init__(self, server: LiveServer, auth: dict[str, str], cache: Path) -> None:
        self.server = server
        self.auth = auth
        self.token = auth["Authorization"].removeprefix("Bearer ")
        self.cache = cache

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`hub ARGS` against this hub, in English unless ``env`` says otherwise."""
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *args, "--url", self.server.url],
            env={
                **os.environ,
                "HUB_TOKEN": self.token,
                "XDG_CACHE_HOME": str(self.cache),
                "LANGUAGE": "",
                "LC_ALL": "C.UTF-8",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=600,
        )

    def lessons(self, course: int) -> list[dict[str, Any]]:
        answer = requests.get(self.server.api(f"/courses/{course}/lessons"), headers=self.auth, timeout=10)
        return answer.json()["items"]  # type: ignore[no-any-return]

    def course(self) -> int:
        answer = requests.post(self.server.api("/courses"), json=COURSE, headers=self.auth, timeout=10)
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])


@pytest.fixture(scope="module")
def hub(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    logs = tmp_path_factory.mktemp("logs")
    # Both start at once (each takes seconds to import the hub), and both stop if either fails to.
    server = LiveServer(module_env, logs, wait=False)
    worker = Worker(module_env, logs / "worker.log", wait=False)
    try:
        server.wait()
        worker.wait()
        yield Hub(server, uploader_bearer(module_env), logs / "cache")
    finally:
        worker.process.stop()
        server.process.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course folder: a lesson folder with a video, and a loose video that is a lesson of its own."""
    root = tmp_path_factory.mktemp("course") / "一元二次方程"
    (root / "01 配方法").mkdir(parents=True)
    lesson_video(root / "01 配方法" / "视频.mp4", seconds=2, size="320x180")
    lesson_video(root / "02 公式法.mp4", seconds=2, size="320x180", rate=15)
    return root


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout.count("\n") == 1, result.stdout + result.stderr
    assert "\r" not in result.stdout + result.stderr  # no progress bar off a terminal
    return result.stdout.strip()


def test_dry_run_then_upload_and_wait_then_a_second_run_does_nothing(hub: Hub, folder: Path) -> None:
    course = hub.course()

    dry = hub.run("upload", str(folder), "--course", str(course), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert _one_line(dry).startswith(
        f"Course {course}: dry run, nothing changed. Would create 2 lessons and upload 2 files"
    )
    assert hub.lessons(course) == []

    done = hub.run("upload", str(folder), "--course", str(course), "--wait", "--timeout", "300", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["counts"]["lessons_created"] == 2 and document["counts"]["files_uploaded"] == 2
    waited = document["wait"]
    assert (waited["ready"], waited["failed"], waited["unsettled"], waited["timed_out"]) == (2, 0, 0, False)
    assert waited["renditions"].get("ready", 0) >= 4 and set(waited["renditions"]) == {"ready"}
    # --wait returned when the hub says so too.
    materials = [m for lesson in hub.lessons(course) for m in lesson["materials"]]
    assert [m["status"] for m in materials] == ["ready", "ready"]
    assert all(r["status"] == "ready" for m in materials for r in m["renditions"])

    again = hub.run("upload", str(folder), "--course", str(course), "--wait")
    assert again.returncode == 0, again.stderr
    line = _one_line(again)
    assert line.startswith(f"Course {course}: nothing to do, all 2 files are already there.")
    assert "2 materials ready, 0 failed" in line
    lessons = hub.lessons(course)
    assert [(lesson["title"], len(lesson["materials"])) for lesson in lessons] == [("01 配方法", 1), ("02 公式法", 1)]


def test_course_list_and_show_for_a_script_and_in_chinese(hub: Hub, folder: Path) -> None:
    course = hub.course()
    assert hub.run("upload", str(folder / "01 配方法"), "--course", str(course), "--wait").returncode == 0

    listed = hub.run("course", "list", "--mine", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = {c["id"]: c for c in json.loads(listed.stdout)["items"]}
    assert mine[course]["status"] == "draft" and mine[course]["lessons"] == 1
    assert _one_line(hub.run("course", "list", "--mine")).startswith(f"{len(mine)} courses: ")

    shown = json.loads(hub.run("course", "show", str(course), "--json").stdout)
    assert [lesson["title"] for lesson in shown["lessons"]] == ["视频"]
    (material,) = shown["lessons"][0]["materials"]
    assert material["status"] == "ready" and {r["profile"] for r in material["renditions"]} >= {"video-240p", "poster"}

    chinese = _one_line(hub.run("course", "show", str(course), LC_ALL="zh_CN.UTF-8"))
    assert chinese.startswith(f"课程 {course}《") and "1 个课时，1 个材料（可用 1 个），" in chinese
    assert "个转码版本（可用" in chinese


def test_a_file_uploaded_twice_to_a_lesson_is_one_material(hub: Hub, folder: Path) -> None:
    course = hub.course()
    lesson = requests.post(
        hub.server.api(f"/courses/{course}/lessons"), json={"title": "配方法"}, headers=hub.auth, timeout=10
    ).json()["id"]
    video = str(folder / "02 公式法.mp4")
    first = hub.run("upload", video, "--lesson", str(lesson))
    assert first.returncode == 0 and "1 files uploaded" in _one_line(first)
    # From another machine (another cache): the hub knows the bytes are there.
    second = hub.run("upload", video, "--lesson", str(lesson), XDG_CACHE_HOME=str(hub.cache.parent / "elsewhere"))
    assert _one_line(second) == f"Lesson {lesson}: nothing to do, all 1 files are already there."
    assert len(hub.lessons(course)[0]["materials"]) == 1


def test_wait_exits_non_zero_with_the_reason_when_a_material_fails(hub: Hub, tmp_path: Path) -> None:
    course = hub.course()
    broken = tmp_path / "坏了" / "录像.mp4"
    broken.parent.mkdir()
    # An MP4's first box, then no video at all: it uploads, and the pipeline refuses it with a reason.
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + os.urandom(20000))
    result = hub.run("upload", str(broken.parent), "--course", str(course), "--wait", "--timeout", "300", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    waited = json.loads(result.stdout)["wait"]
    assert (waited["ready"], waited["failed"], waited["timed_out"]) == (0, 1, False)
    assert waited["materials"][0]["status"] == "failed" and waited["materials"][0]["error"]

    line = _one_line(hub.run("upload", str(broken.parent), "--course", str(course), "--wait"))
    assert "nothing to do" in line and "0 materials ready, 1 failed" in line
