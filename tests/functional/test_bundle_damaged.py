"""A bundle with a damaged blob: `hub bundle import` holds back what needs it and names the lessons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.sync import bundles
from tests.functional import test_bundle_import, test_sync
from tests.functional.test_bundle_import import School
from tests.functional.test_sync import RURAL, VIDEO, Upstream, run_hub

pytestmark = pytest.mark.slow

# test_sync's upstream (a famous school's course of two lessons) and a school server that mirrors it.
upstream = test_sync.upstream
origin = test_bundle_import.origin
school = test_bundle_import.school


def test_a_damaged_blob_holds_back_its_course_and_names_its_lessons(
    origin: Upstream, school: School, hub_env: dict[str, str], tmp_path: Path
) -> None:
    before = school.catalog()
    usb = tmp_path / "usb"
    usb.mkdir()
    state = usb / "state.json"
    assert run_hub(school.env, "sync", "status", "--state-out", str(state)).exit_code == 0
    # Upstream, the second lesson gets a new video: the one blob the bundle carries.
    sha = origin.set_rendition(origin.material(origin.lesson_ids[1]), "video-360p", os.urandom(VIDEO))
    bundle = usb / "bundle"
    args = ["bundle", "export", "--to", str(bundle), "--school", RURAL, "--state", str(state)]
    assert run_hub(hub_env, *args).exit_code == 0
    blob = bundle / bundles.blob_name(sha)
    blob.write_bytes(b"\0" * blob.stat().st_size)  # a bad sector on the drive

    done = school.import_(bundle)
    assert done.returncode == 1
    [held] = [line for line in done.stderr.splitlines() if line.startswith("skipped:")]
    assert "lessons held back: '公式法'" in held and "'配方法'" not in held, held
    assert school.catalog() == before  # the course stays whole at its old version
