"""the course titles a sync run planned, applied, removed and skipped

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Older runs keep NULL: the page shows their counts as before.
    with op.batch_alter_table("sync_run") as batch:
        batch.add_column(sa.Column("courses", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_run") as batch:
        batch.drop_column("courses")
