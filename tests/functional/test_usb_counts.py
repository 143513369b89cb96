"""USB carries usage back: the state file a school writes for the trip carries its download counts.

The upstream reads them where it makes the bundle (`hub bundle export --state`) and
records them once: the same state file read twice, or the same report sent over the
link later, adds nothing. The bundle brings the acknowledgement back, so the school
stops carrying those counts and the next state file holds only the new ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.db import get_database
from hub.media.downloads import record_download
from hub.sync.models import MirrorState, ServerReport
from tests.functional.test_sync import (  # noqa: F401 -- fixtures, found by their names
    FAMOUS,
    RURAL,
    School,
    Upstream,
    proxy,
    run_hub,
    school,
    upstream,
    upstream_downloads,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def origin(upstream: Upstream) -> Upstream:  # noqa: F811 -- test_sync's hub with its course, under a name of our own
    return upstream


@pytest.fixture
def rural(school: School) -> School:  # noqa: F811 -- test_sync's school server, under a name of our own
    return school


def _ok(result: object) -> str:
    assert getattr(result, "exit_code", 1) == 0, getattr(result, "output", result)
    return str(getattr(result, "output", ""))


def _trip(upstream_env: dict[str, str], server: School, tmp_path: Path, name: str) -> tuple[str, Path]:
    """School writes its state; upstream reads it and writes a bundle: (the upstream's output, the bundle)."""
    state = tmp_path / f"{name}-state.json"
    _ok(server.hub("sync", "status", "--state-out", str(state)))
    bundle = tmp_path / name
    out = _ok(run_hub(upstream_env, "bundle", "export", "--to", str(bundle), "--school", RURAL, "--state", str(state)))
    return out, bundle


def test_counts_go_by_usb_once_and_come_back_acknowledged(
    origin: Upstream, rural: School, hub_env: dict[str, str], db: Session, tmp_path: Path
) -> None:
    # A school with no link: subscribed on the upstream, its first delivery on a USB drive.
    _ok(run_hub(hub_env, "sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS))
    _ok(run_hub(hub_env, "bundle", "export", "--to", str(tmp_path / "first"), "--school", RURAL))
    _ok(rural.hub("bundle", "import", str(tmp_path / "first")))
    video = next(iter(origin.video.values()))
    for _ in range(3):
        record_download(get_database(rural.app), video, None)

    out, bundle = _trip(hub_env, rural, tmp_path, "second")
    assert "3 counted" in out
    assert upstream_downloads(origin, video) == 3
    # The same state file read again (a second bundle from the same trip): nothing more.
    state = tmp_path / "second-state.json"
    again = run_hub(
        hub_env, "bundle", "export", "--to", str(tmp_path / "again"), "--school", RURAL, "--state", str(state)
    )
    assert "0 counted" in _ok(again)
    assert upstream_downloads(origin, video) == 3
    # The school's server state came with it, for the upstream's list of school servers.
    db.expire_all()
    school_row = accounts.get_school_by_name(db, RURAL)
    report = db.get(ServerReport, school_row.id)
    assert report is not None and report.via == "usb" and report.courses == 1

    # Before the bundle is back, the school pulls over a link that came up: the same
    # report goes with the same id, and the upstream adds nothing.
    assert rural.pull().status == "ok"
    assert upstream_downloads(origin, video) == 3
    # The pull reported the server's state too.
    db.expire_all()
    report = db.get(ServerReport, school_row.id)
    assert report is not None and report.via == "pull" and report.storage_used > 0

    # Two more downloads; the bundle comes home (its acknowledgement matches no pending
    # report any more: the pull had it acknowledged), the next trip carries only the 2.
    for _ in range(2):
        record_download(get_database(rural.app), video, None)
    _ok(rural.hub("bundle", "import", str(bundle)))
    out, third = _trip(hub_env, rural, tmp_path, "third")
    assert "2 counted" in out
    assert upstream_downloads(origin, video) == 5
    # This time the acknowledgement comes home and ends the pending report.
    imported = _ok(rural.hub("bundle", "import", str(third)))
    assert "the upstream recorded 2 downloads" in imported
    with rural.session() as session:
        state = session.get(MirrorState, 1)
        assert state is not None and state.pending_report is None
    out, _fourth = _trip(hub_env, rural, tmp_path, "fourth")
    assert "counted" not in out  # nothing left to carry
    assert upstream_downloads(origin, video) == 5
