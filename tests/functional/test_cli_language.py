"""The ``hub`` command as a Chinese school server's admin runs it: ``LANG=zh_CN.UTF-8`` gives Chinese.

Real commands in subprocesses, help, status and errors (ours and Click's), in Chinese with
a Chinese locale and in English with ``LANG=C``: what hub.clitext and the terminal's ``_``
promise, seen from outside.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
from sqlalchemy.orm import Session

from hub.cli import main

HUB = Path(sys.executable).with_name("hub")

# Words that stay as they are in Chinese text: names of programs, formats and the metavars
# Click prints in capitals (checked apart: any all-capitals word is a name).
NAMES = {"hub", "OER", "Hub", "Celery", "celery", "waitress", "cron", "tus", "nginx", "tar", "Ed25519", "API", "MiB"}


def _typed_words(group: click.Group) -> set[str]:
    """Command names and choice values: typed as they are (`hub school create --kind rural`)."""
    names = set(group.commands)
    for command in group.commands.values():
        for param in command.params:
            if isinstance(param.type, click.Choice):
                names |= {str(choice) for choice in param.type.choices}
        if isinstance(command, click.Group):
            names |= _typed_words(command)
    return names


NAMES |= _typed_words(main)


def run(env: dict[str, str], lang: str, *args: str) -> subprocess.CompletedProcess[str]:
    locale = {"LANG": lang, "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": ""}
    return subprocess.run(
        [str(HUB), *args],
        env={**os.environ, **env, **locale},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def english_words(text: str) -> list[str]:
    """Words of English in ``text``, leaving out options, paths, URLs, settings, quoted values and names."""
    found = []
    for line in text.splitlines():
        for token in line.split():
            if re.search(r"[/_.@:=`'\"]|^-", token):  # --option, path, URL, HUB_SETTING, e-mail, 'value'
                continue
            found += [w for w in re.findall(r"[A-Za-z]{2,}", token) if w not in NAMES and not w.isupper()]
    return found


def chinese(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text))


def test_help_in_chinese_and_in_english(hub_env: dict[str, str]) -> None:
    for args in (
        ["--help"],
        ["sync", "--help"],
        ["sync", "pull", "--help"],
        ["school", "create", "--help"],
        # The uploader's commands (hub.uploads) and the reach roll-up's.
        ["upload", "--help"],
        ["course", "--help"],
        ["course", "list", "--help"],
        ["reach", "--help"],
        ["reach", "rollup", "--help"],
    ):
        zh = run(hub_env, "zh_CN.UTF-8", *args)
        assert zh.returncode == 0, zh.stderr
        assert chinese(zh.stdout) and "用法：" in zh.stdout and "显示本帮助并退出。" in zh.stdout, zh.stdout
        assert not english_words(zh.stdout), (args, english_words(zh.stdout), zh.stdout)
        en = run(hub_env, "C", *args)
        assert en.returncode == 0, en.stderr
        assert "Usage:" in en.stdout and "Show this message and exit." in en.stdout, en.stdout
        # Chinese in English help only as examples of what to type or name: places, 教材, a lesson's title.
        examples = ("教材", "甘肃省", "定西市", "通渭县", "课时", "秒的认识")
        assert not chinese(re.sub("|".join(examples), "", en.stdout)), en.stdout
    listed = run(hub_env, "zh_CN.UTF-8", "sync", "--help").stdout
    assert "  pull       获取已签名的清单和缺少的文件；应用已完整的课程。" in listed  # short help: the first sentence
    # `upload` is a command of its own (not a group's): its line in `hub --help` is cut the same way.
    assert re.search(r"\n  upload +把文件 FILE 上传到一个课时", run(hub_env, "zh_CN.UTF-8", "--help").stdout)


def test_errors_in_chinese_and_in_english(hub_env: dict[str, str], db: Session) -> None:
    # Ours (a usage error), Click's (a missing option) and the service's (HubError's template).
    cases = [
        (["sync", "subscribe"], 2, "请只给出 --course", "give exactly one of --course"),
        (["school", "create", "某小学"], 2, "缺少选项 '--kind'", "Missing option '--kind'"),
        (["token", "list", "nobody@example.cn"], 1, "没有用户", "No user 'nobody@example.cn'"),
    ]
    for args, code, zh_text, en_text in cases:
        zh = run(hub_env, "zh_CN.UTF-8", *args)
        assert zh.returncode == code and zh_text in zh.stderr and "错误：" in zh.stderr, zh.stderr
        assert not english_words(zh.stderr), (args, english_words(zh.stderr), zh.stderr)
        en = run(hub_env, "C", *args)
        assert en.returncode == code and en_text in en.stderr and "Error: " in en.stderr, en.stderr
        assert not chinese(en.stderr.replace("某小学", "")), en.stderr


def test_sync_status_of_a_fresh_school_server(hub_env: dict[str, str], db: Session) -> None:
    zh = run(hub_env, "zh_CN.UTF-8", "sync", "status")
    assert zh.returncode == 0, zh.stderr
    assert zh.stdout.startswith("清单版本 ") and "门课程" in zh.stdout, zh.stdout
    assert not english_words(zh.stdout), zh.stdout
    en = run(hub_env, "C", "sync", "status")
    assert en.returncode == 0 and en.stdout.startswith("manifest version "), en.stdout
    # Machine output is the same in every language.
    zh_json, en_json = (
        run(hub_env, "zh_CN.UTF-8", "sync", "status", "--json"),
        run(hub_env, "C", "sync", "status", "--json"),
    )
    assert zh_json.returncode == 0 and en_json.returncode == 0
    zh_state, en_state = json.loads(zh_json.stdout), json.loads(en_json.stdout)
    assert zh_state.pop("at") and en_state.pop("at")  # the moment each ran
    assert zh_state == en_state and zh_json.stdout.count("\n") == en_json.stdout.count("\n")


def test_search_check_of_a_fresh_hub(hub_env: dict[str, str], db: Session) -> None:
    zh = run(hub_env, "zh_CN.UTF-8", "search", "check")
    assert zh.returncode == 1 and "索引：缺失" in zh.stdout and "索引与数据库不一致" in zh.stderr, (
        zh.stdout,
        zh.stderr,
    )
    assert not english_words(zh.stdout + zh.stderr), zh.stdout + zh.stderr
    en = run(hub_env, "C", "search", "check")
    assert en.returncode == 1 and "index: missing" in en.stdout and "does not match" in en.stderr, en.stdout


def test_sync_status_says_each_run_in_the_terminals_language(hub_env: dict[str, str], db: Session) -> None:
    from hub.errors import Text
    from hub.sync import services

    # A run as a pull closes it (hub.sync.wording), and one from before the wording was kept.
    summary = Text(
        "Skipped %(courses)d courses that do not fit the storage budget or the disk.",
        courses=1,
    )
    skipped = Text(
        "course %(id)s '%(title)s' (%(need)s more than the %(left)s left)",
        id=8,
        title="二次函数",
        need="1.2 MB",
        left="0 B",
    )
    services.finish_run(db, services.start_run(db, "pull"), "partial", summary, [skipped])
    old = services.start_run(db, "pull")
    services.finish_run(db, old, "ok")
    old.message, old.wording = "Up to date with manifest version 2: 1 courses applied, 0 removed, 0 unchanged.", None
    db.commit()

    zh = run(hub_env, "zh_CN.UTF-8", "sync", "status")
    assert zh.returncode == 0, zh.stderr
    assert "跳过了 1 门超出存储预算或磁盘空间的课程。" in zh.stdout, zh.stdout
    assert "已跳过：课程 8《二次函数》（比剩余的 0 B 多需 1.2 MB）" in zh.stdout, zh.stdout
    # The old row's English, as it is: nothing else in the output is English.
    assert "Up to date with manifest version 2: 1 courses applied, 0 removed, 0 unchanged." in zh.stdout
    assert not english_words(zh.stdout.replace(old.message, "")), zh.stdout
    en = run(hub_env, "C", "sync", "status")
    assert en.returncode == 0 and str(summary) in en.stdout and f"skipped: {skipped}" in en.stdout, en.stdout
    assert not chinese(en.stdout.replace("二次函数", "")), en.stdout


def _school_server(hub_env: dict[str, str]) -> dict[str, str]:
    """A school server whose upstream's port is closed: nothing listens there."""
    import socket

    from hub.sync import manifest as mf

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        **hub_env,
        "HUB_UPSTREAM_URL": f"http://127.0.0.1:{port}",
        "HUB_UPSTREAM_PUBLIC_KEY": mf.public_key_text(mf.generate_private_key()),
        "HUB_UPSTREAM_TOKEN": "t",
    }


def test_a_pull_that_cannot_reach_its_upstream_says_why_in_chinese(hub_env: dict[str, str], db: Session) -> None:
    env = _school_server(hub_env)
    zh = run(env, "zh_CN.UTF-8", "sync", "pull")
    assert zh.returncode == 1, zh.stderr
    assert "同步失败：无法连接上级平台：上级平台拒绝连接（它是否在运行？）。" in zh.stderr, zh.stderr
    assert not english_words(zh.stderr), (english_words(zh.stderr), zh.stderr)
    en = run(env, "C", "sync", "pull")
    assert en.returncode == 1 and "refused the connection (is it running?)" in en.stderr, en.stderr
    assert not chinese(en.stderr), en.stderr

    # Read later, in the reader's language; the socket's own words stay in the English column for the technician.
    status = run(env, "zh_CN.UTF-8", "sync", "status")
    assert status.returncode == 0 and "上级平台拒绝连接" in status.stdout, status.stdout
    assert not english_words(status.stdout), (english_words(status.stdout), status.stdout)
    runs = json.loads(run(env, "zh_CN.UTF-8", "sync", "status", "--json").stdout)["runs"]
    assert runs and all("ConnectionRefusedError" in r["message"] for r in runs), runs


def test_a_bad_manifest_and_damaged_bundles_are_refused_in_chinese(
    hub_env: dict[str, str], db: Session, tmp_path: Path
) -> None:
    env = _school_server(hub_env)
    unsigned = tmp_path / "usb"
    unsigned.mkdir()
    (unsigned / "manifest.json").write_bytes(b'{"version": 3, "courses": []}\n')
    garbage = os.urandom(4096)
    zipped, tarred = tmp_path / "bundle.zip", tmp_path / "bundle.tar.gz"
    zipped.write_bytes(b"PK\x03\x04" + garbage)  # begins like a ZIP, cut before its directory
    tarred.write_bytes(b"\x1f\x8b\x08\x00" + garbage)  # a gzip header, then bytes no gzip wrote
    expected = {
        unsigned: ("清单没有签名", "is not signed"),
        zipped: ("不是可读的 ZIP 文件", "not a readable ZIP file"),
        tarred: ("数据已损坏，或者它不是数据包", "its data is damaged or it is not a bundle"),
    }
    for path, (zh_text, en_text) in expected.items():
        zh = run(env, "zh_CN.UTF-8", "bundle", "import", str(path))
        assert zh.returncode == 1 and zh_text in zh.stderr and "错误：" in zh.stderr, zh.stderr
        assert not english_words(zh.stderr), (path.name, english_words(zh.stderr), zh.stderr)
        en = run(env, "C", "bundle", "import", str(path))
        assert en.returncode == 1 and en_text in en.stderr, en.stderr
    status = run(env, "zh_CN.UTF-8", "sync", "status")
    assert status.returncode == 0 and "清单没有签名" in status.stdout, status.stdout
    assert not english_words(status.stdout), (english_words(status.stdout), status.stdout)
