"""`hub upload` against the app served on loopback: resume, retries, folders, end-to-end hash."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from hub.catalog.models import Lesson, Material
from hub.uploads import cli
from tests.unit.uploads.conftest import MiB, School, mp4_bytes


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "BACKOFF", (0,))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _token(school: School) -> str:
    return school.uploader["Authorization"].removeprefix("Bearer ")


def _run(server: str, school: School, *args: str) -> Any:
    return CliRunner().invoke(
        cli.upload, [*args, "--url", server, "--token", _token(school), "--chunk-size", "1", "--quiet"]
    )


def test_upload_a_file_resuming_after_a_dropped_link(
    server: str, school: School, db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "第一课.mp4"
    data = mp4_bytes(3 * MiB + 100, seed=21)
    video.write_bytes(data)
    offsets: list[int] = []
    real_request = cli.TusClient.request

    def flaky(self: cli.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        if method == "PATCH":
            offsets.append(int(headers["Upload-Offset"]))
            if len(offsets) == 3:
                raise cli.Transient("connection reset by peer")
        return real_request(self, method, url, headers, body)

    monkeypatch.setattr(cli.TusClient, "request", flaky)
    failed = _run(server, school, str(video), "--lesson", str(school.lesson_id), "--retries", "0")
    assert failed.exit_code == 1
    assert "failed 1 times" in failed.output
    assert offsets == [0, MiB, 2 * MiB]

    offsets.clear()
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id), "--title", "第一课")
    assert done.exit_code == 0, done.output
    assert offsets == [2 * MiB, 3 * MiB]  # from the server's offset, not from the start
    assert done.output.strip().endswith("第一课 (pending)")
    material = db.scalar(select(Material))
    assert material is not None and material.original_sha256 == hashlib.sha256(data).hexdigest()

    again = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert again.exit_code == 0 and "already material" in again.output


def test_a_retried_chunk_goes_on_from_the_server(
    server: str, school: School, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(mp4_bytes(2 * MiB, seed=22))
    real_request = cli.TusClient.request
    calls: list[str] = []

    def drop_once(self: cli.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        calls.append(method)
        reply = real_request(self, method, url, headers, body)
        if method == "PATCH" and calls.count("PATCH") == 1:
            raise cli.Transient("the reply was lost")  # the server has the chunk; we do not know it
        return reply

    monkeypatch.setattr(cli.TusClient, "request", drop_once)
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert done.exit_code == 0, done.output
    assert calls.count("PATCH") == 3 and "HEAD" in calls  # 409 on the resend, then HEAD, then the rest


def test_upload_a_course_folder(server: str, school: School, db: Session, tmp_path: Path) -> None:
    folder = tmp_path / "一元二次方程"
    (folder / "01 配方法").mkdir(parents=True)
    (folder / "01 配方法" / "视频.mp4").write_bytes(mp4_bytes(5000, seed=1))
    (folder / "01 配方法" / "讲义.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 5000)
    (folder / "02 公式法.mp4").write_bytes(mp4_bytes(6000, seed=2))
    (folder / ".DS_Store").write_bytes(b"junk")
    result = _run(server, school, str(folder), "--course", str(school.course_id))
    assert result.exit_code == 0, result.output
    titles = {lesson.title: sorted(m.title for m in lesson.materials) for lesson in db.scalars(select(Lesson))}
    assert titles == {"配方法": [], "01 配方法": ["视频", "讲义"], "02 公式法": ["02 公式法"]}

    rerun = _run(server, school, str(folder), "--course", str(school.course_id))
    assert rerun.exit_code == 0 and rerun.output.count("already material") == 3


def test_usage_errors(server: str, school: School, tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    assert "needs --lesson" in _run(server, school, str(video)).output
    assert "needs --course" in _run(server, school, str(tmp_path)).output
    assert "is empty" in _run(server, school, str(video), "--lesson", "1").output
    video.write_bytes(mp4_bytes(100))
    bad_token = CliRunner().invoke(cli.upload, [str(video), "--lesson", "1", "--url", server, "--token", "nope"])
    assert bad_token.exit_code == 1 and "unknown or revoked" in bad_token.output


def test_every_chunk_carries_its_own_checksum(
    server: str, school: School, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks after the first are hashed ahead, while the previous one is on its way.
    import base64

    video = tmp_path / "b.mp4"
    data = mp4_bytes(4 * MiB + 3, seed=23)
    video.write_bytes(data)
    real_request = cli.TusClient.request
    sent: list[tuple[int, str]] = []

    def record(self: cli.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        if method == "PATCH":
            sent.append((int(headers["Upload-Offset"]), headers["Upload-Checksum"]))
        return real_request(self, method, url, headers, body)

    monkeypatch.setattr(cli.TusClient, "request", record)
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert done.exit_code == 0, done.output
    expected = [
        (start, "sha256 " + base64.b64encode(hashlib.sha256(data[start : start + MiB]).digest()).decode())
        for start in range(0, len(data), MiB)
    ]
    assert sent == expected  # one PATCH per chunk: no 460 and no resend
