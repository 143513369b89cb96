"""``hub reach rollup``: bring the dashboard's roll-ups up to date now (the worker does it on its own)."""

from __future__ import annotations

import click

from hub.clitext import HubGroup
from hub.uploads.terminal import _


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group("reach", cls=HubGroup, help=_("The reach dashboard."))
def reach_cli() -> None:
    pass


@reach_cli.command(
    "rollup", help=_("Re-roll the days whose raw usage counts changed; safe to run while the worker runs.")
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help=_(
        "Compare every day's raw counts with the roll-ups, not only the last HUB_REACH_CHECK_DAYS "
        "(after restoring a backup, or counts carried in late)."
    ),
)
def rollup_command(everything: bool) -> None:
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
            _(
                "re-rolled %(days)s day(s) in %(weeks)s week(s): %(first)s to %(last)s",
                days=len(result.days),
                weeks=result.weeks,
                first=result.days[0],
                last=result.days[-1],
            )
        )
    else:
        click.echo(_("the roll-ups are up to date"))
