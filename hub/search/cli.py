"""``hub search rebuild`` and ``hub search check``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hub.clitext import HubGroup
from hub.uploads.terminal import _

if TYPE_CHECKING:  # Flask and the search engine load only when a command runs
    from flask import Flask


def _app(*, schema: bool = True) -> Flask:
    from hub.cli import command_app  # the one place that loads the app for a command and checks the schema

    return command_app(schema=schema)  # no command here serves a request: no pages' or API's imports


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group("search", cls=HubGroup, help=_("Full-text search index."))
def search_cli() -> None:
    pass


@search_cli.command("rebuild", help=_("Build a new index from the database and swap it in (searches go on meanwhile)."))
@click.option(
    "--wait", default=60.0, show_default=True, help=_("Seconds to wait for a worker that is writing the index.")
)
def rebuild_command(wait: float) -> None:
    from hub.db import get_database
    from hub.search import SearchEngine, services

    app = _app()
    engine: SearchEngine = app.extensions["hub.search"]
    engine.wait_for_rebuild()
    with get_database(app).session() as session:
        try:
            report = services.rebuild(session, engine, wait=wait)
        except services.IndexBusy as exc:
            raise click.ClickException(_("%(reason)s; try again when it has finished", reason=exc)) from None
    click.echo(
        _(
            "search index rebuilt: %(documents)s documents in %(seconds)s s (%(rate)s docs/s)",
            documents=report.documents,
            seconds=f"{report.seconds:.1f}",
            rate=f"{report.documents / max(report.seconds, 1e-9):.0f}",
        )
    )


@search_cli.command("check", help=_("Report documents missing from or stale in the index; exit status 1 if any."))
@click.option("--show", default=10, show_default=True, help=_("How many keys to list for each problem."))
def check_command(show: int) -> None:
    from hub.db import get_database
    from hub.search import SearchEngine, services

    app = _app()
    engine: SearchEngine = app.extensions["hub.search"]
    with get_database(app).session() as session:
        report = services.check(session, engine)
    # The state's detail (a schema number, an exception) and the document keys stay as they are.
    states = {"ok": _("ok"), "missing": _("missing"), "corrupt": _("corrupt"), "outdated": _("outdated")}
    detail = f" ({report.state.detail})" if report.state.detail else ""
    click.echo(_("index: %(state)s", state=states.get(report.state.status, report.state.status)) + detail)
    click.echo(
        _(
            "documents: %(documents)s indexed, %(expected)s expected from the database",
            documents=report.documents,
            expected=report.expected,
        )
    )
    if report.lock_holder:
        click.echo(_("writer: %(holder)s", holder=report.lock_holder))
    for label, keys in ((_("missing"), report.missing), (_("stale"), report.stale), (_("extra"), report.extra)):
        listed = f" ({', '.join(keys[:show])}{' …' if len(keys) > show else ''})" if keys else ""
        click.echo(f"{label}: {len(keys)}{listed}")
    if report.digest:
        click.echo(_("digest: %(digest)s", digest=report.digest))
    if len(report.replicas) > 1 or any(r.name != report.name for r in report.replicas):
        # Every copy of the index (web nodes with HUB_SEARCH_REPLICA=on) as it last reported.
        click.echo(_("replicas (cursor = change applied up to; digest as of the change it was checked at):"))
        for row in report.replicas:
            mark = "*" if row.name == report.name else " "
            checked = (
                _("%(digest)s at %(cursor)s", digest=row.digest, cursor=row.checked_cursor)
                if row.digest
                else _("not checked")
            )
            click.echo(
                f"{mark} "
                + _(
                    "%(name)s: cursor %(cursor)s, %(documents)s documents, digest %(checked)s, reported %(when)s UTC",
                    name=row.name,
                    cursor=row.cursor,
                    documents=row.documents,
                    checked=checked,
                    when=f"{row.updated_at:%Y-%m-%d %H:%M:%S}",
                )
            )
    for row in report.disagreeing:
        click.echo(_("disagrees: %(name)s holds other documents at the same change", name=row.name))
    if not report.ok:
        raise click.ClickException(_("the index does not match the database; run `hub search rebuild`"))
