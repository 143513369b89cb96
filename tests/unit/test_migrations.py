"""Migrations build the schema from nothing, and the models never drift from them."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from hub.db import Base, get_database


def test_models_match_migrations(app: Flask) -> None:
    # The test database was built by `alembic upgrade head` (tests/conftest.py).
    with get_database(app).engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"
