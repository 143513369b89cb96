"""The sync window and the run log are in HUB_TIMEZONE, not the operating system's clock."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask

from hub import create_app
from hub.cli import main
from hub.db import get_database
from hub.sync import client, services
from hub.sync import manifest as mf
from tests.conftest import hub_settings

ZONE = "Asia/Shanghai"  # UTC+8 all year: its night is the UTC afternoon


@pytest.fixture
def school_env(hub_env: dict[str, str]) -> dict[str, str]:
    """A school server whose upstream cannot be reached: a run inside the window gets that far and says so."""
    return {
        **hub_env,
        "HUB_TIMEZONE": ZONE,
        "HUB_UPSTREAM_URL": "http://127.0.0.1:9",
        "HUB_UPSTREAM_PUBLIC_KEY": mf.public_key_text(mf.generate_private_key()),
        "HUB_UPSTREAM_TOKEN": "t",
    }


@pytest.fixture
def school(school_env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(hub_settings(school_env))
    yield app
    get_database(app).engine.dispose()


def _window(around: datetime) -> str:
    """A one-hour window that holds `around`'s wall-clock time and not one 8 hours off."""
    start = around - timedelta(minutes=5)
    return f"{start:%H:%M}-{start + timedelta(hours=1):%H:%M}"


def test_a_window_holding_the_local_time_but_not_utc_runs(school: Flask) -> None:
    at_22_beijing = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    out = io.StringIO()
    inside = client.pull(
        school, client.PullOptions(window=client.Window.parse("21:00-23:00")), out=out, now=lambda: at_22_beijing
    )
    assert inside.status == "failed" and "could not be reached" in inside.message  # it went on to the upstream
    assert f"21:00-23:00 ({ZONE}): it is 22:00" in out.getvalue()

    utc_afternoon = client.Window.parse("13:00-15:00")
    outside = client.pull(
        school, client.PullOptions(window=utc_afternoon), out=io.StringIO(), now=lambda: at_22_beijing
    )
    assert outside.status == "outside-window" and outside.ok
    assert outside.message == f"Outside the sync window 13:00-15:00 ({ZONE}): it is 22:00 there; nothing done."


def test_hub_sync_pull_reads_the_window_in_hub_timezone(school_env: dict[str, str]) -> None:
    runner = CliRunner(env=school_env)
    local_now = datetime.now(ZoneInfo(ZONE))
    inside = runner.invoke(main, ["sync", "pull", "--window", _window(local_now)])
    assert inside.exit_code == 1 and "could not be reached" in inside.output, inside.output
    assert f"({ZONE}): it is " in inside.stderr

    utc_now = datetime.now(UTC)
    outside = runner.invoke(main, ["sync", "pull", "--window", _window(utc_now)])
    assert outside.exit_code == 0, outside.output
    assert f"Outside the sync window {_window(utc_now)} ({ZONE}): it is " in outside.output


def test_hub_sync_status_prints_run_times_in_hub_timezone(school_env: dict[str, str], school: Flask) -> None:
    runner = CliRunner(env=school_env)
    assert runner.invoke(main, ["sync", "pull"]).exit_code == 1  # unreachable: a failed run in the log
    with get_database(school).session() as session:
        (run,) = services.recent_runs(session, 10)
        started = run.started_at
    shown = runner.invoke(main, ["sync", "status"])
    assert shown.exit_code == 0, shown.output
    assert f"runs (times in {ZONE}):" in shown.output
    assert f"{started.astimezone(ZoneInfo(ZONE)):%Y-%m-%d %H:%M}" in shown.output
    assert started.isoformat() not in shown.output
