"""`hub user` and `hub token` as an operator types them: deactivate, passwords, token kinds, list and revoke."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.accounts import services
from hub.accounts.models import ApiToken, User
from hub.cli import main
from hub.errors import Unauthorized
from tests.conftest import Accounts

EMAIL = "server@rural.cn"


@pytest.fixture
def hub(hub_env: dict[str, str], make: Accounts) -> CliRunner:
    make.user(EMAIL, make.school("山村小学", "rural"), "teacher", password="the first password")
    return CliRunner(env=hub_env)


def _run(runner: CliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(main, list(args), input=input)


def _token(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def _user(db: Session) -> User:
    db.expire_all()
    return services.get_user_by_email(db, EMAIL)


def test_token_create_list_and_revoke_by_prefix(hub: CliRunner, db: Session) -> None:
    user_token = _token(_run(hub, "token", "create", EMAIL))
    sync_token = _token(_run(hub, "token", "create", EMAIL, "--kind", "sync"))  # still the last line
    assert services.live_token(db, sync_token).kind == "sync"
    assert services.live_token(db, user_token).kind == "user"

    listed = _run(hub, "token", "list", EMAIL)
    assert listed.exit_code == 0, listed.output
    assert user_token not in listed.output and sync_token not in listed.output  # never the tokens
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split() == ["prefix", "kind", "created", "last", "used", "revoked"]
    assert [line.split()[:2] for line in lines[1:]] == [[user_token[:12], "user"], [sync_token[:12], "sync"]]
    assert all("never" in line for line in lines[1:])  # not used yet

    revoked = _run(hub, "token", "revoke", sync_token[:12])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.output and "sync" in revoked.output
    with pytest.raises(Unauthorized):
        services.live_token(db, sync_token)
    assert services.live_token(db, user_token)  # only that one
    assert "already revoked" in _run(hub, "token", "revoke", sync_token[:12]).output
    assert _run(hub, "token", "list", EMAIL).stdout.count("-\n") == 1  # one live token, one revoked


def test_an_ambiguous_or_unknown_prefix_revokes_nothing(hub: CliRunner, db: Session) -> None:
    first, second = (_token(_run(hub, "token", "create", EMAIL, "--kind", kind)) for kind in ("sync", "user"))
    db.execute(update(ApiToken).where(ApiToken.token_hash == services._hash_token(first)).values(prefix="hub_AAAAAAA1"))
    db.execute(
        update(ApiToken).where(ApiToken.token_hash == services._hash_token(second)).values(prefix="hub_AAAAAAA2")
    )
    db.commit()
    ambiguous = _run(hub, "token", "revoke", "hub_AAAAAAA")
    assert ambiguous.exit_code != 0
    assert "2 tokens start with hub_AAAAAAA" in ambiguous.output
    unknown = _run(hub, "token", "revoke", "hub_ZZZZZZZZ")
    assert unknown.exit_code != 0 and "No token starts with" in unknown.output
    short = _run(hub, "token", "revoke", "hub_")
    assert short.exit_code != 0 and "at least 8" in short.output
    assert services.live_token(db, first) and services.live_token(db, second)
    # The whole prefix, or the whole token as before, names one.
    assert _run(hub, "token", "revoke", "hub_AAAAAAA2").exit_code == 0
    assert _run(hub, "token", "revoke", first).exit_code == 0
    for token in (first, second):
        with pytest.raises(Unauthorized):
            services.live_token(db, token)


def test_deactivate_and_activate(hub: CliRunner, db: Session) -> None:
    token = _token(_run(hub, "token", "create", EMAIL, "--kind", "sync"))
    generation = _user(db).session_generation
    deactivated = _run(hub, "user", "deactivate", EMAIL)
    assert deactivated.exit_code == 0, deactivated.output
    assert "1 token(s) revoked" in deactivated.output
    user = _user(db)
    assert not user.active and user.session_generation > generation
    with pytest.raises(Unauthorized):
        services.live_token(db, token)
    refused = _run(hub, "token", "create", EMAIL)
    assert refused.exit_code != 0 and "deactivated" in refused.output

    assert _run(hub, "user", "activate", EMAIL).exit_code == 0
    assert _user(db).active
    with pytest.raises(Unauthorized):
        services.live_token(db, token)  # stays revoked: make a new one
    assert _run(hub, "token", "create", EMAIL).exit_code == 0
    assert _run(hub, "user", "deactivate", "nobody@rural.cn").exit_code != 0


def test_password_from_the_option_or_stdin_never_echoed(hub: CliRunner, db: Session) -> None:
    generation = _user(db).session_generation
    changed = _run(hub, "user", "password", EMAIL, input="a second password\n")
    assert changed.exit_code == 0, changed.output
    assert "a second password" not in changed.output
    user = _user(db)
    assert services.authenticate_password(db, EMAIL, "a second password").id == user.id
    assert user.session_generation > generation  # their sessions ended
    assert _run(hub, "user", "password", EMAIL, "--password", "a third password").exit_code == 0
    db.expire_all()
    assert services.authenticate_password(db, EMAIL, "a third password")
    short = _run(hub, "user", "password", EMAIL, input="short\n")
    assert short.exit_code != 0 and "at least 8 characters" in short.output


def test_a_token_use_shows_in_the_list(app: Flask, hub: CliRunner) -> None:
    token = _token(_run(hub, "token", "create", EMAIL))
    assert app.test_client().get("/api/v1/courses", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    [row] = _run(hub, "token", "list", EMAIL).stdout.strip().splitlines()[1:]
    assert row.count("never") == 0  # last used: a date


def test_the_readmes_revoking_commands_as_written(hub_env: dict[str, str], make: Accounts, db: Session) -> None:
    """README's Security block, line by line; only the token prefix is the one this hub printed."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    security = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    block = security.split("```sh\n", 1)[1].split("```", 1)[0]
    school = make.school("通渭县第一小学", "rural")
    make.user("teacher@example.cn", school, "teacher", password="the first password")
    make.user("server@shancun.example", school, "teacher")
    runner = CliRunner(env=hub_env)
    prefix = _token(_run(runner, "token", "create", "teacher@example.cn"))[:8]
    results = []
    for line in block.splitlines():
        argv = shlex.split(line.replace("3f9a1c0e", prefix), comments=True)
        assert argv[0] == ".venv/bin/hub", line
        results.append(runner.invoke(main, argv[1:], input="a new password 1\na new password 1\n"))
        assert results[-1].exit_code == 0, (line, results[-1].output)
    assert prefix in results[0].stdout and "revoked" in results[1].output
    assert services.authenticate_password(db, "teacher@example.cn", "a new password 1").email == "teacher@example.cn"
    db.expire_all()
    assert db.scalars(select(ApiToken).where(ApiToken.kind == "sync")).one().revoked_at is None


def test_token_times_are_in_the_hubs_time_zone(hub: CliRunner, db: Session) -> None:
    _run(hub, "token", "create", EMAIL)
    db.execute(update(ApiToken).values(created_at=datetime(2026, 12, 1, 14, 5, tzinfo=UTC)))  # 22:05 in Beijing
    db.commit()
    listed = _run(hub, "token", "list", EMAIL)
    assert "times in Asia/Shanghai" in listed.output
    [row] = listed.stdout.strip().splitlines()[1:]
    assert "2026-12-01 22:05" in row and "14:05" not in row


def test_user_create_makes_a_reviewer_of_a_region(hub: CliRunner, db: Session, make: Accounts) -> None:
    make.school("定西市教育局", "urban")  # region 北京市 (the fixture's), reviewing another region
    created = _run(
        hub, "user", "create", "rev@dx.gov.cn", "--school", "定西市教育局", "--role", "reviewer", "--region", "甘肃省"
    )
    assert created.exit_code == 0, created.output
    assert "reviewer" in created.output
    db.expire_all()
    reviewer = services.get_user_by_email(db, "rev@dx.gov.cn")
    assert (reviewer.role, reviewer.review_region) == ("reviewer", "甘肃省")
    by_school = _run(hub, "user", "create", "rev2@dx.gov.cn", "--school", "定西市教育局", "--role", "reviewer")
    assert by_school.exit_code == 0, by_school.output
    assert services.get_user_by_email(db, "rev2@dx.gov.cn").review_region == "北京市"  # the school's region
    refused = _run(
        hub, "user", "create", "t@dx.gov.cn", "--school", "定西市教育局", "--role", "teacher", "--region", "甘肃省"
    )
    assert refused.exit_code != 0 and "Only reviewers and supervisors have a region" in refused.output
