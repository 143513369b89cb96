from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, Settings


def test_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.load({"HUB_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/hub.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert settings.storage == "local"
    assert settings.storage_dir == tmp_path / "storage"
    assert settings.index_dir == tmp_path / "index"


def test_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings.load({"HUB_DATA_DIR": str(tmp_path)}).secret_key
    again = Settings.load({"HUB_DATA_DIR": str(tmp_path)}).secret_key
    other = Settings.load({"HUB_DATA_DIR": str(tmp_path / "other")}).secret_key
    assert len(first) >= 40
    assert first == again != other
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings.load({"HUB_DATA_DIR": str(tmp_path), "HUB_SECRET_KEY": "given"}).secret_key == "given"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"HUB_STORAGE": "ftp"}, "HUB_STORAGE"),
        ({"HUB_DATABASE_URL": "mysql://x"}, "HUB_DATABASE_URL"),
        ({"HUB_BROKER_URL": "kafka://x"}, "HUB_BROKER_URL"),
        ({"HUB_MAX_UPLOAD_BYTES": "-5"}, "HUB_MAX_UPLOAD_BYTES"),
        ({"HUB_PAGE_SIZE": "many"}, "HUB_PAGE_SIZE"),
        ({"HUB_STORAGE": "s3"}, "HUB_S3_BUCKET"),
        ({"HUB_S3_ENDPOINT_URL": "localhost:9000"}, "HUB_S3_ENDPOINT_URL"),
        ({"HUB_NO_SUCH_THING": "1"}, "HUB_NO_SUCH_THING"),
    ],
)
def test_bad_values_fail_naming_the_setting(tmp_path: Path, overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.load({"HUB_DATA_DIR": str(tmp_path), **overrides})


def test_environment_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HUB_PAGE_SIZE", "7")
    assert Settings.load().page_size == 7


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, _default, doc in Settings.describe():
        assert doc
        assert f"`{name}`" in readme, f"{name} is missing from README.md's configuration table"
