"""Every row of every table, to show that a refused request changed nothing."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from hub.db import Base, get_database

Snapshot = dict[str, list[tuple[object, ...]]]


def database_snapshot(app: Flask) -> Snapshot:
    """All rows of all tables (outbox and change feed included), in primary-key order.

    Read on a fresh connection, so nothing a test's own session holds can hide a write.
    """
    with get_database(app).engine.connect() as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }
