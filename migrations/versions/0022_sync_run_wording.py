"""sync: a run's summary and skip lines as message ids and values, rendered in the reader's language

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no backfill: the rows before it keep their English text, shown as it is.
    op.add_column("sync_run", sa.Column("wording", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_run", "wording")
