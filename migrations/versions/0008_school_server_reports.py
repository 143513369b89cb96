"""school servers report their state upstream (manifest version, storage, LAN name)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_server_report",
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("manifest_version", sa.Integer(), nullable=False),
        sa.Column("applied_version", sa.Integer(), nullable=False),
        sa.Column("courses", sa.Integer(), nullable=False),
        sa.Column("storage_used", sa.BigInteger(), nullable=False),
        sa.Column("storage_free", sa.BigInteger(), nullable=True),
        sa.Column("storage_budget", sa.BigInteger(), nullable=False),
        sa.Column("host_name", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["school_id"], ["school.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("school_id"),
    )


def downgrade() -> None:
    op.drop_table("sync_server_report")
