"""``hub reach rollup``: bring the dashboard's roll-ups up to date now (the worker does it on its own)."""

from __future__ import annotations

import click


@click.group("reach")
def reach_cli() -> None:
    """The reach dashboard."""


@reach_cli.command("rollup")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Compare every day's raw counts with the roll-ups, not only the last HUB_REACH_CHECK_DAYS "
    "(after restoring a backup, or counts carried in late).",
)
def rollup_command(everything: bool) -> None:
    """Re-roll the days whose raw usage counts changed; safe to run while the worker runs."""
    from hub.cli import command_app
    from hub.db import get_database
    from hub.reach import rollup

    app = command_app()
    with get_database(app).session() as session:
        result = rollup.roll_up(
            session, check_days=app.extensions["hub.settings"].reach_check_days, everything=everything
        )
    if result.days:
        click.echo(
            f"re-rolled {len(result.days)} day(s) in {result.weeks} week(s): {result.days[0]} to {result.days[-1]}"
        )
    else:
        click.echo("the roll-ups are up to date")
