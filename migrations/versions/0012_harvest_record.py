"""harvest records: one per course that is or was public (OAI-PMH datestamps and deletions)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 23:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite through a bare table() hands back text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upgrade() -> None:
    record = op.create_table(
        "harvest_record",
        sa.Column("course_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=32), nullable=True),
        sa.Column("datestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("course_id", name=op.f("pk_harvest_record")),
    )
    op.create_index("ix_harvest_record_datestamp_course_id", "harvest_record", ["datestamp", "course_id"])
    op.create_index(op.f("ix_harvest_record_school_id"), "harvest_record", ["school_id"])
    op.create_index(op.f("ix_harvest_record_subject"), "harvest_record", ["subject"])

    # Existing courses: every course ever published gets its record, datestamped by the
    # latest change of the course or its lessons; courses withdrawn and deleted before
    # now are known from the sync change feed (their sets are not: NULL).
    bind = op.get_bind()
    course = sa.table(
        "course",
        sa.column("id", sa.Integer),
        sa.column("school_id", sa.Integer),
        sa.column("subject", sa.String),
        sa.column("status", sa.String),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    lesson = sa.table("lesson", sa.column("course_id", sa.Integer), sa.column("changed_at", sa.DateTime(timezone=True)))
    change = sa.table("change", sa.column("course_id", sa.Integer), sa.column("created_at", sa.DateTime(timezone=True)))
    latest_lesson = dict(
        bind.execute(sa.select(lesson.c.course_id, sa.func.max(lesson.c.changed_at)).group_by(lesson.c.course_id)).all()
    )
    rows = []
    known: set[int] = set()
    for cid, school_id, subject, status, published_at, updated_at in bind.execute(
        sa.select(
            course.c.id,
            course.c.school_id,
            course.c.subject,
            course.c.status,
            course.c.published_at,
            course.c.updated_at,
        )
    ):
        known.add(cid)
        if status != "published" and published_at is None:
            continue  # never public
        stamps = [s for s in (_aware(updated_at), _aware(latest_lesson.get(cid))) if s is not None]
        rows.append(
            {
                "course_id": cid,
                "school_id": school_id,
                "subject": subject,
                "datestamp": max(stamps) if stamps else datetime.now(UTC),
                "deleted": status != "published",
            }
        )
    for cid, last in bind.execute(
        sa.select(change.c.course_id, sa.func.max(change.c.created_at)).group_by(change.c.course_id)
    ):
        if cid not in known:
            rows.append(
                {"course_id": cid, "school_id": None, "subject": None, "datestamp": _aware(last), "deleted": True}
            )
    if rows:
        op.bulk_insert(record, rows)


def downgrade() -> None:
    op.drop_index(op.f("ix_harvest_record_subject"), table_name="harvest_record")
    op.drop_index(op.f("ix_harvest_record_school_id"), table_name="harvest_record")
    op.drop_index("ix_harvest_record_datestamp_course_id", table_name="harvest_record")
    op.drop_table("harvest_record")
