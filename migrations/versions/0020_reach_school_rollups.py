"""reach: course-less roll-ups per school, day and week, for the views without a course filter

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 09:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

KINDS = ("play", "download", "zip")


def _kind(name: str) -> sa.Enum:
    return sa.Enum(*KINDS, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "reach_school_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("kind", _kind("reach_school_day_kind"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "school_id", "kind", name=op.f("pk_reach_school_day")),
    )
    op.create_index("ix_reach_school_day_school_id_day", "reach_school_day", ["school_id", "day"])
    op.create_table(
        "reach_school_week",
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("kind", _kind("reach_school_week_kind"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("week", "school_id", "kind", name=op.f("pk_reach_school_week")),
    )
    op.create_index("ix_reach_school_week_school_id_week", "reach_school_week", ["school_id", "week"])
    # Filled from the course-grain roll-ups already there, so no re-roll is needed.
    op.execute(
        "INSERT INTO reach_school_day (day, school_id, kind, count)"
        " SELECT day, school_id, kind, sum(count) FROM reach_day GROUP BY day, school_id, kind"
    )
    op.execute(
        "INSERT INTO reach_school_week (week, school_id, kind, count)"
        " SELECT week, school_id, kind, sum(count) FROM reach_week GROUP BY week, school_id, kind"
    )


def downgrade() -> None:
    op.drop_index("ix_reach_school_week_school_id_week", table_name="reach_school_week")
    op.drop_table("reach_school_week")
    op.drop_index("ix_reach_school_day_school_id_day", table_name="reach_school_day")
    op.drop_table("reach_school_day")
