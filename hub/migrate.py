"""Alembic, driven from code so ``hub db upgrade`` works from any directory.

Every other command checks the schema first (:func:`schema_problem`) and names
the command to run instead of failing on a missing table. That check runs at
each start of a cron'd ``hub sync pull``, so it imports no Alembic: one query
of ``alembic_version`` against the newest migration file's revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hub.errors import Text
from hub.i18n import N_

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
UPGRADE_COMMAND = "hub db upgrade"


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str:
    """The newest migration's revision, from the file names alone.

    Migrations are ``NNNN_what.py`` with ``revision = "NNNN"`` in a straight line
    (tests/unit/test_migrations.py checks this against Alembic's own head).
    """
    return max(path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when it has no schema yet."""
    from sqlalchemy import inspect, text

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(version) if version is not None else None


def schema_problem(engine: Engine) -> str | None:
    """What is wrong with the database's schema for this code, with what to do; None when it is current."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return None
    # Text: English where it is logged, in the reader's language where a person reads it (hub.cli).
    if current is None:
        return Text(
            N_("the database has no schema yet: run `%(command)s` (it creates it), then this command again"),
            command=UPGRADE_COMMAND,
        )
    if current < head:
        return Text(
            N_(
                "the database schema is at revision %(current)s and this hub needs %(head)s: "
                "run `%(command)s`, then this command again"
            ),
            current=current,
            head=head,
            command=UPGRADE_COMMAND,
        )
    return Text(
        N_(
            "the database schema is at revision %(current)s, newer than this hub's code (%(head)s): "
            "update the hub's code, or check HUB_DATABASE_URL"
        ),
        current=current,
        head=head,
    )
