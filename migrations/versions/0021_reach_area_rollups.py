"""reach: roll-ups per area (region and county) and per subject and grade, for a province's questions

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

KINDS = ("play", "download", "zip")
# 0 (the whole subject) and grades 1-9, as hub.reach.rollup._grades.
GRADES = " UNION ALL ".join(f"SELECT {g} AS grade" for g in range(10))


def _kind(name: str) -> sa.Enum:
    return sa.Enum(*KINDS, name=name, native_enum=False, create_constraint=True, length=16)


def _area_columns(table: str) -> list[sa.Column]:
    return [
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("county", sa.String(length=100), nullable=False),
        sa.Column("kind", _kind(f"{table}_kind"), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    for table, when in (("reach_county_day", "day"), ("reach_county_week", "week")):
        op.create_table(
            table,
            sa.Column(when, sa.Date(), nullable=False),
            *_area_columns(table),
            sa.PrimaryKeyConstraint(when, "region", "county", "kind", name=op.f(f"pk_{table}")),
        )
    for table, when in (("reach_subject_day", "day"), ("reach_subject_week", "week")):
        op.create_table(
            table,
            sa.Column(when, sa.Date(), nullable=False),
            sa.Column("subject", sa.String(length=32), nullable=False),
            sa.Column("grade", sa.Integer(), nullable=False),
            *_area_columns(table),
            sa.PrimaryKeyConstraint(when, "subject", "grade", "region", "county", "kind", name=op.f(f"pk_{table}")),
        )
    op.create_table(
        "reach_rolled_area",
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("county", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("school_id", name=op.f("pk_reach_rolled_area")),
    )
    op.create_table(
        "reach_rolled_course",
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("grades_mask", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("course_id", name=op.f("pk_reach_rolled_course")),
    )
    # Filled from the roll-ups already there (no re-roll of the raw rows), under the schools'
    # areas and the courses' subjects and grades now, which the mapping tables record.
    op.execute("INSERT INTO reach_rolled_area (school_id, region, county) SELECT id, region, county FROM school")
    op.execute(
        "INSERT INTO reach_rolled_course (course_id, subject, grades_mask) SELECT id, subject, grades_mask FROM course"
    )
    area = "COALESCE(a.region, '') AS region, COALESCE(a.county, '') AS county"
    for source, target, when in (
        ("reach_school_day", "reach_county_day", "day"),
        ("reach_school_week", "reach_county_week", "week"),
    ):
        op.execute(
            f"INSERT INTO {target} ({when}, region, county, kind, count)"  # noqa: S608 (table names fixed here)
            f" SELECT r.{when}, {area}, r.kind, sum(r.count) FROM {source} r"
            " LEFT OUTER JOIN reach_rolled_area a ON a.school_id = r.school_id"
            f" GROUP BY r.{when}, COALESCE(a.region, ''), COALESCE(a.county, ''), r.kind"
        )
    for source, target, when in (
        ("reach_day", "reach_subject_day", "day"),
        ("reach_week", "reach_subject_week", "week"),
    ):
        op.execute(
            f"INSERT INTO {target} ({when}, subject, grade, region, county, kind, count)"  # noqa: S608
            f" SELECT r.{when}, c.subject, g.grade, {area}, r.kind, sum(r.count) FROM {source} r"
            " JOIN reach_rolled_course c ON c.course_id = r.course_id"
            f" JOIN ({GRADES}) g ON g.grade = 0 OR (c.grades_mask & (1 << g.grade)) != 0"
            " LEFT OUTER JOIN reach_rolled_area a ON a.school_id = r.school_id"
            f" GROUP BY r.{when}, c.subject, g.grade, COALESCE(a.region, ''), COALESCE(a.county, ''), r.kind"
        )
    for table, when in (("reach_subject_day", "day"), ("reach_subject_week", "week")):
        op.create_index(f"ix_{table}_subject_grade_{when}", table, ["subject", "grade", when])
        op.create_index(f"ix_{table}_grade_{when}", table, ["grade", when])


def downgrade() -> None:
    for table, when in (("reach_subject_week", "week"), ("reach_subject_day", "day")):
        op.drop_index(f"ix_{table}_grade_{when}", table_name=table)
        op.drop_index(f"ix_{table}_subject_grade_{when}", table_name=table)
    for table in (
        "reach_rolled_course",
        "reach_rolled_area",
        "reach_subject_week",
        "reach_subject_day",
        "reach_county_week",
        "reach_county_day",
    ):
        op.drop_table(table)
