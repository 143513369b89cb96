"""The pull client's pure parts: time windows, rates, the shared bandwidth cap."""

from __future__ import annotations

import io
import time
from datetime import datetime
from datetime import time as clock
from pathlib import Path

import pytest

from hub.sync import client
from hub.sync.client import Window, parse_rate
from tests.conftest import hub_settings


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        ("22:00-06:00", "23:30", True),
        ("22:00-06:00", "05:59", True),
        ("22:00-06:00", "06:00", False),
        ("22:00-06:00", "12:00", False),
        ("01:00-05:00", "03:00", True),
        ("01:00-05:00", "00:59", False),
    ],
)
def test_windows_may_cross_midnight(window: str, moment: str, inside: bool) -> None:
    assert Window.parse(window).contains(clock.fromisoformat(moment)) is inside


def test_seconds_left_in_a_window() -> None:
    window = Window.parse("22:00-06:00")
    assert window.seconds_left(datetime(2026, 12, 1, 23, 0)) == 7 * 3600
    assert window.seconds_left(datetime(2026, 12, 1, 5, 59, 30)) == 30
    assert window.seconds_left(datetime(2026, 12, 1, 12, 0)) == 0


@pytest.mark.parametrize("text", ["22:00", "25:00-06:00", "22:00-22:00", "night"])
def test_bad_windows_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        Window.parse(text)


@pytest.mark.parametrize(
    ("text", "rate"), [("65536", 65536), ("500k", 512_000), ("2M", 2 * 1024**2), ("1.5m", 1572864), ("64KB/s", 65536)]
)
def test_rates(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "10", "-5k"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_the_rate_limiter_holds_the_cap_over_all_takers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClock()
    monkeypatch.setattr(client.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(client.time, "sleep", fake.sleep)
    limiter = client.RateLimiter(100_000)
    for _ in range(50):  # 50 × 10 kB = 500 kB: at 100 kB/s, the first second's burst plus 4 s
        limiter.take(10_000)
    assert fake.slept == pytest.approx(4.0, rel=0.01)
    unlimited = client.RateLimiter(None)
    unlimited.take(10**9)
    assert fake.slept == pytest.approx(4.0, rel=0.01)


def test_progress_line_names_bytes_files_rate_and_time_left() -> None:
    progress = client.Progress(files_total=4, bytes_total=4 * 1024**2)
    progress.received(1024**2)
    progress.file_done()
    line = progress.line()
    assert "1.0 MiB / 4.0 MiB" in line and "1/4 files" in line and "/s" in line and "left" in line


def test_a_closed_window_stops_the_downloads(tmp_path: Path) -> None:
    from hub.media.storage.local import LocalStorage
    from hub.sync import manifest as mf

    transfer = client.Transfer(
        upstream=client.Upstream("http://127.0.0.1:9", "token"),  # never reached: the window is shut
        storage=LocalStorage(tmp_path / "storage"),
        partial_dir=tmp_path / "partial",
        limiter=client.RateLimiter(None),
        progress=client.Progress(),
        deadline=time.monotonic() - 1,
    )
    files = {
        sha: mf.ManifestFile(sha256=sha, size=size, media_type="video/mp4")
        for sha, size in (("a" * 64, 10), ("b" * 64, 10**6))
    }
    with pytest.raises(client.Stopped):
        client.download(transfer, files, parallel=2)
    assert transfer.stop.is_set()


def test_one_sync_at_a_time(hub_env: dict[str, str]) -> None:
    from hub import create_app
    from hub.db import get_database
    from hub.locks import file_lock
    from hub.sync import manifest as mf

    env = {
        **hub_env,
        "HUB_UPSTREAM_URL": "http://127.0.0.1:9",
        "HUB_UPSTREAM_PUBLIC_KEY": mf.public_key_text(mf.generate_private_key()),
        "HUB_UPSTREAM_TOKEN": "t",
    }
    app = create_app(hub_settings(env))
    try:
        with file_lock(client.sync_lock_path(app.extensions["hub.settings"])):
            report = client.pull(app, client.PullOptions())
        assert report.status == "busy" and report.ok and "running" in report.message
        # Free again: this run gets as far as the (unreachable) upstream and says so.
        report = client.pull(app, client.PullOptions(), out=io.StringIO())
        assert report.status == "failed" and "could not be reached" in report.message
    finally:
        get_database(app).engine.dispose()


def test_a_compressed_manifest_is_bounded() -> None:
    import gzip

    assert client.gunzip_bounded(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000
    with pytest.raises(client.SyncError, match="more than"):
        client.gunzip_bounded(gzip.compress(b"\0" * 10_000_000), 1_000_000)  # 10 MB from ~10 kB
    with pytest.raises(client.SyncError, match="damaged"):
        client.gunzip_bounded(b"\x1f\x8b not gzip", 1000)


def test_a_304_uses_the_copy_held_unless_it_is_near_expiry(hub_env: dict[str, str]) -> None:
    from datetime import UTC, timedelta

    from hub import create_app
    from hub.db import get_database
    from hub.sync import manifest as mf
    from hub.sync import services

    key = mf.generate_private_key()
    app = create_app(
        {
            **hub_settings(hub_env),
            "HUB_UPSTREAM_URL": "http://127.0.0.1:9",
            "HUB_UPSTREAM_PUBLIC_KEY": mf.public_key_text(key),
        }
    )

    def envelope(version: int, issued: datetime, lifetime: timedelta) -> bytes:
        school = {"id": 2, "name": "山村小学", "kind": "rural", "region": "", "county": ""}
        payload = {
            "format": mf.FORMAT,
            "version": version,
            "cursor": 0,
            "issued_at": issued.isoformat(),
            "expires_at": (issued + lifetime).isoformat(),
            "subscriber": school,
            "courses": [],
        }
        return mf.sign(mf.canonical_json(payload), key)

    class FakeUpstream:
        def __init__(self, fresh: bytes) -> None:
            self.asked: list[int | None] = []
            self.fresh = fresh

        def json(self, method: str, path: str, body: object = None) -> dict[str, object]:
            return {"changes": [], "cursor": 0, "more": False}

        def manifest(self, known_version: int | None = None) -> bytes | None:
            self.asked.append(known_version)
            return None if known_version is not None else self.fresh

    now = datetime.now(UTC)
    try:
        for issued, asked in ((now - timedelta(hours=1), [3]), (now - timedelta(days=6), [3, None])):
            with get_database(app).session() as session:
                state = services.mirror_state(session)
                state.manifest_version, state.envelope = 3, envelope(3, issued, timedelta(days=7)).decode()
                session.commit()
            upstream = FakeUpstream(envelope(3, now, timedelta(days=7)))
            report = client._run(
                app, upstream, key.public_key(), client.PullOptions(report_counts=False), io.StringIO(), None, "pull"
            )  # type: ignore[arg-type]
            assert report.status == "ok", report.message
            assert upstream.asked == asked
    finally:
        get_database(app).engine.dispose()
