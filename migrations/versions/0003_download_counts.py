"""download counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "download_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_sha256"], ["blob.sha256"], name=op.f("fk_download_count_blob_sha256_blob"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_download_count_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_count")),
        sa.UniqueConstraint("blob_sha256", "day", "school_id", name=op.f("uq_download_count_blob_sha256")),
    )
    with op.batch_alter_table("download_count", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_download_count_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_download_count_school_id"), ["school_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("download_count", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_count_school_id"))
        batch_op.drop_index(batch_op.f("ix_download_count_day"))

    op.drop_table("download_count")
