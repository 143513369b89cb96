"""course review: the reviewer role and its region, the submitted status, the course history

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


NEW_STATUS_SQL = "status IN ('draft', 'submitted', 'published', 'withdrawn')"
OLD_STATUS_SQL = "status IN ('draft', 'published', 'withdrawn')"
# The role column is VARCHAR(8) (0001 gave no length: as long as "uploader"); "reviewer" fits.
NEW_ROLE_SQL = "role IN ('admin', 'uploader', 'teacher', 'reviewer')"
OLD_ROLE_SQL = "role IN ('admin', 'uploader', 'teacher')"


def upgrade() -> None:
    # The CHECK constraints list the values: they are dropped and made again with the new ones
    # (batch mode: SQLite rebuilds the table; PostgreSQL alters it in place).
    with op.batch_alter_table("course") as batch:
        batch.drop_constraint(op.f("ck_course_course_status"), type_="check")
        batch.create_check_constraint(op.f("ck_course_course_status"), NEW_STATUS_SQL)
    with op.batch_alter_table("user_account") as batch:
        batch.drop_constraint(op.f("ck_user_account_user_role"), type_="check")
        batch.create_check_constraint(op.f("ck_user_account_user_role"), NEW_ROLE_SQL)
        # Empty for everyone but reviewers, and for them it means "my school's region".
        batch.add_column(sa.Column("region", sa.String(length=100), nullable=False, server_default=""))
    op.create_table(
        "course_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            _enum("course_event_action", "submitted", "approved", "returned", "published", "withdrawn"),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_email", sa.String(length=254), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["user_account.id"], name=op.f("fk_course_event_actor_id_user_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_course_event_course_id_course"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_course_event")),
    )
    with op.batch_alter_table("course_event") as batch:
        batch.create_index(batch.f("ix_course_event_course_id"), ["course_id"], unique=False)


def downgrade() -> None:
    # Courses waiting for review go back to drafts and reviewers lose their accounts' role:
    # the old schema has no word for either.
    op.execute("UPDATE course SET status = 'draft' WHERE status = 'submitted'")
    op.execute("DELETE FROM user_account WHERE role = 'reviewer'")
    with op.batch_alter_table("course_event") as batch:
        batch.drop_index(batch.f("ix_course_event_course_id"))
    op.drop_table("course_event")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("region")
        batch.drop_constraint(op.f("ck_user_account_user_role"), type_="check")
        batch.create_check_constraint(op.f("ck_user_account_user_role"), OLD_ROLE_SQL)
    with op.batch_alter_table("course") as batch:
        batch.drop_constraint(op.f("ck_course_course_status"), type_="check")
        batch.create_check_constraint(op.f("ck_course_course_status"), OLD_STATUS_SQL)
