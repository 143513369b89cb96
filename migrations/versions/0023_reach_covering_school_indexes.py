"""reach: covering school indexes on the weekly roll-ups, vacuumed after each roll-up

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 16:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# (table, time column, the columns a county's question reads besides school and time)
TABLES = (
    ("reach_week", "week", ["course_id", "kind", "count"]),
    ("reach_school_week", "week", ["kind", "count"]),
)
# Autovacuum visits a table after this many rows inserted, updated or deleted, whatever its
# size (the default waits for a fifth of it: months of roll-ups), so the pages a roll-up wrote
# are soon all-visible and the covering indexes answer without reading them (hub.reach.models).
VACUUM_AFTER = 10_000


def upgrade() -> None:
    for table, when, columns in TABLES:
        op.drop_index(f"ix_{table}_school_id_{when}", table_name=table)
        op.create_index(f"ix_{table}_school_id_{when}_covering", table, ["school_id", when, *columns])
    if op.get_bind().dialect.name == "postgresql":
        for table, _, _ in TABLES:
            op.execute(
                f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0,"
                f" autovacuum_vacuum_threshold = {VACUUM_AFTER}, autovacuum_vacuum_insert_scale_factor = 0,"
                f" autovacuum_vacuum_insert_threshold = {VACUUM_AFTER})"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, _, _ in TABLES:
            op.execute(
                f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
                " autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold)"
            )
    for table, when, _ in TABLES:
        op.drop_index(f"ix_{table}_school_id_{when}_covering", table_name=table)
        op.create_index(f"ix_{table}_school_id_{when}", table, ["school_id", when])
