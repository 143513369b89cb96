"""push by the teaching calendar: subscriptions to a textbook, a school server's term calendars

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NEW_KIND_SQL = "kind IN ('course', 'subject', 'paired', 'textbook')"
OLD_KIND_SQL = "kind IN ('course', 'subject', 'paired')"


def upgrade() -> None:
    # The CHECK constraint lists the kinds: dropped and made again (SQLite rebuilds the table).
    with op.batch_alter_table("sync_subscription") as batch:
        batch.drop_constraint(op.f("ck_sync_subscription_subscription_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_subscription_subscription_kind"), NEW_KIND_SQL)
        batch.add_column(sa.Column("textbook_key", sa.String(length=100), nullable=True))
    op.create_table(
        "sync_calendar",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("textbook_key", sa.String(length=100), nullable=False),
        sa.Column("term_start", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_calendar")),
        sa.UniqueConstraint("textbook_key", name=op.f("uq_sync_calendar_textbook_key")),
    )
    op.create_table(
        "sync_calendar_week",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calendar_id", sa.Integer(), nullable=False),
        sa.Column("node_key", sa.String(length=50), nullable=False),
        sa.Column("week", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["sync_calendar.id"],
            name=op.f("fk_sync_calendar_week_calendar_id_sync_calendar"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_calendar_week")),
        sa.UniqueConstraint("calendar_id", "node_key", name=op.f("uq_sync_calendar_week_calendar_id")),
    )
    op.create_index(op.f("ix_sync_calendar_week_calendar_id"), "sync_calendar_week", ["calendar_id"])


def downgrade() -> None:
    op.drop_table("sync_calendar_week")
    op.drop_table("sync_calendar")
    op.execute("DELETE FROM sync_subscription WHERE kind = 'textbook'")
    with op.batch_alter_table("sync_subscription") as batch:
        batch.drop_column("textbook_key")
        batch.drop_constraint(op.f("ck_sync_subscription_subscription_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_subscription_subscription_kind"), OLD_KIND_SQL)
