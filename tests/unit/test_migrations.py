"""Migrations build the schema from nothing, and the models never drift from them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from hub.db import Base, get_database, make_engine
from hub.migrate import alembic_config
from tests.conftest import DATABASE_URL

ROOT = Path(__file__).resolve().parents[2]


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_models_match_migrations(app: Flask) -> None:
    # The test database was built by `alembic upgrade head` (tests/conftest.py).
    diff = _drift(get_database(app).engine)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database URL with nothing in it: a new SQLite file, or a new PostgreSQL schema.

    On PostgreSQL the shared test database keeps its own schema; this test works in a
    schema of its own (through search_path) and drops it afterwards.
    """
    if not DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'fresh' / 'hub.db'}"
        return
    schema = f"upgrade_{uuid.uuid4().hex[:12]}"
    admin = make_engine(DATABASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_hub_db_upgrade_builds_an_empty_database(empty_database: str, tmp_path: Path) -> None:
    engine = make_engine(empty_database)
    try:
        assert inspect(engine).get_table_names() == []
        env = {**os.environ, "HUB_DATA_DIR": str(tmp_path / "var"), "HUB_DATABASE_URL": empty_database}
        env["PYTHONPATH"] = str(ROOT)
        # As an operator runs it, from a directory that is not the project's.
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", "db", "upgrade"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "database is up to date" in done.stdout
        tables = set(inspect(engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
        assert _drift(engine) == []
        # Running it again changes nothing and still succeeds.
        again = subprocess.run(
            [sys.executable, "-m", "hub.cli", "db", "upgrade"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert again.returncode == 0, again.stderr
    finally:
        engine.dispose()
