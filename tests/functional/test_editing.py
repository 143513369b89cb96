"""Editing over HTTP with a real worker: removed files go once nothing uses them, and search follows every change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.conftest import COURSE
from tests.functional.conftest import (
    LiveServer,
    Worker,
    get_material,
    upload_material,
    uploader_bearer,
    wait_processed,
    wait_until,
)
from tests.support.media import lesson_video


def test_removed_files_go_and_search_follows(
    hub_env: dict[str, str], live_server: LiveServer, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    auth = uploader_bearer(hub_env)
    start_worker()

    def api(method: str, path: str, status: int, **kwargs: Any) -> Any:
        answer = requests.request(method, live_server.api(path), headers=auth, timeout=30, **kwargs)
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else None

    def stored(sha: str) -> bool:
        return requests.get(live_server.api(f"/blobs/{sha}"), headers=auth, timeout=30).status_code == 200

    def hits(q: str) -> list[str]:
        return [hit["title"] for hit in api("GET", "/search", 200, params={"q": q})["hits"] if hit["type"] == "lesson"]

    course = api("POST", "/courses", 201, json=COURSE)["id"]
    keep = api("POST", f"/courses/{course}/lessons", 201, json={"title": "勾股定理"})["id"]
    gone = api("POST", f"/courses/{course}/lessons", 201, json={"title": "勾股定理的证明"})["id"]
    video = lesson_video(tmp_path / "lesson.mp4", seconds=2, size="320x180")
    first = upload_material(live_server, auth, keep, video, "讲解")
    done = wait_processed(lambda: get_material(live_server, auth, first["id"]), "the first material")
    assert done["status"] == "ready", done
    again = upload_material(live_server, auth, gone, video, "讲解")
    second = wait_processed(lambda: get_material(live_server, auth, again["id"]), "the same file again")
    shared = {first["original"]["sha256"]} | {r["sha256"] for r in done["renditions"] if r["sha256"]}
    assert {r["sha256"] for r in second["renditions"] if r["sha256"]} <= shared  # reused, not made again
    api("POST", f"/courses/{course}/publish", 200)
    wait_until(lambda: "勾股定理的证明" in hits("证明"), 60, "the lesson to be searchable")

    # The first material goes; its files stay, the second material (same bytes) still uses them.
    api("DELETE", f"/materials/{first['id']}", 204)
    # A file of its own, removed after it: once its bytes are gone the worker has done both tasks.
    own = upload_material(live_server, auth, keep, lesson_video(tmp_path / "own.mp4", seconds=1, size="160x90"), "短片")
    api("DELETE", f"/materials/{own['id']}", 204)
    wait_until(lambda: not stored(own["original"]["sha256"]), 120, "the removed material's own bytes to go")
    assert all(stored(sha) for sha in shared)

    # The lesson that used them goes: now nothing does, and search forgets the lesson.
    api("DELETE", f"/lessons/{gone}", 204)
    wait_until(lambda: not any(stored(sha) for sha in shared), 120, "the unused files to go")
    wait_until(lambda: "勾股定理的证明" not in hits("证明"), 60, "search to forget the deleted lesson")
    api("PATCH", f"/lessons/{keep}", 200, json={"title": "勾股定理的逆定理"})
    wait_until(lambda: "勾股定理的逆定理" in hits("逆定理"), 60, "search to find the new title")
