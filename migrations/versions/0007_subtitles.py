"""subtitle tracks of materials

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subtitle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column(
            "language",
            sa.Enum("zh", "en", name="subtitle_language", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("cues", sa.Integer(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["blob_sha256"], ["blob.sha256"], name=op.f("fk_subtitle_blob_sha256_blob")),
        sa.ForeignKeyConstraint(
            ["material_id"], ["material.id"], name=op.f("fk_subtitle_material_id_material"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subtitle")),
        sa.UniqueConstraint("material_id", "language", name=op.f("uq_subtitle_material_id")),
    )
    with op.batch_alter_table("subtitle") as batch:
        batch.create_index(batch.f("ix_subtitle_blob_sha256"), ["blob_sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subtitle") as batch:
        batch.drop_index(batch.f("ix_subtitle_blob_sha256"))
    op.drop_table("subtitle")
