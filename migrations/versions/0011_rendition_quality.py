"""what a video rendition traded to keep its quality floor inside its budget

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for renditions made before per-title choices (and for non-video ones): nothing recorded.
    with op.batch_alter_table("rendition") as batch:
        batch.add_column(sa.Column("quality", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rendition") as batch:
        batch.drop_column("quality")
