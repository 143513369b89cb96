"""Media processing with real worker processes and real ffmpeg, through the API."""

from __future__ import annotations

import signal
import struct
import zlib
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
from tests.functional.conftest import LiveServer, Worker, get_material, upload_material, wait_until
from tests.support.media import ffmpeg, ffprobe, lesson_video

pytestmark = pytest.mark.slow


def _lesson(server: LiveServer, auth: dict[str, str]) -> int:
    course = requests.post(server.api("/courses"), json=COURSE, headers=auth, timeout=10).json()
    lesson = requests.post(
        server.api(f"/courses/{course['id']}/lessons"), json={"title": "配方法"}, headers=auth, timeout=10
    )
    return int(lesson.json()["id"])


def _wait_settled(server: LiveServer, auth: dict[str, str], material_id: int, timeout: float) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def settled() -> bool:
        state.update(get_material(server, auth, material_id))
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
    material = upload_material(live_server, auth, lesson, video, "长视频")

    first = start_worker()

    seen: dict[str, Any] = {}

    def transcoding() -> bool:
        # Progress from ffmpeg's -progress, as the API shows it while the worker is on it.
        seen.update(get_material(live_server, auth, material["id"]))
        return any(
            r["status"] == "processing" and r["profile"].startswith("video") and 0 < r["progress"] < 100
            for r in seen["renditions"]
        )

    wait_until(transcoding, 120, "a video rendition to show transcoding progress", interval=0.3)
    assert seen["status"] == "processing" and seen["progress"] > 0
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
    by_profile = {r["profile"]: r for r in state["renditions"]}
    assert {"video-360p", "video-240p", "audio", "poster"} <= set(by_profile)
    assert all(r["status"] == "ready" and r["sha256"] for r in by_profile.values()), by_profile
    # Plausible and playable: the redone rendition is a whole 240-line H.264 + AAC file, smaller than the upload.
    small = by_profile["video-240p"]
    assert (small["height"], round(small["duration"])) == (240, 40)
    assert small["bytes"] < material["original"]["bytes"] / 2
    played = tmp_path / "240p.mp4"
    played.write_bytes(requests.get(live_server.url + small["url"], headers=auth, timeout=30).content)
    info = ffprobe(played)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert round(float(info["format"]["duration"])) == 40
    # Every stored byte string is known to the database: nothing orphaned.
    stored = set(app.extensions["hub.storage"].iter_hashes())
    known = set(db.scalars(select(Blob.sha256)))
    assert stored <= known


def _bad_files(folder: Path) -> dict[Path, str]:
    """Issue 3's bad inputs, each with what its readable reason must say."""
    text = folder / "lesson.mp4"
    text.write_text("this is not a video\n" * 100)
    hls = folder / "lesson.m3u8"
    hls.write_text("#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\nhttp://127.0.0.1:1/x.ts\n")
    concat = folder / "lesson.ffconcat"
    concat.write_text("ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://127.0.0.1:1/x.mp4'\n")
    sdp = folder / "lesson.sdp"
    sdp.write_text("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n")
    empty = folder / "empty.mp4"
    empty.touch()
    whole = lesson_video(folder / "whole.mp4", seconds=4)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = folder / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)))
    huge = ffmpeg(
        folder / "huge.mkv",
        *("-f", "lavfi", "-i", "color=c=gray:size=9000x9000:duration=0.04", "-frames:v", "1"),
        *("-c:v", "png", "-pix_fmt", "gray"),
    )
    pdf = folder / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\ngarbage\n%%EOF\n")
    not_media = "not a video, audio, image or PDF"
    return {
        text: not_media,
        hls: not_media,
        concat: not_media,
        sdp: not_media,
        empty: "The file is empty.",
        truncated: "truncated or damaged",
        bomb: "100000x100000",
        huge: "9000x9000",
        pdf: "This PDF cannot be read",
    }


def test_bad_files_fail_readably_and_alone(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    lesson = _lesson(live_server, auth)
    bad = {
        upload_material(live_server, auth, lesson, path, path.name)["id"]: reason
        for path, reason in _bad_files(tmp_path).items()
    }
    # Legitimately unusual, and fine: speech alone, a silent video, half a second.
    good = ffmpeg(tmp_path / "good.wav", "-f", "lavfi", "-i", "sine=d=3")
    silent = ffmpeg(tmp_path / "silent.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:d=2", "-an")
    short = lesson_video(tmp_path / "short.mp4", seconds=0.5, size="160x120")
    good_id = upload_material(live_server, auth, lesson, good, "朗读")["id"]
    silent_id = upload_material(live_server, auth, lesson, silent, "无声")["id"]
    short_id = upload_material(live_server, auth, lesson, short, "半秒")["id"]

    start_worker()
    for material_id, reason in bad.items():
        state = _wait_settled(live_server, auth, material_id, 120)
        assert state["status"] == "failed", state
        assert reason in state["error"], state
        assert state["renditions"] == []  # nothing planned, nothing half-made
    fine = _wait_settled(live_server, auth, good_id, 120)
    assert fine["status"] == "ready", fine
    assert [r["profile"] for r in fine["renditions"]] == ["audio"]
    audio = fine["renditions"][0]
    download = requests.get(live_server.url + audio["url"], headers=auth, timeout=30)
    played = tmp_path / "audio.m4a"
    played.write_bytes(download.content)
    streams = ffprobe(played)["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"]
    assert audio["kbps"] <= 40

    quiet = _wait_settled(live_server, auth, silent_id, 120)
    assert quiet["status"] == "ready", quiet
    assert sorted(r["profile"] for r in quiet["renditions"]) == ["poster", "video-240p", "video-360p"]
    brief = _wait_settled(live_server, auth, short_id, 120)
    assert brief["status"] == "ready", brief
    for rendition in brief["renditions"]:
        # Ready, or skipped where re-encoding half a second would not make it smaller than its source.
        assert rendition["status"] in ("ready", "skipped"), rendition
        if rendition["status"] == "ready" and rendition["width"]:
            assert (rendition["width"], rendition["height"]) == (160, 120)  # never upscaled
