"""The `hub` command, as an operator types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts import services
from hub.accounts.models import ApiToken, School
from hub.catalog import services as catalog
from hub.catalog.schemas import CourseCreate, LessonCreate
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


@pytest.mark.slow
def test_the_installed_command_as_an_operator_types_it(
    hub_env: dict[str, str], db: Session, tmp_path: Path, course_body: dict[str, Any]
) -> None:
    """The console script, from another directory, with what a terminal shows (stdout and stderr)."""
    hub = Path(sys.executable).with_name("hub")
    assert hub.exists(), "the `hub` console script is installed with the package"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(hub), *args],
            cwd=tmp_path,
            env={**os.environ, **hub_env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )

    school = run("school", "create", "通渭县第一小学", "--kind", "rural", "--region", "甘肃省", "--county", "通渭县")
    assert school.returncode == 0, school.stdout
    row = db.scalars(select(School).where(School.name == "通渭县第一小学")).one()
    assert (row.kind, row.region, row.county, row.rural) == ("rural", "甘肃省", "通渭县", True)
    user = run("user", "create", "t@tw.cn", "--school", "通渭县第一小学", "--role", "uploader")
    assert user.returncode == 0, user.stdout  # no terminal: no password prompt, an API-only account

    token = run("token", "create", "t@tw.cn")
    assert token.returncode == 0, token.stdout
    lines = token.stdout.strip().splitlines()
    plain = lines[-1]
    assert services.authenticate_token(db, plain).email == "t@tw.cn"
    assert token.stdout.count(plain) == 1  # printed once

    uploader = services.authenticate_token(db, plain)
    course = catalog.create_course(db, uploader, CourseCreate(**course_body))
    catalog.create_lesson(db, uploader, course.id, LessonCreate(title="古诗三首"))
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    missing = run("search", "check")
    assert missing.returncode == 1 and "index: missing" in missing.stdout, missing.stdout
    rebuilt = run("search", "rebuild")
    assert rebuilt.returncode == 0 and "search index rebuilt: 2 documents" in rebuilt.stdout, rebuilt.stdout
    checked = run("search", "check")
    assert checked.returncode == 0, checked.stdout
    assert "documents: 2 indexed, 2 expected" in checked.stdout and "missing: 0" in checked.stdout
