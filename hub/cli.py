"""The ``hub`` command. Each subcommand parses, calls one service, prints."""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from hub.clitext import HubGroup
from hub.config import ConfigError
from hub.errors import HubError, Text, render_text
from hub.uploads.terminal import _

if TYPE_CHECKING:  # `hub --help` and a cron'd `hub sync pull` start fast: each command loads what it runs
    from datetime import datetime

    from flask import Flask
    from sqlalchemy.orm import Session

    from hub.accounts.models import School


def command_app(*, web: bool = False, schema: bool = True) -> Flask:
    """The app for a command; with ``web`` its pages and API too (only the commands that serve or run workers).

    With ``schema`` (every command that uses the database, but those that migrate it)
    a missing or old schema stops the command with the one to run, not a traceback
    about a missing table halfway through.
    """
    from hub import create_app

    try:
        app = create_app(web=web)
    except ConfigError as exc:
        raise click.ClickException(_("configuration: %(error)s", error=render_text(exc.text, _))) from None
    if schema:
        from hub.db import get_database
        from hub.migrate import schema_problem

        problem = schema_problem(get_database(app).engine)
        if problem is not None:
            raise click.ClickException(render_text(problem, _))
    return app


@contextmanager
def _session(app: Flask) -> Iterator[Session]:
    from hub.db import get_database

    with get_database(app).session() as session:
        try:
            yield session
        except HubError as exc:
            raise click.ClickException(render_text(Text(exc.template, **exc.params), _)) from None


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group(cls=HubGroup, help=_("OER Hub: share lessons from famous schools with rural schools."))
def main() -> None:
    pass


# When a command is done, the interpreter's teardown still runs the cycle collector over
# every object it left (SQLAlchemy, pydantic and Celery classes, the rows it read): 0.2 s
# of a cron'd `hub sync pull` that ran in 1.3 s. Frozen, they are freed by reference
# counting alone. atexit runs this before that teardown, on every way out; log handlers
# are flushed by logging's own atexit hook, and nothing here relies on __del__ of a cycle.
atexit.register(gc.freeze)


@main.group(help=_("Database schema."))
def db() -> None:
    pass


@db.command("upgrade", help=_("Create or upgrade the database schema to the latest version."))
def db_upgrade() -> None:
    from hub.migrate import upgrade

    app = command_app(schema=False)  # it makes the schema current
    upgrade(app.extensions["hub.settings"].database_url)
    click.echo(_("database is up to date"))


def web_app() -> Flask:
    """The app each `hub serve` process serves (hub.serving)."""
    return command_app(web=True)


@main.command(help=_("Serve the web app and API with waitress, in one process per core."))
@click.option("--host", default="127.0.0.1", show_default=True, help=_("Address to listen on."))
@click.option("--port", default=8000, show_default=True, type=int, help=_("Port to listen on."))
@click.option(
    "--processes",
    default=None,
    type=click.IntRange(min=0),
    help=_("Server processes; default HUB_WEB_PROCESSES (0: one per core)."),
)
@click.option("--threads", default=8, show_default=True, type=int, help=_("Threads per process."))
@click.option("--connections", default=1000, show_default=True, type=int, help=_("Most open connections per process."))
@click.option(
    "--upload-port",
    default=None,
    type=click.IntRange(min=0),
    help=_(
        "Also serve /api/v1/uploads/ on this port, streaming each PATCH into storage (behind nginx); "
        "default HUB_UPLOAD_PORT (0: none)."
    ),
)
def serve(host: str, port: int, processes: int | None, threads: int, connections: int, upload_port: int | None) -> None:
    from hub.search import ensure_index
    from hub.serving import default_processes
    from hub.serving import serve as serve_processes
    from hub.sync import mdns

    app = command_app(web=True)
    settings = app.extensions["hub.settings"]
    count = settings.web_processes if processes is None else processes
    count = count or default_processes()
    ensure_index(app)  # an old-schema or corrupt index is rebuilt in the background
    uploads = settings.upload_port if upload_port is None else upload_port
    click.echo(
        _(
            "serving on %(url)s (%(count)s processes, %(threads)s threads each)",
            url=f"http://{host}:{port}/",
            count=count,
            threads=threads,
        ),
        err=True,
    )
    if uploads:
        click.echo(_("uploads (tus, streamed) on %(url)s", url=f"http://{host}:{uploads}/api/v1/uploads/"), err=True)
    # A school server tells its LAN where it is (HUB_MDNS): http://NAME.local/.
    with mdns.announce(settings, host, port, sys.stderr):
        serve_processes(
            "hub.cli:web_app", host, port, processes=count, threads=threads, connections=connections, app=app,
            upload_port=uploads, upload_threads=settings.upload_threads,
        )  # fmt: skip


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help=_("Start a Celery worker on every queue (extra arguments go to celery)."),
)
@click.option("--concurrency", "-c", default=2, show_default=True, type=int, help=_("Worker processes."))
@click.option(
    "--beat/--no-beat",
    default=True,
    show_default=True,
    help=_("Also run the periodic scheduler (the outbox sweeper); one per deployment."),
)
@click.option(
    "--queues",
    "-Q",
    default=None,
    help=_(
        "Comma-separated queues to take work from (default: all of them). E.g. a second worker with "
        "--queues documents --concurrency 1 --no-beat keeps one process for PDFs and images at all times."
    ),
)
@click.pass_context
def worker(ctx: click.Context, concurrency: int, beat: bool, queues: str | None) -> None:
    from hub import jobs
    from hub.media import sandbox

    unknown = set((queues or "").split(",")) - set(jobs.ALL_QUEUES) - {""}
    if unknown:
        raise click.UsageError(
            _(
                "--queues: no queue %(unknown)s; the queues are %(queues)s",
                unknown=", ".join(sorted(unknown)),
                queues=", ".join(jobs.ALL_QUEUES),
            )
        )
    app = command_app(web=True)
    try:
        sandbox.prepare(app.extensions["hub.media_limits"].sandbox)
    except sandbox.SandboxUnavailable as exc:
        raise click.ClickException(render_text(exc.text, _)) from None
    celery = jobs.get_celery(app)
    argv = [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--queues={queues or ','.join(jobs.ALL_QUEUES)}",
        *ctx.args,
    ]
    if beat:
        argv.append("--beat")
    celery.worker_main(argv)


@main.group(help=_("Schools."))
def school() -> None:
    pass


@school.command("create", help=_("Create a school."))
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["famous", "rural", "urban"]),
    required=True,
    help=_("famous: a famous school that shares its lessons; rural or urban: a school that uses them."),
)
@click.option("--region", default="", help=_("Province and city, e.g. 甘肃省 定西市."))
@click.option("--county", default="", help=_("County, e.g. 通渭县."))
def school_create(name: str, kind: str, region: str, county: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        created = services.create_school(session, name, kind, region, county)
        session.commit()
        click.echo(_("school %(id)s: %(name)s (%(kind)s)", id=created.id, name=created.name, kind=created.kind))


@school.command(
    "pair", help=_("Pair a famous school with a rural school: the rural one may then mirror all its courses.")
)
@click.argument("famous")
@click.argument("rural")
def school_pair(famous: str, rural: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        pairing = services.pair_schools(session, *_schools(session, famous, rural))
        session.commit()
        click.echo(
            _(
                "paired %(famous)s with %(rural)s (pairing %(id)s)",
                famous=famous.strip(),
                rural=rural.strip(),
                id=pairing.id,
            )
        )
    click.echo(
        _(
            "the rural school's server can now run: %(command)s",
            command=f'hub sync subscribe --paired-with "{famous.strip()}"',
        ),
        err=True,
    )


@school.command("unpair", help=_("End a pairing, and the rural school's subscriptions to the famous school's courses."))
@click.argument("famous")
@click.argument("rural")
def school_unpair(famous: str, rural: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        ended = services.unpair_schools(session, *_schools(session, famous, rural))
        session.commit()
    click.echo(
        _(
            "unpaired %(famous)s and %(rural)s; %(ended)s subscription(s) ended",
            famous=famous.strip(),
            rural=rural.strip(),
            ended=ended,
        )
    )


def _schools(session: Session, *names: str) -> list[School]:
    """The schools named on the command line, in order (NotFound names the first unknown one)."""
    from hub.accounts import services

    return [services.get_school_by_name(session, name) for name in names]


@school.command("list", help=_("Every school: kind, region, county and the schools it is paired with."))
def school_list() -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        listings = services.list_schools(session)
        rows = [
            (
                item.school.name,
                item.school.kind,
                item.school.region or "-",
                item.school.county or "-",
                _(", ").join(other.name for other in item.paired) or "-",
            )
            for item in listings
        ]
    if not rows:
        click.echo(_("no schools yet: %(command)s", command="hub school create NAME --kind famous|rural|urban"))
        return
    click.echo("\t".join((_("name"), _("kind"), _("region"), _("county"), _("paired with"))))
    for row in rows:
        click.echo("\t".join(row))


@main.group(help=_("Users."))
def user() -> None:
    pass


@user.command("create", help=_("Create a user of a school."))
@click.argument("email")
@click.option("--school", "school_name", required=True, help=_("Name of the user's school."))
@click.option(
    "--role",
    type=click.Choice(["admin", "uploader", "teacher", "reviewer", "supervisor"]),
    required=True,
    help=_("What the user may do on the hub."),
)
@click.option("--password", default=None, help=_("Web sign-in password (prompted if omitted on a terminal)."))
@click.option(
    "--region",
    default="",
    help=_(
        "For a reviewer: the region whose courses they review (e.g. 甘肃省, covering 甘肃省 定西市); "
        "for a supervisor: the region whose reach dashboard they see; default: their school's region."
    ),
)
@click.option(
    "--county",
    default="",
    help=_("For a supervisor: only this county of the region (e.g. 通渭县); default: all of it."),
)
def user_create(email: str, school_name: str, role: str, password: str | None, region: str, county: str) -> None:
    from hub.accounts import services

    if password is None and sys.stdin.isatty():
        password = (
            click.prompt(_("password (empty for API-only)"), default="", hide_input=True, show_default=False) or None
        )
    app = command_app()
    with _session(app) as session:
        school_row = services.get_school_by_name(session, school_name)
        created = services.create_user(session, email, school_row, role, password, region, county)
        session.commit()
        click.echo(
            _(
                "user %(id)s: %(email)s (%(role)s at %(school)s)",
                id=created.id,
                email=created.email,
                role=created.role,
                school=school_row.name,
            )
        )


@user.command("deactivate", help=_("Refuse a user's sign-in, end their sessions and revoke their API tokens."))
@click.argument("email")
def user_deactivate(email: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        account = services.get_user_by_email(session, email)
        revoked = services.deactivate_user(session, account)
        session.commit()
    click.echo(
        _(
            "user %(email)s deactivated: sessions ended, %(revoked)s token(s) revoked",
            email=account.email,
            revoked=revoked,
        )
    )


@user.command("activate", help=_("Let a deactivated user sign in again (their old tokens stay revoked)."))
@click.argument("email")
def user_activate(email: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        account = services.get_user_by_email(session, email)
        services.activate_user(session, account)
        session.commit()
    click.echo(_("user %(email)s is active", email=account.email))


@user.command("password", help=_("Set a user's web sign-in password; every session of theirs ends."))
@click.argument("email")
@click.option(
    "--password", default=None, help=_("The new password (else asked twice on a terminal, or read from stdin).")
)
def user_password(email: str, password: str | None) -> None:
    from hub.accounts import services

    if password is None:
        if sys.stdin.isatty():
            password = click.prompt(_("new password"), hide_input=True, confirmation_prompt=True)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    app = command_app()
    with _session(app) as session:
        account = services.get_user_by_email(session, email)
        services.change_password(session, account, password or "")
        session.commit()
    click.echo(_("password of %(email)s changed; their sessions ended", email=account.email))


@main.group(help=_("API tokens: a user's own, or a school server's sync token."))
def token() -> None:
    pass


@token.command("create", help=_("Create an API token; it is printed once, as the last line."))
@click.argument("email")
@click.option(
    "--kind",
    type=click.Choice(["user", "sync"]),
    default="user",
    show_default=True,
    help=_("sync: a school server's token (HUB_UPSTREAM_TOKEN there), good only for the sync API."),
)
def token_create(email: str, kind: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        account = services.get_user_by_email(session, email)
        plain = services.create_token(session, account, kind)
        session.commit()
    click.echo(
        _("%(kind)s token for %(email)s (shown once; only its hash is kept):", kind=kind, email=account.email), err=True
    )
    click.echo(plain)  # not translated: the token alone, as the last line, for scripts


@token.command(
    "list", help=_("A user's tokens: prefix, kind, created, last used, revoked (never the tokens themselves).")
)
@click.argument("email")
def token_list(email: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        account = services.get_user_by_email(session, email)
        rows = services.list_tokens(session, account)
    if not rows:
        click.echo(_("%(email)s has no tokens", email=account.email))
        return
    zone = app.extensions["hub.settings"].timezone
    click.echo(_("times in %(zone)s", zone=zone), err=True)  # stderr: the table stays one header line and the rows
    header = (_("prefix"), _("kind"), _("created"), _("last used"), _("revoked"))
    click.echo("".join(_pad(label, width) for label, width in zip(header, (14, 6, 19, 19, 0), strict=True)))
    for row in rows:
        click.echo(
            f"{row.prefix:<14}{row.kind:<6}{_when(row.created_at, zone):<19}{_when(row.last_used_at, zone):<19}"
            f"{_when(row.revoked_at, zone) if row.revoked_at else '-'}"
        )


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns: a Chinese character takes two."""
    import unicodedata

    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(width - columns, 1 if width else 0)


def _when(moment: datetime | None, zone: str) -> str:
    """A stored (UTC) moment as the operator's wall clock: HUB_TIMEZONE, like every time the hub shows."""
    from zoneinfo import ZoneInfo

    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}" if moment is not None else _("never")


@token.command("revoke", help=_("Revoke a token by the prefix `hub token list` shows (or the whole token)."))
@click.argument("prefix")
def token_revoke(prefix: str) -> None:
    from hub.accounts import services

    app = command_app()
    with _session(app) as session:
        row, was_live = services.revoke_token(session, prefix)
        session.commit()
        email = row.user.email
    click.echo(
        _("revoked %(prefix)s (%(kind)s, %(email)s)", prefix=row.prefix, kind=row.kind, email=email)
        if was_live
        else _("%(prefix)s was already revoked", prefix=row.prefix)
    )


@main.group(help=_("Media renditions."))
def media() -> None:
    pass


@media.command("reprocess", help=_("Redo one rendition profile for every material (after the ladder changed)."))
@click.option("--profile", required=True, help=_("Rendition profile to redo, e.g. video-240p."))
def media_reprocess(profile: str) -> None:
    from hub.media import pipeline

    app = command_app()
    with _session(app) as session:
        try:
            queued = pipeline.reprocess_profile(session, profile)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(_("queued %(count)s %(profile)s renditions; workers will redo them", count=len(queued), profile=profile))


@main.command(help=_("Migrate, seed a demo catalog, start a worker and serve: the whole hub on one machine."))
@click.option("--host", default="127.0.0.1", show_default=True, help=_("Address to listen on."))
@click.option("--port", default=8000, show_default=True, type=int, help=_("Port to listen on."))
def demo(host: str, port: int) -> None:
    from hub.demo import run_demo

    run_demo(command_app(web=True, schema=False), host, port)  # it migrates


def _attach_feature_commands() -> None:
    from hub.reach.cli import reach_cli
    from hub.search.cli import search_cli
    from hub.sync.cli import bundle_cli, keys_cli, sync_cli
    from hub.textbooks.cli import textbook_cli
    from hub.uploads.cli import upload
    from hub.uploads.course_cli import course_cli

    main.add_command(search_cli)
    main.add_command(upload)
    main.add_command(course_cli)
    main.add_command(keys_cli)
    main.add_command(sync_cli)
    main.add_command(bundle_cli)
    main.add_command(textbook_cli)
    main.add_command(reach_cli)


_attach_feature_commands()

if __name__ == "__main__":
    main()
