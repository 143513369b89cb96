"""chapters of a material, the profile settings a rendition was made with

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("material") as batch:
        batch.add_column(sa.Column("chapters", sa.JSON(), nullable=True))
    # Renditions made before carry no fingerprint: they are never reused for another
    # material (their settings are unknown), only served as they are.
    with op.batch_alter_table("rendition") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("rendition") as batch:
        batch.drop_column("fingerprint")
    with op.batch_alter_table("material") as batch:
        batch.drop_column("chapters")
