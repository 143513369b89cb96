"""Issue 14's lesson player and media work, through HTTP with a real worker and real ffmpeg.

Chapters found at slide changes, renditions reused for the same bytes, and documents
that do not wait behind a long video.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import jobs
from hub.jobs import Outbox
from hub.media.models import Rendition
from hub.media.profiles import PROFILES
from tests.conftest import COURSE, Accounts
from tests.functional.conftest import LiveServer, Worker, get_material, upload_material, wait_until
from tests.support.media import lesson_video, slides_video

pytestmark = pytest.mark.slow


def _course(server: LiveServer, auth: dict[str, str], *titles: str) -> tuple[int, list[int]]:
    course = requests.post(server.api("/courses"), json=COURSE, headers=auth, timeout=10).json()
    lessons = [
        requests.post(
            server.api(f"/courses/{course['id']}/lessons"), json={"title": title}, headers=auth, timeout=10
        ).json()["id"]
        for title in titles
    ]
    return course["id"], lessons


def _wait_ready(server: LiveServer, auth: dict[str, str], material_id: int, timeout: float = 300) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def settled() -> bool:
        state.update(get_material(server, auth, material_id))
        return state["status"] in ("ready", "failed")

    wait_until(settled, timeout, f"material {material_id} to settle", interval=0.5)
    assert state["status"] == "ready", state
    return state


def test_slides_get_chapters_at_slide_changes_listed_as_seek_links(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    course, (lesson,) = _course(live_server, auth, "配方法")
    # Three slides, changing at 8 s and 17 s, with a camera inset moving in the corner all the
    # while (the probe calls this camera: chapters do not depend on its slides test).
    video = slides_video(tmp_path / "slides.mp4", durations=(8, 9, 7))
    material = upload_material(live_server, auth, lesson, video, "幻灯片课")
    start_worker()
    state = _wait_ready(live_server, auth, material["id"])

    starts = [c["start"] for c in state["chapters"]]
    assert len(starts) == 3 and starts[0] == 0
    assert abs(starts[1] - 8) <= 0.5 and abs(starts[2] - 17) <= 0.5, starts
    assert (
        requests.get(
            live_server.api(f"/materials/{material['id']}"), headers={**auth, "Accept-Language": "en"}, timeout=10
        ).json()["chapters"][2]["title"]
        == "Slide 3"
    )

    # The lesson page lists them under the player as plain links that start it there.
    requests.post(live_server.api(f"/courses/{course}/publish"), headers=auth, timeout=10).raise_for_status()
    page = requests.get(f"{live_server.url}/lessons/{lesson}", headers={"Accept-Language": "zh"}, timeout=10).text
    links = re.findall(r'<a href="([^"]+)" data-start="([0-9.]+)">([^<]+)</a>', page)
    assert [title for _, _, title in links] == ["第 1 页", "第 2 页", "第 3 页"]
    href = links[2][0].replace("&amp;", "&")
    assert f"m={material['id']}" in href and f"t={int(starts[2])}" in href
    # Followed without JavaScript, the player's sources carry the media fragment #t=.
    seeked = requests.get(live_server.url + href.split("#")[0], timeout=10).text
    assert re.search(rf'<source src="/api/v1/blobs/\w+\?m=\d+&amp;use=play#t={int(starts[2])}"', seeked)
    assert "#t=" not in page


def test_camera_video_gets_no_chapters(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    _, (lesson,) = _course(live_server, auth, "实验")
    material = upload_material(live_server, auth, lesson, lesson_video(tmp_path / "camera.mp4", seconds=12), "实验课")
    start_worker()
    assert _wait_ready(live_server, auth, material["id"])["chapters"] == []


def test_the_same_original_is_transcoded_once(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, db: Session, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    _, (first_lesson, second_lesson) = _course(live_server, auth, "第一课", "第二课")
    video = slides_video(tmp_path / "slides.mp4", durations=(8, 9, 7), inset="smptebars")
    first = upload_material(live_server, auth, first_lesson, video, "幻灯片")
    worker = start_worker()
    done = _wait_ready(live_server, auth, first["id"])

    # The same bytes again, in another lesson: ready with the same renditions and chapters,
    # and the worker transcoded nothing for it.
    second = upload_material(live_server, auth, second_lesson, video, "同一个文件")
    again = _wait_ready(live_server, auth, second["id"])

    def made(state: dict[str, Any]) -> dict[str, tuple[str, Any, Any]]:
        return {r["profile"]: (r["status"], r["sha256"], r["ssim"]) for r in state["renditions"]}

    assert made(again) == made(done) and len(made(done)) == 4
    assert again["chapters"] == done["chapters"] and len(done["chapters"]) == 3
    db.expire_all()
    reused = db.scalars(select(Rendition).where(Rendition.material_id == second["id"])).all()
    assert {r.fingerprint for r in reused} == {PROFILES[r.profile].fingerprint for r in reused}
    # No build task was ever queued for the second material: nothing transcoded twice.
    builds = db.scalars(select(Outbox).where(Outbox.task.in_((jobs.BUILD_RENDITION, jobs.BUILD_DOCUMENT_RENDITION))))
    built = {row.args[0] for row in builds}
    assert built and not built & {r.id for r in reused}
    assert worker.process.popen.poll() is None


def test_a_pdf_uploaded_after_a_long_video_is_ready_first(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    _, (lesson,) = _course(live_server, auth, "配方法")
    video = upload_material(live_server, auth, lesson, lesson_video(tmp_path / "long.mp4", seconds=60), "长视频")
    pdf_path = tmp_path / "handout.pdf"
    pdf_path.write_bytes(_pdf())
    pdf = upload_material(live_server, auth, lesson, pdf_path, "讲义")
    start_worker()
    ready_at: dict[int, float] = {}

    def both_ready() -> bool:
        for material in (video, pdf):
            if material["id"] not in ready_at and get_material(live_server, auth, material["id"])["status"] == "ready":
                ready_at[material["id"]] = time.monotonic()
        return len(ready_at) == 2

    wait_until(both_ready, 600, "the video and the PDF to be ready", interval=0.5)
    assert ready_at[pdf["id"]] < ready_at[video["id"]]


def test_a_documents_worker_makes_a_pdf_ready_while_a_video_transcodes(
    live_server: LiveServer, start_worker: Callable[..., Worker], make: Accounts, tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    _, (lesson,) = _course(live_server, auth, "配方法")
    video = upload_material(live_server, auth, lesson, lesson_video(tmp_path / "long.mp4", seconds=90), "长视频")
    start_worker()  # every queue, one process: busy with the video from now on
    start_worker(queues="documents")  # `hub worker --queues documents`: one process kept for PDFs and images

    def transcoding() -> bool:
        return any(r["status"] == "processing" for r in get_material(live_server, auth, video["id"])["renditions"])

    wait_until(transcoding, 120, "the video's first rendition to be under way", interval=0.3)
    pdf_path = tmp_path / "handout.pdf"
    pdf_path.write_bytes(_pdf())
    pdf = upload_material(live_server, auth, lesson, pdf_path, "讲义")
    _wait_ready(live_server, auth, pdf["id"])
    assert get_material(live_server, auth, video["id"])["status"] == "processing"  # still on the video


def _pdf() -> bytes:
    """A small one-page PDF (qpdf and Ghostscript read it)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
    ]
    stream = b"0 0 1 rg 20 20 160 160 re f\n" * 200
    objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
