"""reach: the supervisor role with its county, and the roll-up tables the dashboard reads

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

NEW_ROLE_SQL = "role IN ('admin', 'uploader', 'teacher', 'reviewer', 'supervisor')"
OLD_ROLE_SQL = "role IN ('admin', 'uploader', 'teacher', 'reviewer')"
KINDS = ("play", "download", "zip")


def _kind(name: str) -> sa.Enum:
    return sa.Enum(*KINDS, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.drop_constraint(op.f("ck_user_account_user_role"), type_="check")
        # VARCHAR(8) since 0001 (as long as "uploader"): "supervisor" needs 10.
        batch.alter_column("role", type_=sa.String(length=10), existing_nullable=False)
        batch.create_check_constraint(op.f("ck_user_account_user_role"), NEW_ROLE_SQL)
        # A supervisor's county inside their region; empty: the whole region.
        batch.add_column(sa.Column("county", sa.String(length=100), nullable=False, server_default=""))
    op.create_table(
        "reach_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("kind", _kind("reach_day_kind"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "school_id", "course_id", "lesson_id", "kind", name=op.f("pk_reach_day")),
    )
    op.create_index("ix_reach_day_course_id_day", "reach_day", ["course_id", "day"])
    op.create_index("ix_reach_day_school_id_day", "reach_day", ["school_id", "day"])
    op.create_table(
        "reach_week",
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("kind", _kind("reach_week_kind"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("week", "school_id", "course_id", "kind", name=op.f("pk_reach_week")),
    )
    op.create_index("ix_reach_week_course_id_week", "reach_week", ["course_id", "week"])
    op.create_index("ix_reach_week_school_id_week", "reach_week", ["school_id", "week"])
    op.create_table(
        "reach_rolled_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("raw_rows", sa.Integer(), nullable=False),
        sa.Column("raw_total", sa.BigInteger(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_reach_rolled_day")),
    )
    op.create_table(
        "reach_pending_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_reach_pending_day")),
    )


def downgrade() -> None:
    op.drop_table("reach_pending_day")
    op.drop_table("reach_rolled_day")
    op.drop_index("ix_reach_week_school_id_week", table_name="reach_week")
    op.drop_index("ix_reach_week_course_id_week", table_name="reach_week")
    op.drop_table("reach_week")
    op.drop_index("ix_reach_day_school_id_day", table_name="reach_day")
    op.drop_index("ix_reach_day_course_id_day", table_name="reach_day")
    op.drop_table("reach_day")
    # Supervisors lose their accounts: the old schema has no word for them.
    op.execute("DELETE FROM user_account WHERE role = 'supervisor'")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("county")
        batch.drop_constraint(op.f("ck_user_account_user_role"), type_="check")
        batch.alter_column("role", type_=sa.String(length=8), existing_nullable=False)
        batch.create_check_constraint(op.f("ck_user_account_user_role"), OLD_ROLE_SQL)
