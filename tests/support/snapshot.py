"""Every row of every table, to show that a refused request changed nothing."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from hub.db import Base, get_database

Snapshot = dict[str, list[tuple[object, ...]]]

# Records of access, not of content: a refused request may well have used a valid token
# (api_token.last_used_at) or failed a sign-in (login_failure rows count it on purpose).
# And the outbox's delivery state: the dispatcher thread hands earlier commits' rows to the
# broker whenever it gets to them, a refused request or not (which rows exist still counts).
ACCESS_RECORDS = {
    "api_token": {"last_used_at"},
    "user_account": {"last_login_at"},
    "outbox": {"sent_at", "attempts", "last_error"},
}
ACCESS_TABLES = {"login_failure"}


def database_snapshot(app: Flask) -> Snapshot:
    """All rows of all tables (outbox and change feed included), in primary-key order.

    Read on a fresh connection, so nothing a test's own session holds can hide a write.
    """
    with get_database(app).engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(
                    select(*(c for c in table.columns if c.name not in ACCESS_RECORDS.get(table.name, set()))).order_by(
                        *table.primary_key.columns
                    )
                )
            ]
            for table in Base.metadata.sorted_tables
            if table.name not in ACCESS_TABLES
        }
