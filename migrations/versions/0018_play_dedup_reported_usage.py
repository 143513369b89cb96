"""plays seen per device and day (de-duplication), and usage already reported by a school server

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reach_play_seen",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "device", "material_id", name=op.f("pk_reach_play_seen")),
    )
    op.create_table(
        "mirror_reported_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_reported_usage")),
        sa.UniqueConstraint(
            "day", "course_id", "lesson_id", "material_id", "kind", name=op.f("uq_mirror_reported_usage_day")
        ),
    )


def downgrade() -> None:
    op.drop_table("mirror_reported_usage")
    op.drop_table("reach_play_seen")
