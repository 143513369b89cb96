"""README.md's "School servers" commands, as written there, bring up a school server that mirrors a course.

The first fenced block of that section is run line by line: the lines under a comment
starting "upstream" on the upstream hub (a real `hub serve` process answers the school
server), the lines under "school server" on a fresh data directory, whose environment
names nothing but that directory (`hub sync init` stores the upstream's settings in it).
Only the upstream's URL, the public key and the token the block prints are filled in
(the values of --upstream, --public-key and --token), as a technician would;
HUB_TIMEZONE puts the school in its night, so the block's own --window holds. When the
README and the code drift apart, this fails.
"""

from __future__ import annotations

import io
import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import cli as hub_cli
from hub import create_app
from hub.catalog import services as catalog
from hub.catalog.models import Course
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import get_database
from hub.media.models import Blob, Rendition
from tests.conftest import COURSE, Accounts, hub_settings
from tests.functional.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
FAMOUS = "海淀实验小学"  # created by the README's "Running it yourself"


def school_server_block() -> list[tuple[str, list[str]]]:
    """(side, hub arguments) of each command line of the section's first ``sh`` block."""
    section = README.read_text().split("## School servers", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's School servers section has no sh block"
    side, commands = "", []
    for line in block.group(1).splitlines():
        if line.startswith("# "):
            side = "school" if line.startswith("# school server") else "upstream" if "upstream" in line else side
            continue
        words = shlex.split(line, comments=True)
        if words:
            assert words[0].endswith("bin/hub") and side, line
            commands.append((side, words[1:]))
    return commands


def night_zone(now: datetime) -> str:
    """A fixed-offset zone in which it is 23:xx now: inside any 22:00-06:00 window."""
    offset = (23 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"  # POSIX signs: Etc/GMT-8 is UTC+8


def _run(env: dict[str, str], args: list[str]) -> Result:
    result = CliRunner(env=env).invoke(hub_cli.main, args)
    assert result.exit_code == 0, f"hub {shlex.join(args)}:\n{result.output}"
    return result


def test_the_readme_brings_up_a_school_server(
    app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path
) -> None:
    famous = make.school(FAMOUS, "famous")
    uploader = make.user("up@haidian.example", famous, "uploader")
    storage = app.extensions["hub.storage"]
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    material = catalog.add_material(
        db, storage, uploader, lesson.id, io.BytesIO(os.urandom(1000)), filename="a.mp4", title="配方法"
    )
    for profile in ("video-360p", "poster"):
        stored = storage.store(io.BytesIO(os.urandom(3000)))
        db.add(Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4"))
        db.add(Rendition(material=material, profile=profile, status="ready", blob_sha256=stored.sha256))
    catalog.publish_course(db, uploader, course.id)
    db.commit()
    upstream = LiveServer(hub_env, tmp_path)
    data = tmp_path / "school"
    data.mkdir()
    school_env = {
        "HUB_DATA_DIR": str(data),
        "HUB_DATABASE_URL": f"sqlite:///{data / 'hub.db'}",
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_SYNC_DISK_RESERVE": "0",
        "HUB_TIMEZONE": night_zone(datetime.now(UTC)),
    }
    printed = {"--upstream": upstream.url}
    try:
        commands = school_server_block()
        assert {side for side, _ in commands} == {"upstream", "school"}
        assert any(args[:2] == ["sync", "init"] for _, args in commands)
        for side, args in commands:
            args = [printed[args[i - 1]] if i and args[i - 1] in printed else a for i, a in enumerate(args)]
            result = _run(hub_env if side == "upstream" else school_env, args)
            last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
            if args[:2] == ["keys", "generate"]:
                printed["--public-key"] = last
            elif args[:2] == ["token", "create"]:
                printed["--token"] = last
            elif args[:2] == ["sync", "init"]:
                assert "password: " in result.output, result.output
            elif args[:2] == ["sync", "pull"]:
                assert "Up to date" in result.output, result.output
    finally:
        upstream.process.stop()

    assert "HUB_UPSTREAM_TOKEN=" in (data / "hub.conf").read_text()
    mirror = create_app(hub_settings(school_env))
    try:
        with get_database(mirror).session() as session:
            assert session.scalars(select(Course.title)).all() == [COURSE["title"]]
    finally:
        get_database(mirror).engine.dispose()
    assert "missing: 0" in _run(school_env, ["search", "check"]).output
