"""`hub keys generate`, `hub sync` and `hub bundle` as a user types them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hub.cli import main
from hub.sync import manifest as mf


def test_keys_generate_prints_the_public_key_last_and_keeps_the_key(hub_env: dict[str, str]) -> None:
    runner = CliRunner(env=hub_env)
    first = runner.invoke(main, ["keys", "generate"])
    assert first.exit_code == 0, first.output
    public = first.stdout.strip().splitlines()[-1]
    assert mf.load_public_key(public) is not None
    again = runner.invoke(main, ["keys", "generate"])
    assert again.exit_code == 0
    assert again.stdout.strip().splitlines()[-1] == public  # school servers stay valid
    assert "already exists" in again.stderr


def test_pull_outside_mirror_mode_says_how_to_turn_it_on(hub_env: dict[str, str]) -> None:
    result = CliRunner(env=hub_env).invoke(main, ["sync", "pull"])
    assert result.exit_code == 1
    assert "HUB_UPSTREAM_URL" in result.stderr


def test_bad_windows_and_rates_are_usage_errors(hub_env: dict[str, str]) -> None:
    runner = CliRunner(env=hub_env)
    assert runner.invoke(main, ["sync", "pull", "--window", "night"]).exit_code == 2
    assert runner.invoke(main, ["sync", "pull", "--max-rate", "fast"]).exit_code == 2


def test_subscribe_needs_exactly_one_choice(hub_env: dict[str, str]) -> None:
    runner = CliRunner(env=hub_env)
    assert runner.invoke(main, ["sync", "subscribe"]).exit_code == 2
    assert runner.invoke(main, ["sync", "subscribe", "--course", "1", "--subject", "math"]).exit_code == 2
    assert runner.invoke(main, ["sync", "subscribe", "--grades", "1-3", "--course", "1"]).exit_code == 2


def test_importing_something_that_is_not_a_bundle_is_refused(hub_env: dict[str, str], tmp_path: Path) -> None:
    key = mf.public_key_text(mf.generate_private_key())
    env = {**hub_env, "HUB_UPSTREAM_PUBLIC_KEY": key}
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner(env=env).invoke(main, ["bundle", "import", str(empty)])
    assert result.exit_code == 1
    assert "manifest.json" in result.stderr


def test_an_id_no_database_can_hold_is_a_usage_error(hub_env: dict[str, str]) -> None:
    # 2^63 passed click's int and reached SQLite, which raised OverflowError: a traceback.
    runner = CliRunner(env=hub_env)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["school", "create", "山村小学", "--kind", "rural"]).exit_code == 0
    for course in (str(2**63), "0", "-1"):
        result = runner.invoke(main, ["sync", "subscribe", "--course", course, "--school", "山村小学"])
        assert result.exit_code == 2 and "--course" in result.output, result.output
