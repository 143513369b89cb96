"""``hub sync calendar``: a school server's term calendars, which order its pulls (hub.sync.calendar).

Run on the school server by its admin, in the terminal's language (hub.uploads.terminal).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import click

from hub.clitext import HubGroup
from hub.errors import HubError
from hub.sync import wording
from hub.uploads.terminal import _

if TYPE_CHECKING:
    from flask import Flask


def _app() -> Flask:
    from hub.cli import command_app

    return command_app()


def _fail(exc: HubError) -> click.ClickException:
    return click.ClickException(wording.render(wording.from_error(exc), _))


def _today(app: Flask) -> date:
    from hub.db import utcnow
    from hub.sync.client import local_zone

    return utcnow().astimezone(local_zone(app.extensions["hub.settings"])).date()


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(_("A date is YYYY-MM-DD, e.g. 2026-09-01.")) from None


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group(
    "calendar",
    cls=HubGroup,
    help=_("Term calendars: which week each chapter is taught; a pull fetches the lessons due first."),
)
def calendar_cli() -> None:
    pass


@calendar_cli.command(
    "set", help=_("Keep a calendar for TEXTBOOK (its key): the term's teaching week 1 begins on --start.")
)
@click.argument("textbook")
@click.option("--start", required=True, callback=_date, help=_("First day of teaching week 1, YYYY-MM-DD."))
def calendar_set(textbook: str, start: date) -> None:
    from hub.db import get_database
    from hub.sync import calendar

    app = _app()
    upstream = app.extensions["hub.settings"].upstream_url
    with get_database(app).session() as session:
        try:
            calendar.set_calendar(session, textbook, start)
            session.commit()
        except HubError as exc:
            raise _fail(exc) from None
        click.echo(_("Calendar of %(textbook)s: teaching week 1 begins on %(start)s.", textbook=textbook, start=start))
        if upstream and textbook in calendar.books_missing(session):
            # The chapters and their weeks, from the upstream, so `show` and the next pull have them.
            try:
                brought = calendar.fetch_books(session, upstream, [textbook])
                session.commit()
            except HubError as exc:
                click.echo(wording.render(wording.from_error(exc), _), err=True)
                return
            if brought:
                click.echo(_("Textbook %(textbook)s fetched from the upstream.", textbook=textbook))
            else:
                click.echo(_("The upstream has no textbook %(textbook)s.", textbook=textbook), err=True)


@calendar_cli.command(
    "week",
    help=_('Teach chapter NODE (its key) of TEXTBOOK in WEEK here; "-" for not at all; --reset for the file\'s week.'),
)
@click.argument("textbook")
@click.argument("node")
@click.argument("week", required=False)
@click.option("--reset", is_flag=True, help=_("Back to the week the textbook file gives."))
def calendar_week(textbook: str, node: str, week: str | None, reset: bool) -> None:
    from hub.db import get_database
    from hub.sync import calendar

    if reset == (week is not None):
        raise click.UsageError(_("Give a week (a number, or - for none) or --reset."))
    value: int | None = None
    if week is not None and week != "-":
        if not week.isascii() or not week.isdigit():
            raise click.BadParameter(_("A teaching week is a number from 1 to %(most)s.", most=calendar.MAX_WEEK))
        value = int(week)
    app = _app()
    with get_database(app).session() as session:
        try:
            calendar.set_week(session, textbook, node, value, reset=reset)
            session.commit()
        except HubError as exc:
            raise _fail(exc) from None
    if reset:
        click.echo(_("%(node)s: back to the textbook's week.", node=node))
    elif value is None:
        click.echo(_("%(node)s: not on this school's calendar.", node=node))
    else:
        click.echo(_("%(node)s: taught in week %(week)s here.", node=node, week=value))


@calendar_cli.command(
    "show",
    help=_("TEXTBOOK's calendar, chapter by chapter: the file's week, this school's, and what a pull fetches first."),
)
@click.argument("textbook")
def calendar_show(textbook: str) -> None:
    from hub.db import get_database
    from hub.sync import calendar

    app = _app()
    ahead = app.extensions["hub.settings"].sync_weeks_ahead
    today = _today(app)
    with get_database(app).session() as session:
        try:
            found, due, rows = calendar.calendar_rows(session, textbook, today, ahead)
        except HubError as exc:
            raise _fail(exc) from None
        current = calendar.teaching_week(today, found.term_start)
        click.echo(_("Teaching week 1 begins on %(start)s.", start=found.term_start))
        if current < 1:
            click.echo(
                _(
                    "The term has not begun; a pull fetches weeks %(first)s-%(last)s first.",
                    first=due.first,
                    last=due.last,
                )
            )
        else:
            click.echo(
                _(
                    "Today is in week %(week)s; a pull fetches weeks %(first)s-%(last)s first.",
                    week=current,
                    first=due.first,
                    last=due.last,
                )
            )
        if not rows:
            click.echo(
                _("This textbook is not on this server yet: only the weeks set with hub sync calendar week count.")
            )
        for row in rows:
            weeks = (
                "-"
                if row.span is None
                else (str(row.span.first) if row.span.first == row.span.last else f"{row.span.first}-{row.span.last}")
            )
            mark = "*" if row.due else " "
            own = _(" (this school's)") if row.overridden else ""
            click.echo(f"{mark} {'  ' * row.depth}{row.key} {row.title}  " + _("week %(weeks)s", weeks=weeks) + own)


@calendar_cli.command("list", help=_("The textbooks this server keeps a calendar for."))
def calendar_list() -> None:
    from hub.db import get_database
    from hub.sync import calendar

    app = _app()
    with get_database(app).session() as session:
        calendars = calendar.list_calendars(session)
        if not calendars:
            click.echo(_("No teaching calendars yet: hub sync calendar set TEXTBOOK --start YYYY-MM-DD"))
        for item in calendars:
            click.echo(_("%(textbook)s: week 1 begins on %(start)s", textbook=item.textbook_key, start=item.term_start))


@calendar_cli.command(
    "delete",
    help=_("Forget TEXTBOOK's calendar (and this school's weeks for it): its lessons come in the manifest's order."),
)
@click.argument("textbook")
def calendar_delete(textbook: str) -> None:
    from hub.db import get_database
    from hub.sync import calendar

    app = _app()
    with get_database(app).session() as session:
        try:
            calendar.delete_calendar(session, textbook)
            session.commit()
        except HubError as exc:
            raise _fail(exc) from None
    click.echo(_("Calendar of %(textbook)s deleted.", textbook=textbook))
