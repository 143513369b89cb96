"""`hub upload` against the app served on loopback: resume, retries, folders, end-to-end hash."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from hub.catalog.models import Lesson, Material
from hub.uploads import cli, client, terminal
from hub.uploads.course_cli import course_cli
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
    monkeypatch.setattr(client, "BACKOFF", (0,))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LANGUAGE", raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")  # English, whatever the developer's terminal speaks


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
    real_request = client.TusClient.request

    def flaky(self: client.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        if method == "PATCH":
            offsets.append(int(headers["Upload-Offset"]))
            if len(offsets) == 3:
                raise client.Transient("connection reset by peer")
        return real_request(self, method, url, headers, body)

    monkeypatch.setattr(client.TusClient, "request", flaky)
    failed = _run(server, school, str(video), "--lesson", str(school.lesson_id), "--retries", "0")
    assert failed.exit_code == 1
    assert "failed 1 times" in failed.output
    assert offsets == [0, MiB, 2 * MiB]

    offsets.clear()
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id), "--title", "第一课")
    assert done.exit_code == 0, done.output
    assert offsets == [2 * MiB, 3 * MiB]  # from the server's offset, not from the start
    assert done.output.strip().endswith(
        f"Lesson {school.lesson_id}: 0 lessons created, 1 already there; 1 files uploaded (3.0 MB), 0 skipped."
    )
    material = db.scalar(select(Material))
    assert material is not None and material.original_sha256 == hashlib.sha256(data).hexdigest()
    assert material.title == "第一课"

    # The hub, not a local file, knows it is there: a run with another cache skips it too.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-cache"))
    again = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert again.exit_code == 0 and "nothing to do, all 1 files are already there" in again.output
    assert db.scalars(select(Material)).all() == [material]


def test_a_retried_chunk_goes_on_from_the_server(
    server: str, school: School, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(mp4_bytes(2 * MiB, seed=22))
    real_request = client.TusClient.request
    calls: list[str] = []

    def drop_once(self: client.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        calls.append(method)
        reply = real_request(self, method, url, headers, body)
        if method == "PATCH" and calls.count("PATCH") == 1:
            raise client.Transient("the reply was lost")  # the server has the chunk; we do not know it
        return reply

    monkeypatch.setattr(client.TusClient, "request", drop_once)
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
    assert result.output.strip().endswith("2 lessons created, 0 already there; 3 files uploaded (15.6 KB), 0 skipped.")

    rerun = _run(server, school, str(folder), "--course", str(school.course_id))
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.strip() == f"Course {school.course_id}: nothing to do, all 3 files are already there."
    assert db.scalar(select(func.count()).select_from(Lesson)) == 3


def test_usage_errors(server: str, school: School, tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    assert "needs --lesson" in _run(server, school, str(video)).output
    assert "needs --course" in _run(server, school, str(tmp_path)).output
    assert "is empty" in _run(server, school, str(video), "--lesson", "1").output
    video.write_bytes(mp4_bytes(100))
    bad_token = CliRunner().invoke(cli.upload, [str(video), "--lesson", "1", "--url", server, "--token", "nope"])
    assert bad_token.exit_code == 1 and "unknown or revoked" in bad_token.output


def test_the_file_sha256_is_declared_and_chunks_carry_no_checksum(
    server: str, school: School, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    video = tmp_path / "b.mp4"
    data = mp4_bytes(4 * MiB + 3, seed=23)
    video.write_bytes(data)
    real_request = client.TusClient.request
    sent: list[tuple[str, Any]] = []

    def record(self: client.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        if method == "POST" and url.endswith("/uploads/"):
            sent.append(("POST", headers["Upload-Metadata"]))
        if method == "PATCH":
            sent.append(("PATCH", (int(headers["Upload-Offset"]), headers.get("Upload-Checksum"))))
        return real_request(self, method, url, headers, body)

    monkeypatch.setattr(client.TusClient, "request", record)
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert done.exit_code == 0, done.output
    sha256 = hashlib.sha256(data).hexdigest()
    assert sent[0] == (
        "POST",
        f"filename {base64.b64encode(b'b.mp4').decode()},filetype "
        f"{base64.b64encode(b'video/mp4').decode()},sha256 {base64.b64encode(sha256.encode()).decode()}",
    )
    # The server checks the whole file when the last byte arrives: one hash per byte there.
    assert sent[1:] == [("PATCH", (start, None)) for start in range(0, len(data), MiB)]


def test_chunks_leave_with_sendfile_and_arrive_byte_identical(
    server: str, school: School, db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    video = tmp_path / "c.mp4"
    data = mp4_bytes(2 * MiB + 5, seed=24)
    video.write_bytes(data)
    real_sendfile = socket.socket.sendfile
    sent: list[tuple[int | None, int | None]] = []

    def spy(sock: socket.socket, file: Any, offset: int = 0, count: int | None = None) -> int:
        sent.append((offset, count))
        return real_sendfile(sock, file, offset, count)

    monkeypatch.setattr(socket.socket, "sendfile", spy)
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert done.exit_code == 0, done.output
    # Every byte of the file went by sendfile, a MiB at a time, none twice.
    assert sent == [(start, min(MiB, len(data) - start)) for start in range(0, len(data), MiB)]
    material = db.scalars(select(Material).order_by(Material.id.desc())).first()
    assert material is not None and material.original_sha256 == hashlib.sha256(data).hexdigest()


def test_a_file_that_shrinks_while_it_is_sent_stops_the_upload(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "d.mp4"
    path.write_bytes(b"x" * 1000)
    left, right = socket.socketpair()
    with left, right, path.open("rb") as file:
        region = client._Region(file, 0, 5000, lambda _position: None)
        with pytest.raises(client.UploadError, match="shorter"):
            region.send_to(left)
        assert right.recv(5000) == b"x" * 1000


def test_an_upload_created_without_a_declared_sha256_resumes_with_chunk_checksums(
    server: str, school: School, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As an older `hub upload` left it: created with no sha256, one chunk sent, URL in the state file.
    import base64

    video = tmp_path / "c.mp4"
    data = mp4_bytes(3 * MiB, seed=24)
    video.write_bytes(data)
    old = client.TusClient(server, _token(school), chunk_size=MiB)
    url = old.create(len(data), "c.mp4", "video/mp4")
    with video.open("rb") as file:
        old._send_chunk(url, file, 0, MiB, hashlib.sha256(data[:MiB]).digest(), 0, lambda _n: None)
    old.close()
    state = cli.State.default()
    state.set(cli._file_key(old, f"lesson:{school.lesson_id}", video), url)
    real_request = client.TusClient.request
    checksums: list[tuple[int, str | None]] = []

    def record(self: client.TusClient, method: str, url: str, headers: Any = None, body: Any = None) -> Any:
        if method == "PATCH":
            checksums.append((int(headers["Upload-Offset"]), headers.get("Upload-Checksum")))
        return real_request(self, method, url, headers, body)

    monkeypatch.setattr(client.TusClient, "request", record)
    done = _run(server, school, str(video), "--lesson", str(school.lesson_id))
    assert done.exit_code == 0, done.output
    assert checksums == [
        (start, "sha256 " + base64.b64encode(hashlib.sha256(data[start : start + MiB]).digest()).decode())
        for start in (MiB, 2 * MiB)
    ]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "一元二次方程"
    (folder / "配方法").mkdir(parents=True)
    (folder / "配方法" / "视频.mp4").write_bytes(mp4_bytes(5000, seed=1))
    (folder / "02 公式法.mp4").write_bytes(mp4_bytes(6000, seed=2))
    return folder


def test_a_folder_fills_the_existing_lesson_of_the_same_title(
    server: str, school: School, db: Session, tmp_path: Path
) -> None:
    """The fixture's course has a lesson 配方法: the folder 配方法 goes into it, not into a second one."""
    folder = _folder(tmp_path)
    dry = _run(server, school, str(folder), "--course", str(school.course_id), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and plan["counts"] == {
        "lessons_created": 1,
        "lessons_existing": 1,
        "files_uploaded": 2,
        "files_skipped": 0,
        "files_empty": 0,
        "bytes_uploaded": 11000,
    }
    assert [(lesson["title"], lesson["id"], lesson["action"]) for lesson in plan["lessons"]] == [
        ("02 公式法", None, "create"),
        ("配方法", school.lesson_id, "exists"),
    ]
    assert [f["action"] for lesson in plan["lessons"] for f in lesson["files"]] == ["upload", "upload"]
    assert db.scalar(select(func.count()).select_from(Lesson)) == 1
    assert db.scalar(select(func.count()).select_from(Material)) == 0  # a dry run changes nothing

    done = json.loads(_run(server, school, str(folder), "--course", str(school.course_id), "--json").stdout)
    assert [lesson["action"] for lesson in done["lessons"]] == ["created", "exists"]
    assert [f["action"] for lesson in done["lessons"] for f in lesson["files"]] == ["uploaded", "uploaded"]
    db.expire_all()
    lessons = {lesson.title: [m.title for m in lesson.materials] for lesson in db.scalars(select(Lesson))}
    assert lessons == {"配方法": ["视频"], "02 公式法": ["02 公式法"]}

    # A new file in the folder: only it goes; the run says what it skipped.
    (folder / "配方法" / "讲义.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 5000)
    again = json.loads(_run(server, school, str(folder), "--course", str(school.course_id), "--json").stdout)
    files = {f["title"]: (f["action"], f["material"]["id"] if f["material"] else None) for f in _files(again)}
    assert files["讲义"][0] == "uploaded" and files["视频"][0] == files["02 公式法"][0] == "skipped"
    assert again["counts"]["lessons_created"] == 0 and again["counts"]["files_uploaded"] == 1


def test_a_folder_places_its_lessons_in_the_courses_textbook(
    server: str, school: School, db: Session, tmp_path: Path
) -> None:
    """The course follows the shipped 人教版 数学 九年级上册: 配方法 and 02 公式法 go on their 课时."""
    import hub.textbooks
    from hub.catalog import services as catalog
    from hub.catalog.models import Course
    from hub.textbooks import services as textbooks

    shipped = Path(hub.textbooks.__file__).parent / "data" / "renjiao-math-9-1.json"
    book = textbooks.import_file(db, shipped.name, shipped.read_bytes()).textbook
    course = db.get(Course, school.course_id)
    assert course is not None
    catalog.follow_textbook(db, course, book.id)
    db.commit()
    folder = _folder(tmp_path)
    dry = json.loads(_run(server, school, str(folder), "--course", str(school.course_id), "--dry-run", "--json").stdout)
    placed = {lesson["title"]: (lesson["node"]["key"], lesson["node_set"]) for lesson in dry["lessons"]}
    assert placed == {"02 公式法": ("21.2.2", True), "配方法": ("21.2.1", True)}
    db.expire_all()
    assert db.scalars(select(Lesson.textbook_node_id)).all() == [None]  # a dry run changes nothing

    done = _run(server, school, str(folder), "--course", str(school.course_id), "--json")
    assert done.exit_code == 0, done.output
    db.expire_all()
    nodes = {lesson.title: lesson.textbook_node.key for lesson in db.scalars(select(Lesson))}
    assert nodes == {"配方法": "21.2.1", "02 公式法": "21.2.2"}
    # Again: already placed, nothing to do.
    again = json.loads(_run(server, school, str(folder), "--course", str(school.course_id), "--json").stdout)
    assert [(lesson["node"]["key"], lesson["node_set"]) for lesson in again["lessons"]] == [
        ("21.2.2", False),
        ("21.2.1", False),
    ]


def _files(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for lesson in document["lessons"] for f in lesson["files"]]


def test_course_list_and_show(server: str, school: School, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert _run(server, school, str(folder), "--course", str(school.course_id)).exit_code == 0
    token = _token(school)
    runner = CliRunner()
    mine = runner.invoke(course_cli, ["list", "--mine", "--json", "--url", server, "--token", token])
    assert mine.exit_code == 0, mine.output
    listed = json.loads(mine.stdout)
    assert [(c["id"], c["status"], c["lessons"]) for c in listed["items"]] == [(school.course_id, "draft", 2)]
    # Off a terminal, one line; anonymous sees no drafts; --mine without a token is a usage error.
    line = runner.invoke(course_cli, ["list", "--mine", "--url", server, "--token", token])
    assert line.stdout.count("\n") == 1 and line.stdout.startswith(f"1 courses: {school.course_id} ")
    assert runner.invoke(course_cli, ["list", "--url", server]).stdout == "0 courses\n"
    refused = runner.invoke(course_cli, ["list", "--mine", "--url", server], env={"HUB_TOKEN": ""})
    assert refused.exit_code == 2 and "--mine needs --token" in refused.output

    shown = runner.invoke(course_cli, ["show", str(school.course_id), "--json", "--url", server, "--token", token])
    document = json.loads(shown.stdout)
    assert document["course"]["id"] == school.course_id
    assert [lesson["title"] for lesson in document["lessons"]] == ["配方法", "02 公式法"]
    assert [m["status"] for lesson in document["lessons"] for m in lesson["materials"]] == ["pending", "pending"]
    summary = runner.invoke(course_cli, ["show", str(school.course_id), "--url", server, "--token", token]).stdout
    assert summary.count("\n") == 1 and summary.endswith("2 lessons, 2 materials (2 waiting)\n")
    # Another school's draft does not exist for them, in the hub's words (in the user's language once the
    # API answers by Accept-Language: the client sends it).
    hidden = runner.invoke(
        course_cli,
        ["show", str(school.course_id), "--url", server, "--token", school.other["Authorization"][7:]],
        env={"LC_ALL": "zh_CN.UTF-8"},
    )
    assert hidden.exit_code == 1
    assert f"没有编号为 {school.course_id} 的课程" in hidden.output or f"no course {school.course_id}" in hidden.output


def test_messages_follow_the_locale(server: str, school: School, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    args = [str(folder), "--course", str(school.course_id), "--url", server, "--token", _token(school), "--dry-run"]
    chinese = CliRunner(env={"LC_ALL": "zh_CN.UTF-8"}).invoke(cli.upload, args)
    assert chinese.exit_code == 0, chinese.output
    assert chinese.stdout.startswith(f"课程 {school.course_id}：试运行，未做任何更改。将新建 1 个课时并上传 2 个文件")
    english = CliRunner(env={"LC_ALL": "", "LANGUAGE": "en_GB:zh_CN"}).invoke(cli.upload, args)
    assert english.stdout.startswith(f"Course {school.course_id}: dry run, nothing changed.")
    assert terminal.language({"LANG": "zh_TW.UTF-8"}) == "zh" and terminal.language({}) == "en"
    assert terminal.language({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}) == "en"  # LC_ALL wins, as in gettext


def _in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `hub ARGS` with a pseudo-terminal as stdout and stderr, as an uploader types it; (status, screen)."""
    import os
    import pty
    import subprocess
    import sys

    main_fd, child_fd = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *args],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, **env},
    )
    os.close(child_fd)
    screen = b""
    while True:  # read as it comes: a full pty buffer would block the child
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        screen += chunk
    os.close(main_fd)
    return process.wait(timeout=60), screen.decode()


def test_on_a_terminal_each_lesson_and_file_has_a_line_and_a_bar(server: str, school: School, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "LANGUAGE": "", "LC_ALL": "C.UTF-8"}
    args = ["upload", str(folder), "--course", str(school.course_id), "--url", server, "--token", _token(school)]
    status, screen = _in_a_terminal(args, env)
    assert status == 0, screen
    lines = screen.replace("\r\n", "\n").split("\n")
    assert any(line.startswith("Lesson “02 公式法”: created (lesson ") for line in lines), screen
    assert f"Lesson “配方法”: already there (lesson {school.lesson_id})" in lines
    assert any(line.startswith("  视频.mp4: uploaded (material ") for line in lines)
    assert "100%" in screen  # the progress bar (on stderr, here the same terminal)
    assert lines[-2].startswith(f"Course {school.course_id}: 1 lessons created, 1 already there; 2 files uploaded")

    (folder / "配方法" / "空.pdf").write_bytes(b"")
    status, screen = _in_a_terminal([*args, "--dry-run"], env)
    assert status == 0 and "  视频.mp4: skipped, already material " in screen and "(waiting)" in screen
    assert "  空.pdf: skipped, the file is empty" in screen
    assert "nothing changed. Would create 0 lessons and upload 0 files" in screen
    assert "2 files are already there. 1 empty files left out." in screen


def test_the_hub_is_asked_in_the_users_language(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, str]] = []

    class Connection:
        def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> None:
            sent.append(headers)

        def getresponse(self) -> Any:
            raise OSError("not a real connection")

        def close(self) -> None:
            pass

    for lang, token, expected in (("zh_CN.UTF-8", "t", "zh"), ("en_US.UTF-8", "", "en")):
        monkeypatch.setenv("LC_ALL", lang)
        tus = client.TusClient("http://127.0.0.1:9", token)
        tus._connection = Connection()  # type: ignore[assignment]
        with pytest.raises(client.Transient):
            tus.request("GET", "/api/v1/courses")
        assert sent[-1]["Accept-Language"] == expected
        assert ("Authorization" in sent[-1]) == bool(token)  # no token: an anonymous reader, no empty Bearer


def test_wait_gives_up_at_the_timeout_with_status_3(server: str, school: School, tmp_path: Path) -> None:
    """No worker runs here: the material stays waiting, and the command ends when --timeout says."""
    video = tmp_path / "a.mp4"
    video.write_bytes(mp4_bytes(5000, seed=3))
    result = _run(server, school, str(video), "--lesson", str(school.lesson_id), "--wait", "--timeout", "1")
    assert result.exit_code == 3, result.output
    assert result.stdout.count("\n") == 1
    assert result.stdout.strip().endswith("(0 renditions ready) in 1 s. Stopped waiting: 1 still processing.")
