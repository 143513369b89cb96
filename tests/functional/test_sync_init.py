"""`hub sync init` against a real upstream (`hub serve`): it checks before it writes, and runs twice safely.

The school server is a fresh data directory whose environment names nothing but it;
the upstream is this test's hub, with a signing key, a rural school paired with a
famous one, and a sync token of the rural school's server user.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import cli as hub_cli
from hub import create_app
from hub.accounts import services as accounts
from hub.accounts.models import User
from hub.db import get_database
from hub.sync import manifest as mf
from hub.sync.models import ServerReport
from tests.conftest import Accounts, hub_settings
from tests.functional.conftest import LiveServer, free_port


@dataclass
class Upstream:
    url: str
    key: str
    token: str
    school_id: int


@pytest.fixture
def upstream(app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path) -> Iterator[Upstream]:
    famous = make.school("海淀实验小学", "famous")
    rural = accounts.create_school(db, "山村小学", "rural", "甘肃省", "通渭县")
    accounts.pair_schools(db, famous, rural)
    db.commit()
    token = make.token(make.user("server@shancun.example", rural, "teacher"), "sync")
    key = mf.generate_private_key()
    mf.save_private_key(key, app.extensions["hub.settings"].sync_signing_key)
    server = LiveServer(hub_env, tmp_path)
    try:
        yield Upstream(server.url, mf.public_key_text(key), token, rural.id)
    finally:
        server.process.stop()


@pytest.fixture
def school_env(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "school"
    return {"HUB_DATA_DIR": str(data), "HUB_DATABASE_URL": f"sqlite:///{data / 'hub.db'}", "HUB_LOG_LEVEL": "WARNING"}


def _init(env: dict[str, str], url: str, key: str, token: str, *extra: str) -> Result:
    args = ["sync", "init", "--upstream", url, "--public-key", key, "--token", token, *extra]
    return CliRunner(env=env).invoke(hub_cli.main, args)


def _written(env: dict[str, str]) -> list[str]:
    data = Path(env["HUB_DATA_DIR"])
    return sorted(p.name for p in data.iterdir()) if data.exists() else []


def test_init_brings_up_a_school_server_and_is_safe_to_run_twice(
    upstream: Upstream, school_env: dict[str, str], db: Session
) -> None:
    first = _init(school_env, upstream.url, upstream.key, upstream.token)
    assert first.exit_code == 0, first.output
    out = first.output
    assert "this is the school server of 山村小学" in out
    assert "local admin created: admin@shancunxiaoxue.local" in out
    password = out.split("password: ", 1)[1].split()[0]
    assert len(password) >= 12
    # What to run next: subscribe to its paired school, pull, cron, serve.
    assert 'hub sync subscribe --paired-with "海淀实验小学"' in out
    assert "sync pull --window 22:00-06:00" in out and "*/30 * * * *" in out
    assert "hub serve" in out and "http://shancunxiaoxue.local/" in out

    conf = (Path(school_env["HUB_DATA_DIR"]) / "hub.conf").read_text()
    assert f"HUB_UPSTREAM_URL={upstream.url}" in conf
    assert f"HUB_UPSTREAM_PUBLIC_KEY={upstream.key}" in conf
    assert f"HUB_UPSTREAM_TOKEN={upstream.token}" in conf
    assert (Path(school_env["HUB_DATA_DIR"]) / "hub.conf").stat().st_mode & 0o077 == 0

    # The settings are read from the file by every later command: a pull needs no variables.
    pull = CliRunner(env=school_env).invoke(hub_cli.main, ["sync", "pull"])
    assert pull.exit_code == 0, pull.output
    # The local admin signs in with the printed password.
    mirror = create_app(hub_settings(school_env))
    try:
        client = mirror.test_client()
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed_in = client.post(
            "/login", data={"email": "admin@shancunxiaoxue.local", "password": password, "csrf_token": token}
        )
        assert signed_in.status_code == 302, signed_in.text
    finally:
        get_database(mirror).engine.dispose()

    # The upstream heard from it.
    db.expire_all()
    report = db.get(ServerReport, upstream.school_id)
    assert report is not None and report.host_name == "shancunxiaoxue"

    again = _init(school_env, upstream.url, upstream.key, upstream.token)
    assert again.exit_code == 0, again.output
    assert "local admin: admin@shancunxiaoxue.local (exists already; password unchanged)" in again.output
    assert "password: " not in again.output
    assert (Path(school_env["HUB_DATA_DIR"]) / "hub.conf").read_text() == conf
    mirror = create_app(hub_settings(school_env))
    try:
        with get_database(mirror).session() as session:
            assert [u.email for u in session.scalars(select(User))] == ["admin@shancunxiaoxue.local"]
    finally:
        get_database(mirror).engine.dispose()


def test_a_wrong_key_writes_nothing(upstream: Upstream, school_env: dict[str, str]) -> None:
    other = mf.public_key_text(mf.generate_private_key())
    result = _init(school_env, upstream.url, other, upstream.token)
    assert result.exit_code == 1
    assert "is not signed by the key given (--public-key)" in result.output, result.output
    assert "Traceback" not in result.output
    assert "hub.db" not in _written(school_env) and "hub.conf" not in _written(school_env)


def test_an_unreachable_upstream_writes_nothing(school_env: dict[str, str]) -> None:
    key = mf.public_key_text(mf.generate_private_key())
    result = _init(school_env, f"http://127.0.0.1:{free_port()}", key, "token")
    assert result.exit_code == 1
    assert "Cannot reach the upstream at http://127.0.0.1:" in result.output, result.output
    assert "hub.db" not in _written(school_env) and "hub.conf" not in _written(school_env)


def test_a_refused_token_writes_nothing(upstream: Upstream, school_env: dict[str, str]) -> None:
    result = _init(school_env, upstream.url, upstream.key, "not-a-token")
    assert result.exit_code == 1
    assert "refused the token (HTTP 401)" in result.output
    assert "hub.conf" not in _written(school_env)


def test_environment_overrides_the_stored_settings(
    upstream: Upstream, school_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _init(school_env, upstream.url, upstream.key, upstream.token).exit_code == 0
    monkeypatch.setenv("HUB_UPSTREAM_TOKEN", "from-the-environment")
    mirror = create_app(hub_settings(school_env))
    try:
        settings = mirror.extensions["hub.settings"]
        assert settings.upstream_url == upstream.url  # from hub.conf
        assert settings.upstream_token == "from-the-environment"
    finally:
        get_database(mirror).engine.dispose()
