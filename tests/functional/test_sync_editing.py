"""Editing upstream reaches a school server on its next pull: a deleted lesson goes, a reorder is a patch.

Two hubs as in test_sync.py (its fixtures: the upstream served over HTTP, a school server
pulling through a counting proxy). The uploader edits through the upstream's JSON API.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import requests
from sqlalchemy import select

from hub.accounts import services as accounts
from hub.catalog.models import Lesson, Material
from hub.media.storage import Storage
from hub.sync.client import PullOptions, pull
from hub.sync.models import MirrorCourse
from tests.conftest import STORAGE
from tests.functional import test_sync as two_hubs
from tests.functional.conftest import LiveServer
from tests.functional.test_sync import FAMOUS, Proxy, School, Upstream

# The two hubs of test_sync.py, as fixtures of this module too.
proxy = two_hubs.proxy
upstream = two_hubs.upstream
school = two_hubs.school

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(STORAGE == "s3", reason="the proxy counts bytes; S3 would redirect blob downloads past it"),
]


def _api(server: LiveServer, token: str) -> Any:
    def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
        answer = requests.request(
            method, server.api(path), headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
        )
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else None

    return call


def _school_lessons(school: School) -> list[str]:
    with school.session() as session:
        return list(session.scalars(select(Lesson.title).order_by(Lesson.position, Lesson.id)))


def test_a_deleted_and_a_reordered_lesson_reach_the_school_server(
    upstream: Upstream, school: School, proxy: Proxy, live_server: LiveServer
) -> None:
    uploader = accounts.get_user_by_email(upstream.db, "up@famous.example")
    assert uploader is not None
    token = accounts.create_token(upstream.db, uploader, "user")
    upstream.db.commit()
    api = _api(live_server, token)
    third = api("POST", f"/courses/{upstream.course_id}/lessons", 201, json={"title": "因式分解法"})["id"]
    assert school.hub("sync", "subscribe", "--paired-with", FAMOUS).exit_code == 0
    first = school.pull()
    assert first.status == "ok", first.message
    assert _school_lessons(school) == ["配方法", "公式法", "因式分解法"]
    deleted_video = upstream.video[upstream.lesson_ids[1]]
    school_storage: Storage = school.app.extensions["hub.storage"]
    assert school_storage.exists(deleted_video)

    # Upstream, through the API: 公式法 is deleted, 因式分解法 moved first.
    api("DELETE", f"/lessons/{upstream.lesson_ids[1]}", 204)
    order = api(
        "PUT", f"/courses/{upstream.course_id}/lesson-order", 200, json={"lessons": [third, upstream.lesson_ids[0]]}
    )
    assert [item["title"] for item in order["items"]] == ["因式分解法", "配方法"]

    proxy.reset_counts()
    out = io.StringIO()
    report = pull(school.app, PullOptions(), out=out)
    assert report.status == "ok", report.message
    # A patch: the changed lessons and the new order, merged into the entry held and checked
    # against the signed revision, not the whole course fetched again; and no blob moved.
    assert "1 course entries fetched (1 as changes to the entry held)" in out.getvalue()
    assert proxy.blob_body_bytes == 0
    assert _school_lessons(school) == ["因式分解法", "配方法"]
    with school.session() as session:
        course_id = session.scalar(select(MirrorCourse.course_id))
        titles = set(session.scalars(select(Material.title)))
    assert titles == {"配方法"}  # the deleted lesson's material went with it
    assert not school_storage.exists(deleted_video)  # and its bytes, which nothing else used
    page = school.app.test_client().get(f"/courses/{course_id}").get_data(as_text=True)
    assert re.findall(r'<a href="/lessons/\d+">([^<]+)</a>', page) == ["因式分解法", "配方法"]

    # A title fixed upstream is one lesson's patch too.
    api("PATCH", f"/lessons/{third}", 200, json={"title": "因式分解"})
    out = io.StringIO()
    assert pull(school.app, PullOptions(), out=out).status == "ok"
    assert "(1 as changes to the entry held)" in out.getvalue()
    assert _school_lessons(school) == ["因式分解", "配方法"]
