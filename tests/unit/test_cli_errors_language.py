"""What stops a `hub` command before it starts, in the terminal's language (English stays in the logs).

A bad setting (hub.config.ConfigError), a database without the schema
(hub.migrate.schema_problem) and a decoder sandbox that cannot start (`hub worker`'s
pre-flight, hub.media.sandbox.SandboxUnavailable).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import ConfigError, Settings
from hub.media import sandbox
from hub.migrate import head_revision, upgrade

ZH = {"LANG": "zh_CN.UTF-8", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": ""}
EN = {"LANG": "C", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": ""}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "var"
    data.mkdir()
    return {"HUB_DATA_DIR": str(data), "HUB_DATABASE_URL": f"sqlite:///{data / 'hub.db'}", "HUB_LOG_LEVEL": "WARNING"}


def test_a_bad_setting_is_said_in_chinese_and_stays_english_as_an_exception(env: dict[str, str]) -> None:
    bad = {**env, "HUB_TIMEZONE": "Mars/Olympus"}
    zh = CliRunner(env={**bad, **ZH}).invoke(main, ["sync", "status"])
    assert zh.exit_code == 1
    assert "配置错误：HUB_TIMEZONE='Mars/Olympus'：必须是时区名称，如 Asia/Shanghai 或 UTC" in zh.output, zh.output
    en = CliRunner(env={**bad, **EN}).invoke(main, ["sync", "status"])
    assert "HUB_TIMEZONE='Mars/Olympus': must be a time zone name such as Asia/Shanghai or UTC" in en.output
    with pytest.raises(ConfigError) as raised:
        Settings.load({"HUB_DATA_DIR": env["HUB_DATA_DIR"], "HUB_PAGE_SIZE": "0"})
    assert str(raised.value) == "HUB_PAGE_SIZE='0': must be a positive whole number"  # what a log says


def test_a_missing_or_old_schema_is_said_in_chinese(env: dict[str, str]) -> None:
    zh = CliRunner(env={**env, **ZH}).invoke(main, ["sync", "status"])
    assert zh.exit_code == 1
    assert "数据库还没有表结构：请先运行 `hub db upgrade`（它会创建表结构），再运行本命令" in zh.output, zh.output
    upgrade(env["HUB_DATABASE_URL"], "0005")
    old = CliRunner(env={**env, **ZH}).invoke(main, ["school", "list"])
    assert f"数据库表结构的版本为 0005，本平台需要 {head_revision()}" in old.output, old.output
    en = CliRunner(env={**env, **EN}).invoke(main, ["school", "list"])
    assert f"the database schema is at revision 0005 and this hub needs {head_revision()}" in en.output


def test_worker_preflight_says_the_sandbox_problem_in_chinese(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner(env=env).invoke(main, ["db", "upgrade"]).exit_code == 0
    # A machine without bubblewrap: the pre-flight stops the worker before Celery starts.
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    sandbox._bwrap_binary.cache_clear()
    sandbox.check.cache_clear()
    try:
        zh = CliRunner(env={**env, **ZH}).invoke(main, ["worker"])
        assert zh.exit_code == 1, zh.output
        assert "未安装 bubblewrap（bwrap），无法在沙箱中运行解码器。" in zh.output, zh.output
        assert "HUB_DECODER_SANDBOX=none" in zh.output
        sandbox.check.cache_clear()
        en = CliRunner(env={**env, **EN}).invoke(main, ["worker"])
        assert "bubblewrap (bwrap) is not installed, so decoders cannot be sandboxed." in en.output, en.output
    finally:
        sandbox._bwrap_binary.cache_clear()
        sandbox.check.cache_clear()
