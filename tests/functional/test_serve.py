"""`hub serve` in several processes: all of them serve, a dead one is replaced, and the page cache
of each one follows a change committed by another process at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy.orm import Session

from hub.catalog import services
from hub.catalog.models import Course
from hub.catalog.schemas import CourseCreate, LessonCreate
from tests.conftest import Accounts
from tests.functional.conftest import HUB, Process, free_port, wait_until


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _server_processes(process: Process) -> list[int]:
    # `python -m hub.cli serve` is the parent; its children are the servers.
    return [pid for pid in _children(process.popen.pid) if b"hub.serving" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1/openapi.json", timeout=5).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


@pytest.mark.slow
def test_several_processes_serve_replace_a_dead_one_and_follow_changes(
    app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path, course_body: dict[str, str]
) -> None:
    uploader = make.user("up@x.cn", make.school(), "uploader")
    course = services.create_course(db, uploader, CourseCreate(**course_body))  # type: ignore[arg-type]
    services.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    services.publish_course(db, uploader, course.id)
    db.commit()
    port = free_port()
    server = Process([*HUB, "serve", "--port", str(port), "--processes", "2"], hub_env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), 60, "the web server")
        wait_until(lambda: len(_server_processes(server)) == 2, 30, "two server processes")
        first = _server_processes(server)
        page = f"{url}/courses/{course.id}"
        # Enough requests on new connections that both processes have answered (and cached) the page.
        for _ in range(40):
            response = requests.get(page, timeout=10)
            assert response.status_code == 200 and "一元二次方程" in response.text
        assert any("Age" in requests.get(page, timeout=10).headers for _ in range(10))

        # Another process (this test) commits a change: no server process serves the old page after it.
        row = db.get(Course, course.id)
        assert row is not None
        row.title = "一元二次方程（第二版）"
        db.commit()
        for _ in range(20):
            assert "一元二次方程（第二版）" in requests.get(page, timeout=10).text

        # A server process that dies is replaced, and the others serve meanwhile.
        os.kill(first[0], signal.SIGKILL)
        assert requests.get(page, timeout=10).status_code == 200
        wait_until(lambda: len(set(_server_processes(server)) - set(first)) == 1, 30, "a new server process")
        wait_until(lambda: _up(url), 30, "the web server")
        for _ in range(10):
            assert requests.get(page, timeout=10).status_code == 200
    finally:
        children = _server_processes(server) if server.popen.poll() is None else []
        server.popen.send_signal(signal.SIGTERM)  # the parent alone: it stops its children
        server.popen.wait(timeout=20)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        server.stop()
    assert not left, "server processes outlived their parent's SIGTERM"
