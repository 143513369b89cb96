"""The API over real HTTP against the app served by waitress, with a real worker process."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session

from tests.conftest import COURSE, Accounts
from tests.functional.conftest import LiveServer, Worker, wait_until
from tests.support.media import lesson_video


def test_catalog_round_trip(live_server: LiveServer, make: Accounts) -> None:
    school = make.school()
    auth = make.bearer(make.user("up@x.cn", school, "uploader"))
    http = requests.Session()

    created = http.post(live_server.api("/courses"), json=COURSE, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    course = created.json()
    lesson = http.post(
        live_server.api(f"/courses/{course['id']}/lessons"),
        json={"title": "配方法", "unit": "第二十一章"},
        headers=auth,
        timeout=10,
    )
    assert lesson.status_code == 201
    assert (
        http.post(live_server.api(f"/courses/{course['id']}/publish"), headers=auth, timeout=10).json()["status"]
        == "published"
    )

    listing = http.get(live_server.api("/courses"), params={"subject": "math", "grade": 9}, timeout=10).json()
    assert listing["total"] == 1
    assert listing["items"][0]["title"] == "一元二次方程"
    # Chinese stays readable in JSON (not \\u escapes): smaller over slow links too.
    assert "一元二次方程".encode() in http.get(live_server.api(f"/courses/{course['id']}"), timeout=10).content

    bad = http.post(
        live_server.api("/courses"), data=b"{nope", headers={**auth, "Content-Type": "application/json"}, timeout=10
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"
    page = http.get(f"{live_server.url}/courses/{course['id']}", timeout=10)
    assert page.status_code == 200 and "配方法" in page.text


@pytest.mark.slow
def test_material_job_round_trip(
    live_server: LiveServer, start_worker: Callable[[], Worker], make: Accounts, db: Session, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    course = requests.post(live_server.api("/courses"), json=COURSE, headers=auth, timeout=10).json()
    lesson = requests.post(
        live_server.api(f"/courses/{course['id']}/lessons"), json={"title": "配方法"}, headers=auth, timeout=10
    ).json()
    video = lesson_video(tmp_path / "lesson.mp4", size="320x240", rate=15)
    with video.open("rb") as f:
        upload = requests.post(
            live_server.api(f"/lessons/{lesson['id']}/materials"),
            headers=auth,
            data={"title": "第一课"},
            files={"file": ("第一课.mp4", f, "video/mp4")},
            timeout=30,
        )
    assert upload.status_code == 201, upload.text
    material = upload.json()
    assert material["status"] == "pending"
    assert material["original"]["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()

    start_worker()
    state: dict[str, Any] = {}

    def settled() -> bool:
        state.update(requests.get(live_server.api(f"/materials/{material['id']}"), headers=auth, timeout=10).json())
        return state["status"] in ("ready", "failed")

    wait_until(settled, 180, "the worker to process the material", interval=1)
    assert state["status"] == "ready", state
    assert state["progress"] == 100
    profiles = {r["profile"]: r for r in state["renditions"]}
    assert {"video-360p", "video-240p", "audio", "poster"} <= set(profiles)
    small = profiles["video-240p"]
    assert small["status"] == "ready" and small["height"] <= 240 and small["bytes"] > 0
    download = requests.get(live_server.url + small["url"], headers=auth, timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == small["sha256"]
