"""``hub search rebuild`` and ``hub search check``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # Flask and the search engine load only when a command runs
    from flask import Flask


def _app(*, schema: bool = True) -> Flask:
    from hub.cli import command_app  # the one place that loads the app for a command and checks the schema

    return command_app(schema=schema)  # no command here serves a request: no pages' or API's imports


@click.group("search")
def search_cli() -> None:
    """Full-text search index."""


@search_cli.command("rebuild")
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for a worker that is writing the index.")
def rebuild_command(wait: float) -> None:
    """Build a new index from the database and swap it in (searches go on meanwhile)."""
    from hub.db import get_database
    from hub.search import SearchEngine, services

    app = _app()
    engine: SearchEngine = app.extensions["hub.search"]
    engine.wait_for_rebuild()
    with get_database(app).session() as session:
        try:
            report = services.rebuild(session, engine, wait=wait)
        except services.IndexBusy as exc:
            raise click.ClickException(f"{exc}; try again when it has finished") from None
    click.echo(
        f"search index rebuilt: {report.documents} documents in {report.seconds:.1f} s "
        f"({report.documents / max(report.seconds, 1e-9):.0f} docs/s)"
    )


@search_cli.command("check")
@click.option("--show", default=10, show_default=True, help="How many keys to list for each problem.")
def check_command(show: int) -> None:
    """Report documents missing from or stale in the index; exit status 1 if any."""
    from hub.db import get_database
    from hub.search import SearchEngine, services

    app = _app()
    engine: SearchEngine = app.extensions["hub.search"]
    with get_database(app).session() as session:
        report = services.check(session, engine)
    click.echo(f"index: {report.state.status}{f' ({report.state.detail})' if report.state.detail else ''}")
    click.echo(f"documents: {report.documents} indexed, {report.expected} expected from the database")
    if report.lock_holder:
        click.echo(f"writer: {report.lock_holder}")
    for label, keys in (("missing", report.missing), ("stale", report.stale), ("extra", report.extra)):
        listed = f" ({', '.join(keys[:show])}{' …' if len(keys) > show else ''})" if keys else ""
        click.echo(f"{label}: {len(keys)}{listed}")
    if report.digest:
        click.echo(f"digest: {report.digest}")
    if len(report.replicas) > 1 or any(r.name != report.name for r in report.replicas):
        # Every copy of the index (web nodes with HUB_SEARCH_REPLICA=on) as it last reported.
        click.echo("replicas (cursor = change applied up to; digest as of the change it was checked at):")
        for row in report.replicas:
            mark = "*" if row.name == report.name else " "
            checked = f"{row.digest} at {row.checked_cursor}" if row.digest else "not checked"
            click.echo(
                f"{mark} {row.name}: cursor {row.cursor}, {row.documents} documents, digest {checked}, "
                f"reported {row.updated_at:%Y-%m-%d %H:%M:%S} UTC"
            )
    for row in report.disagreeing:
        click.echo(f"disagrees: {row.name} holds other documents at the same change")
    if not report.ok:
        raise click.ClickException("the index does not match the database; run `hub search rebuild`")
