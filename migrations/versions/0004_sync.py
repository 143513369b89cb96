"""sync: subscriptions, manifest versions, count reports; mirror state, mirrored courses, run log

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:18:20.290165
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_reported_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_reported_count")),
        sa.UniqueConstraint("blob_sha256", "day", name=op.f("uq_mirror_reported_count_blob_sha256")),
    )
    op.create_table(
        "mirror_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("manifest_version", sa.Integer(), nullable=False),
        sa.Column("applied_version", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("pending_report", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_state")),
    )
    op.create_table(
        "sync_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "ok",
                "partial",
                "refused",
                "failed",
                name="sync_run_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("manifest_version", sa.Integer(), nullable=True),
        sa.Column("files_total", sa.Integer(), nullable=False),
        sa.Column("files_done", sa.Integer(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("bytes_transferred", sa.BigInteger(), nullable=False),
        sa.Column("courses_applied", sa.Integer(), nullable=False),
        sa.Column("courses_removed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_run_started_at"), ["started_at"], unique=False)

    op.create_table(
        "sync_count_report",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_sync_count_report_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_count_report")),
    )
    with op.batch_alter_table("sync_count_report", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_count_report_school_id"), ["school_id"], unique=False)

    op.create_table(
        "sync_manifest_state",
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_sync_manifest_state_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("school_id", name=op.f("pk_sync_manifest_state")),
    )
    op.create_table(
        "mirror_course",
        sa.Column("upstream_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.String(length=16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_mirror_course_course_id_course"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("upstream_id", name=op.f("pk_mirror_course")),
        sa.UniqueConstraint("course_id", name=op.f("uq_mirror_course_course_id")),
    )
    op.create_table(
        "sync_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "course",
                "subject",
                "paired",
                name="subscription_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=32), nullable=True),
        sa.Column("grade_min", sa.Integer(), nullable=True),
        sa.Column("grade_max", sa.Integer(), nullable=True),
        sa.Column("paired_school_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_sync_subscription_course_id_course"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["paired_school_id"],
            ["school.id"],
            name=op.f("fk_sync_subscription_paired_school_id_school"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["school.id"], name=op.f("fk_sync_subscription_school_id_school"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_subscription")),
    )
    with op.batch_alter_table("sync_subscription", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_subscription_school_id"), ["school_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_subscription_school_id"))

    op.drop_table("sync_subscription")
    op.drop_table("mirror_course")
    op.drop_table("sync_manifest_state")
    with op.batch_alter_table("sync_count_report", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_count_report_school_id"))

    op.drop_table("sync_count_report")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_run_started_at"))

    op.drop_table("sync_run")
    op.drop_table("mirror_state")
    op.drop_table("mirror_reported_count")
