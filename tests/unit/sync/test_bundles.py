"""`hub bundle export` refuses a school that subscribes to nothing, and says how to subscribe it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.cli import main
from tests.conftest import Accounts

FAMOUS = "海淀实验小学"
RURAL = "山村小学"


@pytest.fixture
def upstream(hub_env: dict[str, str]) -> CliRunner:
    runner = CliRunner(env=hub_env)
    assert runner.invoke(main, ["keys", "generate"]).exit_code == 0
    return runner


@pytest.mark.parametrize("archive", ["bundle", "bundle.zip"])
def test_export_for_a_school_without_subscriptions_is_refused(
    upstream: CliRunner, db: Session, make: Accounts, tmp_path: Path, archive: str
) -> None:
    accounts.pair_schools(db, make.school(FAMOUS, "famous"), make.school(RURAL, "rural"))
    db.commit()
    target = tmp_path / "usb" / archive
    target.parent.mkdir()
    refused = upstream.invoke(main, ["bundle", "export", "--to", str(target), "--school", RURAL])
    assert refused.exit_code == 1, refused.output
    assert f'hub sync subscribe --school "{RURAL}" --paired-with "{FAMOUS}"' in refused.output
    assert list(target.parent.iterdir()) == []  # nothing written, not even an empty bundle

    assert upstream.invoke(main, ["sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS]).exit_code == 0
    written = upstream.invoke(main, ["bundle", "export", "--to", str(target), "--school", RURAL])
    assert written.exit_code == 0, written.output
    assert target.exists()


def test_an_unpaired_school_is_shown_another_way_to_subscribe(
    upstream: CliRunner, make: Accounts, tmp_path: Path
) -> None:
    make.school(RURAL, "rural")
    refused = upstream.invoke(main, ["bundle", "export", "--to", str(tmp_path / "b"), "--school", RURAL])
    assert refused.exit_code == 1
    assert f'hub sync subscribe --school "{RURAL}" --subject math' in refused.output
    assert not (tmp_path / "b").exists()
