"""Plays, downloads and course ZIPs on a school server's LAN reach the upstream's usage counts, per lesson.

Two hubs (test_sync's upstream on loopback and a school server mirroring it): what
teachers do on the LAN (plays reported by the lesson page's beacon, a play without
JavaScript, downloads from the lesson page's links, a course ZIP) arrives upstream in
usage_count with exactly the numbers made, in the upstream's lesson and material ids,
for the school, after a pull (source lan) or through the USB state file alone (source
usb); resending adds nothing, and nothing that crosses names a person or a device.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from hub.accounts import services as accounts
from hub.catalog.models import Lesson, Material
from hub.media.models import Rendition
from hub.reach.models import UsageCount
from hub.sync import counts
from hub.sync.client import PullOptions, pull
from hub.sync.models import MirrorCourse
from tests.functional.test_sync import (  # noqa: F401 -- fixtures, found by their names
    FAMOUS,
    RURAL,
    School,
    Upstream,
    proxy,
    run_hub,
    school,
    upstream,
)

pytestmark = pytest.mark.slow

USAGE_ROW = {"day", "course", "lesson", "material", "kind", "count"}
DOWNLOAD_ROW = {"sha256", "day", "count"}


def _ok(result: object) -> str:
    assert getattr(result, "exit_code", 1) == 0, getattr(result, "output", result)
    return str(getattr(result, "output", ""))


def _lan_use(server: School) -> None:
    """Teachers on the school's LAN, through the school server's own routes."""
    client: FlaskClient = server.app.test_client()
    with server.session() as session:
        videos = {}
        for title, material_id in session.execute(
            select(Lesson.title, Material.id).join(Material, Material.lesson_id == Lesson.id)
        ):
            sha = session.scalar(
                select(Rendition.blob_sha256).where(
                    Rendition.material_id == material_id, Rendition.profile.like("video-%")
                )
            )
            videos[title] = (material_id, sha)
        course_id = session.scalar(select(MirrorCourse.course_id))
    first, first_sha = videos["配方法"]
    second, second_sha = videos["公式法"]
    # Three phones play lesson 1's video (their beacons), one of them twice: 3 plays.
    for device in ("a" * 32, "b" * 32, "c" * 32, "a" * 32):
        answer = client.post("/plays", data={"material": str(first), "device": device})
        assert answer.status_code == 204, answer.text
    # Two downloads of lesson 1's video from the page's link.
    for _ in range(2):
        answer = client.get(f"/api/v1/blobs/{first_sha}?m={first}")
        assert answer.status_code == 200 and answer.get_data()
    # An old PC without JavaScript plays lesson 2's video: its player's range requests make 1 play.
    for start in (0, 5000):
        answer = client.get(
            f"/api/v1/blobs/{second_sha}?m={second}&use=play",
            headers={"Range": f"bytes={start}-", "User-Agent": "旧电脑"},
        )
        assert answer.status_code == 206 and answer.get_data()
    # One course ZIP.
    answer = client.get(f"/courses/{course_id}/download?quality=smallest")
    assert answer.status_code == 200 and answer.get_data()


def _expected(origin: Upstream) -> dict[tuple[int, int, str], int]:
    first, second = (origin.material(lesson).id for lesson in origin.lesson_ids)
    return {
        (origin.lesson_ids[0], first, "play"): 3,
        (origin.lesson_ids[0], first, "download"): 2,
        (origin.lesson_ids[1], second, "play"): 1,
        (0, 0, "zip"): 1,
    }


def _upstream_usage(origin: Upstream) -> dict[tuple[str, int, int, str], int]:
    """(source, lesson, material, kind) → count of the rural school's rows on the upstream."""
    origin.db.rollback()
    rural = accounts.get_school_by_name(origin.db, RURAL)
    rows = origin.db.scalars(select(UsageCount).where(UsageCount.school_id == rural.id))
    found: dict[tuple[str, int, int, str], int] = {}
    for row in rows:
        assert row.course_id == origin.course_id
        key = (row.source, row.lesson_id, row.material_id, row.kind)
        found[key] = found.get(key, 0) + row.count
    return found


def _no_person(report: dict[str, Any]) -> None:
    """Every row of a report is a download per blob or a usage per lesson: nothing names who."""
    assert set(report) == {"id", "counts"}
    for row in report["counts"]:
        assert set(row) in (USAGE_ROW, DOWNLOAD_ROW), row


def test_lan_usage_reaches_the_upstream_on_a_pull_once(upstream: Upstream, school: School) -> None:  # noqa: F811
    _ok(school.hub("sync", "subscribe", "--paired-with", FAMOUS))
    assert school.pull().status == "ok"
    _lan_use(school)
    with school.session() as session:
        report = counts.pending_count_report(session)
        session.rollback()  # the pull below makes and sends its own
    assert report is not None
    _no_person(report)

    out = io.StringIO()
    assert pull(school.app, PullOptions(), out=out).status == "ok"
    assert "sent 7 plays, downloads and course ZIPs per lesson upstream" in out.getvalue(), out.getvalue()
    expected = {("lan", *key): count for key, count in _expected(upstream).items()}
    assert _upstream_usage(upstream) == expected
    # The next pull has nothing new to say, and says nothing twice.
    assert school.pull().status == "ok"
    assert _upstream_usage(upstream) == expected
    # More use later: only the new play goes.
    client = school.app.test_client()
    with school.session() as session:
        first = session.scalar(select(Material.id).join(Lesson).where(Lesson.title == "配方法"))
    assert client.post("/plays", data={"material": str(first), "device": "d" * 32}).status_code == 204
    assert school.pull().status == "ok"
    key = ("lan", upstream.lesson_ids[0], upstream.material(upstream.lesson_ids[0]).id, "play")
    assert _upstream_usage(upstream)[key] == 4


def test_lan_usage_reaches_the_upstream_by_usb_alone(
    upstream: Upstream,  # noqa: F811
    school: School,  # noqa: F811
    hub_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # A school with no link: subscribed on the upstream, its first delivery on a USB drive.
    _ok(run_hub(hub_env, "sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS))
    _ok(run_hub(hub_env, "bundle", "export", "--to", str(tmp_path / "first"), "--school", RURAL))
    _ok(school.hub("bundle", "import", str(tmp_path / "first")))
    _lan_use(school)

    state = tmp_path / "state.json"
    _ok(school.hub("sync", "status", "--state-out", str(state)))
    carried = json.loads(state.read_text())["counts"]
    _no_person(carried)
    for name in ("second", "again"):  # the same state file read twice: counted once
        out = _ok(
            run_hub(hub_env, "bundle", "export", "--to", str(tmp_path / name), "--school", RURAL, "--state", str(state))
        )
        assert "plays, downloads and course ZIPs per lesson" in out
    expected = {("usb", *key): count for key, count in _expected(upstream).items()}
    assert _upstream_usage(upstream) == expected
    # The bundle brings the acknowledgement home: the next state file carries no usage.
    _ok(school.hub("bundle", "import", str(tmp_path / "second")))
    _ok(school.hub("sync", "status", "--state-out", str(state)))
    assert not (json.loads(state.read_text())["counts"] or {}).get("counts")
    assert _upstream_usage(upstream) == expected
