"""textbooks with chapter trees, the catalog's alignment to them, and usage counts per lesson

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str, length: int = 32) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)


SUBJECTS = (
    "chinese", "math", "english", "morality", "history", "geography", "science", "physics",
    "chemistry", "biology", "it", "pe", "art", "music", "labor",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "textbook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("subject", _enum("textbook_subject", *SUBJECTS), nullable=False),
        sa.Column("edition", sa.String(length=50), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("volume", _enum("textbook_volume", "上册", "下册", "全一册"), nullable=False),
        sa.Column("school_system", _enum("textbook_school_system", "", "六三", "五四"), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_textbook")),
        sa.UniqueConstraint("key", name=op.f("uq_textbook_key")),
        sa.UniqueConstraint("subject", "edition", "grade", "volume", "school_system", name=op.f("uq_textbook_subject")),
    )
    op.create_index(op.f("ix_textbook_subject"), "textbook", ["subject"])
    op.create_table(
        "textbook_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("textbook_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("kind", _enum("textbook_node_kind", "chapter", "section", "lesson"), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("week", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["textbook_node.id"],
            name=op.f("fk_textbook_node_parent_id_textbook_node"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["textbook_id"], ["textbook.id"], name=op.f("fk_textbook_node_textbook_id_textbook"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_textbook_node")),
        sa.UniqueConstraint("textbook_id", "key", name=op.f("uq_textbook_node_textbook_id")),
    )
    op.create_index(op.f("ix_textbook_node_parent_id"), "textbook_node", ["parent_id"])
    op.create_index("ix_textbook_node_textbook_id_position", "textbook_node", ["textbook_id", "position"])
    with op.batch_alter_table("course") as batch:
        batch.add_column(sa.Column("textbook_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_course_textbook_id"), ["textbook_id"])
        batch.create_foreign_key(
            batch.f("fk_course_textbook_id_textbook"), "textbook", ["textbook_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("lesson") as batch:
        batch.add_column(sa.Column("textbook_node_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_lesson_textbook_node_id"), ["textbook_node_id"])
        batch.create_foreign_key(
            batch.f("fk_lesson_textbook_node_id_textbook_node"),
            "textbook_node",
            ["textbook_node_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_table(
        "usage_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("usage_kind", "play", "download", "zip", length=16), nullable=False),
        sa.Column("source", _enum("usage_source", "hub", "lan", "usb", length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_count")),
        sa.UniqueConstraint(
            "day",
            "school_id",
            "course_id",
            "lesson_id",
            "material_id",
            "kind",
            "source",
            name=op.f("uq_usage_count_day"),
        ),
    )
    op.create_index(op.f("ix_usage_count_day"), "usage_count", ["day"])
    op.create_index("ix_usage_count_course_id_day", "usage_count", ["course_id", "day"])
    op.create_index("ix_usage_count_school_id_day", "usage_count", ["school_id", "day"])


def downgrade() -> None:
    op.drop_table("usage_count")
    with op.batch_alter_table("lesson") as batch:
        batch.drop_constraint(batch.f("fk_lesson_textbook_node_id_textbook_node"), type_="foreignkey")
        batch.drop_index(batch.f("ix_lesson_textbook_node_id"))
        batch.drop_column("textbook_node_id")
    with op.batch_alter_table("course") as batch:
        batch.drop_constraint(batch.f("fk_course_textbook_id_textbook"), type_="foreignkey")
        batch.drop_index(batch.f("ix_course_textbook_id"))
        batch.drop_column("textbook_id")
    op.drop_table("textbook_node")
    op.drop_table("textbook")
