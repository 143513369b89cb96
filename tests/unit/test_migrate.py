"""Every hub command that uses the database names `hub db upgrade` when the schema is missing, old or newer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import text

from hub.cli import main
from hub.db import make_engine
from hub.migrate import alembic_config, head_revision, upgrade

EMAIL = "server@shancun.example"
ARGS: dict[str, list[str]] = {
    "school create": ["山村小学", "--kind", "rural"],
    "school pair": ["海淀实验小学", "山村小学"],
    "school unpair": ["海淀实验小学", "山村小学"],
    "school list": [],
    "user create": [EMAIL, "--school", "山村小学", "--role", "teacher", "--password", ""],
    "user deactivate": [EMAIL],
    "user activate": [EMAIL],
    "user password": [EMAIL, "--password", "a long password"],
    "token create": [EMAIL],
    "token list": [EMAIL],
    "token revoke": ["hub_abcdefgh"],
    "media reprocess": ["--profile", "video-240p"],
    "search rebuild": ["--wait", "0"],
    "search check": [],
    "sync subscribe": ["--school", "山村小学", "--course", "1"],
    "sync pull": [],
    "sync status": [],
    "sync calendar set": ["renjiao-math-3-1", "--start", "2026-09-01"],
    "sync calendar week": ["renjiao-math-3-1", "1", "3"],
    "sync calendar show": ["renjiao-math-3-1"],
    "sync calendar list": [],
    "sync calendar delete": ["renjiao-math-3-1"],
    "bundle export": ["--to", "{tmp}/bundle", "--school", "山村小学"],
    "bundle import": ["{tmp}"],
    "textbook import": ["--shipped"],
    "textbook list": [],
    "textbook show": ["renjiao-math-3-1"],
    "textbook delete": ["renjiao-math-3-1"],
    "reach rollup": [],
}
"""Each command that uses the database, with arguments it would otherwise run with."""
NOT_CHECKED = {
    "db upgrade": "makes the schema current",
    "demo": "migrates first",
    "sync init": "migrates, after checking the upstream (tests/functional/test_sync_init.py)",
    "serve": "the same check (command_app), but it would serve forever where the check is missing",
    "worker": "the same check (command_app), but it would run forever where the check is missing",
    "keys generate": "writes a key file, no database",
    "upload": "an HTTP client of a hub",
    "course list": "an HTTP client of a hub",
    "course show": "an HTTP client of a hub",
}


def _commands(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}"


def test_every_command_is_classified() -> None:
    assert set(_commands(main)) == set(ARGS) | set(NOT_CHECKED), "new command: does it use the database?"


def test_head_revision_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == script.get_current_head()
    assert [r.revision for r in script.walk_revisions()] == sorted(
        (p.name[:4] for p in (Path(script.dir) / "versions").glob("*.py")), reverse=True
    ), "migrations are NNNN_what.py with revision NNNN, in a straight line"


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[CliRunner, Path]:
    """A school server's first day: a data directory and nothing in it."""
    data = tmp_path / "var"
    data.mkdir()
    url = f"sqlite:///{data / 'hub.db'}"
    return CliRunner(env={"HUB_DATA_DIR": str(data), "HUB_DATABASE_URL": url, "HUB_LOG_LEVEL": "WARNING"}), data


def _refusals(runner: CliRunner, tmp: Path) -> dict[str, str]:
    """The output of each command that did not stop with a message naming `hub db upgrade`."""
    wrong = {}
    for command, args in ARGS.items():
        result = runner.invoke(main, [*command.split(), *(a.format(tmp=tmp) for a in args)])
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if crashed or result.exit_code != 1 or "hub db upgrade" not in result.output:
            wrong[command] = f"{result.exit_code}: {result.output[-300:]} {result.exception!r}"
    return wrong


def test_on_a_fresh_data_dir_every_command_says_run_hub_db_upgrade(fresh: tuple[CliRunner, Path]) -> None:
    runner, data = fresh
    assert _refusals(runner, data) == {}
    pulled = runner.invoke(main, ["sync", "pull"])
    assert "no such table" not in pulled.output and "Traceback" not in pulled.output
    assert "no schema yet" in pulled.output


def test_an_old_schema_names_both_revisions(fresh: tuple[CliRunner, Path]) -> None:
    runner, data = fresh
    upgrade(f"sqlite:///{data / 'hub.db'}", "0005")
    assert _refusals(runner, data) == {}
    status = runner.invoke(main, ["sync", "status"])
    assert "0005" in status.output and head_revision() in status.output


def test_after_hub_db_upgrade_commands_run(fresh: tuple[CliRunner, Path]) -> None:
    runner, _ = fresh
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    listed = runner.invoke(main, ["school", "list"])
    assert listed.exit_code == 0, listed.output
    assert runner.invoke(main, ["sync", "status"]).exit_code == 0


def test_a_newer_schema_says_to_update_the_code(fresh: tuple[CliRunner, Path]) -> None:
    runner, data = fresh
    url = f"sqlite:///{data / 'hub.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    result = runner.invoke(main, ["school", "list"])
    assert result.exit_code == 1
    assert "newer than this hub's code" in result.output
