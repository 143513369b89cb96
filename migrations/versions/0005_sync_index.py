"""sync manifests as a signed index: lesson change stamps, full-hash revisions, mirrored entries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lesson") as batch:
        batch.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_lesson_course_id_changed_at", ["course_id", "changed_at"])
    op.execute("UPDATE lesson SET changed_at = updated_at")
    # A course's revision is now the whole sha256 of its entry (a school server fetches the
    # entry separately and checks it against the signed index), and the entry is kept.
    with op.batch_alter_table("mirror_course") as batch:
        batch.alter_column("revision", existing_type=sa.String(length=16), type_=sa.String(length=64))
        batch.add_column(sa.Column("entry", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True))
    # A manifest of the old format is not readable any more: the next pull fetches every
    # course's entry again (not its files). The version seen stays: replays stay refused.
    op.execute("UPDATE mirror_state SET envelope = ''")
    op.execute("UPDATE mirror_course SET revision = ''")


def downgrade() -> None:
    with op.batch_alter_table("mirror_course") as batch:
        batch.drop_column("issued_at")
        batch.drop_column("entry")
        batch.alter_column("revision", existing_type=sa.String(length=64), type_=sa.String(length=16))
    with op.batch_alter_table("lesson") as batch:
        batch.drop_index("ix_lesson_course_id_changed_at")
        batch.drop_column("changed_at")
