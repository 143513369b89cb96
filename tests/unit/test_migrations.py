"""Migrations build the schema from nothing, and the models never drift from them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
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


def test_the_area_rollups_migration_fills_what_the_rollup_makes(empty_database: str) -> None:
    """0021 fills the area tables from the roll-ups already there: the same rows the roll-up itself makes."""
    from alembic import command
    from sqlalchemy import delete, select
    from sqlalchemy.orm import Session

    from hub.accounts.models import School
    from hub.catalog.models import Course
    from hub.migrate import upgrade
    from hub.reach import rollup
    from hub.reach.models import (
        ReachCountyDay,
        ReachCountyWeek,
        ReachSubjectDay,
        ReachSubjectWeek,
        RolledArea,
        RolledCourse,
        UsageCount,
    )

    upgrade(empty_database)
    engine = make_engine(empty_database)
    tables = (ReachCountyDay, ReachCountyWeek, ReachSubjectDay, ReachSubjectWeek, RolledArea, RolledCourse)

    def snapshot(session: Session) -> list[list[tuple[object, ...]]]:
        return [sorted(tuple(r) for r in session.execute(select(*t.__table__.c))) for t in tables]

    try:
        with Session(engine) as session:
            schools = [
                School(name="甲", kind="famous", region="北京市", county="海淀区", rural=False),
                School(name="乙", kind="rural", region="甘肃省 定西市", county="通渭县", rural=True),
                School(name="丙", kind="rural", region="甘肃省 兰州市", county="城关区", rural=True),
            ]
            session.add_all(schools)
            session.flush()
            courses = [
                Course(school_id=schools[0].id, title=t, category="curriculum", subject=s, grades_mask=m,
                       language="zh", license="CC-BY-4.0", status="published")
                for t, s, m in (("几何", "math", (1 << 7) | (1 << 8)), ("古诗", "chinese", 1 << 3))
            ]  # fmt: skip
            session.add_all(courses)
            session.flush()
            today = date(2026, 11, 25)
            for n in range(40):
                session.add(
                    UsageCount(
                        day=today - timedelta(days=n * 3), school_id=(0, *[s.id for s in schools])[n % 4],
                        course_id=courses[n % 2].id, lesson_id=1, material_id=1,
                        kind=("play", "download", "zip")[n % 3], source="hub", count=1 + n % 7,
                    )
                )  # fmt: skip
            session.commit()
            rollup.roll_up(session, check_days=None, everything=True, today=today)
            made = snapshot(session)
            assert all(made)
        command.downgrade(alembic_config(empty_database), "0020")
        upgrade(empty_database)
        with Session(engine) as session:
            assert snapshot(session) == made
            for t in tables:
                session.execute(delete(t))
            session.commit()
    finally:
        engine.dispose()
