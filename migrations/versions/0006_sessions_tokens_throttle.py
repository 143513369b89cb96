"""sessions that end server-side, token kinds, sign-in failures

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions signed in before this migration carry no generation: they count as 0, so
    # nobody is signed out by the upgrade and the next sign-out ends them like the others.
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    # Tokens made before were all API tokens of their user; a school server's existing
    # token keeps pulling and must be replaced by a sync token to send download counts.
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sa.Enum("user", "sync", name="token_kind", native_enum=False, create_constraint=True),
                nullable=False,
                server_default="user",
            )
        )
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    with op.batch_alter_table("login_failure") as batch:
        batch.create_index("ix_login_failure_key_at", ["key", "at"], unique=False)
        batch.create_index(batch.f("ix_login_failure_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_failure") as batch:
        batch.drop_index(batch.f("ix_login_failure_at"))
        batch.drop_index("ix_login_failure_key_at")
    op.drop_table("login_failure")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_constraint(op.f("ck_api_token_token_kind"), type_="check")
        batch.drop_column("kind")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("last_login_at")
        batch.drop_column("session_generation")
