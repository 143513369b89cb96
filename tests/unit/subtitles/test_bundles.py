"""USB bundles carry subtitle tracks to school servers that read them, and not to older ones."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from flask import Flask
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.cli import main
from hub.subtitles import services as subtitles
from hub.sync import bundles
from tests.conftest import Accounts
from tests.support.courses import seed_course

SRT = "1\n00:00:01,000 --> 00:00:02,000\n勾股定理\n".encode("gbk")


def test_bundles_carry_tracks_when_the_school_reads_them(
    app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path
) -> None:
    famous, rural = make.school("海淀实验小学", "famous"), make.school("山村小学", "rural")
    accounts.pair_schools(db, famous, rural)
    uploader = make.user("up@haidian.cn", famous, "uploader")
    seeded = seed_course(app.extensions["hub.storage"], db, famous.id)
    track = subtitles.attach_subtitle(
        db, app.extensions["hub.storage"], uploader, seeded.material_ids["video"], SRT, language="zh"
    )
    db.commit()
    runner = CliRunner(env=hub_env)
    assert runner.invoke(main, ["keys", "generate"]).exit_code == 0
    assert (
        runner.invoke(main, ["sync", "subscribe", "--school", "山村小学", "--paired-with", "海淀实验小学"]).exit_code
        == 0
    )

    old_state = tmp_path / "old-state.json"  # what a school server of an earlier release writes
    old_state.write_text(json.dumps({"format": bundles.STATE_FORMAT, "manifest_version": 0, "blobs": []}))
    new_state = tmp_path / "new-state.json"
    new_state.write_text(json.dumps({**json.loads(old_state.read_text()), "with": ["subtitles"]}))
    assert bundles.reads_subtitles(None) and bundles.reads_subtitles(new_state)
    assert not bundles.reads_subtitles(old_state)

    for name, state, carried in (("first", None, True), ("old", old_state, False), ("new", new_state, True)):
        target = tmp_path / name
        args = ["bundle", "export", "--to", str(target), "--school", "山村小学"]
        done = runner.invoke(main, [*args, "--state", str(state)] if state else args)
        assert done.exit_code == 0, done.output
        manifest = (target / bundles.MANIFEST_NAME).read_bytes()
        assert (b'"subtitles":[' in manifest) is carried, name
        assert (target / bundles.blob_name(track.blob_sha256)).exists() is carried, name
