"""The `hub` command, as an operator types it."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts import services
from hub.accounts.models import ApiToken
from hub.cli import main


def test_school_user_token(hub_env: dict[str, str], db: Session) -> None:
    runner = CliRunner(env=hub_env)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(main, ["school", "create", "海淀实验小学", "--kind", "famous", "--region", "北京市"])
    assert created.exit_code == 0, created.output
    assert "海淀实验小学" in created.output
    duplicate = runner.invoke(main, ["school", "create", "海淀实验小学", "--kind", "famous"])
    assert duplicate.exit_code != 0
    assert "already exists" in duplicate.output
    bad_kind = runner.invoke(main, ["school", "create", "x", "--kind", "castle"])
    assert bad_kind.exit_code != 0

    user = runner.invoke(
        main,
        [
            "user",
            "create",
            "Up@Haidian.cn",
            "--school",
            "海淀实验小学",
            "--role",
            "uploader",
            "--password",
            "a long password",
        ],
    )
    assert user.exit_code == 0, user.output
    no_school = runner.invoke(main, ["user", "create", "x@y.cn", "--school", "nowhere", "--role", "teacher"])
    assert no_school.exit_code != 0
    assert "No school named" in no_school.output

    token = runner.invoke(main, ["token", "create", "up@haidian.cn"])
    assert token.exit_code == 0, token.output
    plain = token.stdout.strip().splitlines()[-1]
    assert services.authenticate_token(db, plain).email == "up@haidian.cn"
    stored = db.scalars(select(ApiToken.token_hash)).all()
    assert plain not in stored and len(stored) == 1  # only the hash is kept


def test_bad_configuration_is_named(hub_env: dict[str, str]) -> None:
    result = CliRunner(env={**hub_env, "HUB_STORAGE": "floppy"}).invoke(
        main, ["school", "create", "x", "--kind", "rural"]
    )
    assert result.exit_code != 0
    assert "HUB_STORAGE" in result.output
