"""Media processing with real worker processes and real ffmpeg, through the API."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.media.models import Blob, Rendition
from tests.conftest import COURSE, Accounts
from tests.functional.conftest import LiveServer, Worker, wait_until
from tests.support.media import ffmpeg, ffprobe, lesson_video

pytestmark = pytest.mark.slow


def _lesson(server: LiveServer, auth: dict[str, str]) -> int:
    course = requests.post(server.api("/courses"), json=COURSE, headers=auth, timeout=10).json()
    lesson = requests.post(
        server.api(f"/courses/{course['id']}/lessons"), json={"title": "配方法"}, headers=auth, timeout=10
    )
    return int(lesson.json()["id"])


def _upload(server: LiveServer, auth: dict[str, str], lesson: int, path: Path, title: str) -> dict[str, Any]:
    with path.open("rb") as f:
        response = requests.post(
            server.api(f"/lessons/{lesson}/materials"),
            headers=auth,
            data={"title": title},
            files={"file": (path.name, f)},
            timeout=60,
        )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _material(server: LiveServer, auth: dict[str, str], material_id: int) -> dict[str, Any]:
    return requests.get(server.api(f"/materials/{material_id}"), headers=auth, timeout=10).json()  # type: ignore[no-any-return]


def _wait_settled(server: LiveServer, auth: dict[str, str], material_id: int, timeout: float) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def settled() -> bool:
        state.update(_material(server, auth, material_id))
        return state["status"] in ("ready", "failed")

    wait_until(settled, timeout, f"material {material_id} to settle", interval=1)
    return state


def test_worker_killed_mid_transcode_is_redone_once(
    live_server: LiveServer,
    start_worker: Callable[..., Worker],
    make: Accounts,
    db: Session,
    app: Flask,
    tmp_path: Path,
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    lesson = _lesson(live_server, auth)
    video = lesson_video(tmp_path / "long.mp4", seconds=40)
    material = _upload(live_server, auth, lesson, video, "长视频")

    first = start_worker()

    def transcoding() -> bool:
        renditions = _material(live_server, auth, material["id"])["renditions"]
        return any(r["status"] == "processing" and r["profile"].startswith("video") for r in renditions)

    wait_until(transcoding, 120, "a video rendition to start transcoding", interval=0.3)
    first.process.kill(signal.SIGKILL)  # the whole worker, main process included: nothing acks or requeues
    first.process.stop()

    # A new worker takes over once the dead one's lease runs out (the periodic requeue).
    start_worker(beat=True, HUB_MEDIA_LEASE="3")
    state = _wait_settled(live_server, auth, material["id"], 300)
    assert state["status"] == "ready", state
    db.expire_all()
    rows = db.execute(
        select(Rendition.profile, func.count())
        .where(Rendition.material_id == material["id"])
        .group_by(Rendition.profile)
    ).all()
    assert rows and all(n == 1 for _, n in rows)
    # Every stored byte string is known to the database: nothing orphaned.
    stored = set(app.extensions["hub.storage"].iter_hashes())
    known = set(db.scalars(select(Blob.sha256)))
    assert stored <= known


def test_bad_files_fail_readably_and_alone(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    lesson = _lesson(live_server, auth)
    text = tmp_path / "lesson.mp4"
    text.write_text("this is not a video\n" * 100)
    playlist = tmp_path / "evil.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\nhttp://127.0.0.1:1/x.ts\n")
    good = tmp_path / "good.wav"
    ffmpeg(good, "-f", "lavfi", "-i", "sine=d=3")
    bad_ids = [_upload(live_server, auth, lesson, p, p.name)["id"] for p in (text, playlist)]
    good_id = _upload(live_server, auth, lesson, good, "朗读")["id"]

    start_worker()
    for material_id in bad_ids:
        state = _wait_settled(live_server, auth, material_id, 120)
        assert state["status"] == "failed"
        assert "not a video, audio, image or PDF" in state["error"]
    fine = _wait_settled(live_server, auth, good_id, 120)
    assert fine["status"] == "ready", fine
    audio = next(r for r in fine["renditions"] if r["profile"] == "audio")
    download = requests.get(live_server.url + audio["url"], headers=auth, timeout=30)
    played = tmp_path / "audio.m4a"
    played.write_bytes(download.content)
    streams = ffprobe(played)["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"]
    assert audio["kbps"] <= 40
