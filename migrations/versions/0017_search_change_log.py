"""search: the log of index changes every replica follows, and what each replica reports

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_change",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_change")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_search_change_created_at"), "search_change", ["created_at"])
    op.create_table(
        "search_replica",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("generation", sa.String(length=100), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("checked_cursor", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_search_replica")),
    )


def downgrade() -> None:
    op.drop_table("search_replica")
    op.drop_index(op.f("ix_search_change_created_at"), table_name="search_change")
    op.drop_table("search_change")
