"""``hub keys``, ``hub sync`` and ``hub bundle``: each command parses, calls the sync code, prints."""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hub.clitext import HubGroup
from hub.errors import HubError
from hub.sync import wording
from hub.sync.calendar_cli import calendar_cli
from hub.uploads.terminal import _

if TYPE_CHECKING:  # Flask and the sync modules load only when a command runs
    from flask import Flask

    from hub.sync.client import PullReport


def _app(*, schema: bool = True) -> Flask:
    from hub.cli import command_app  # the one place that loads the app for a command and checks the schema

    return command_app(schema=schema)  # no command here serves a request: no pages' or API's imports


def _fail(exc: HubError) -> click.ClickException:
    # A reason inside the sentence (why the upstream could not be reached) is translated too.
    return click.ClickException(wording.render(wording.from_error(exc), _))


# -- keys ------------------------------------------------------------------------------


# Help texts are help=_(...), not docstrings: Click would show a docstring untranslated.
@click.group("keys", cls=HubGroup, help=_("The upstream's manifest signing key."))
def keys_cli() -> None:
    pass


@keys_cli.command(
    "generate",
    help=_(
        "Create the Ed25519 signing key (once); print the public key as the last line.\n\n"
        "Run again, it keeps the existing key and prints its public key: school servers configured with it "
        "stay valid."
    ),
)
def keys_generate() -> None:
    from hub.sync import manifest as mf

    app = _app(schema=False)  # a file, not the database
    path: Path = app.extensions["hub.settings"].sync_signing_key
    if path.exists():
        key = mf.load_private_key(path)
        click.echo(_("a signing key already exists at %(path)s; its public key:", path=path), err=True)
    else:
        key = mf.generate_private_key()
        try:
            mf.save_private_key(key, path)
        except FileExistsError:  # another `hub keys generate` got there first: use its key
            key = mf.load_private_key(path)
        click.echo(_("signing key written to %(path)s (keep it private; back it up)", path=path), err=True)
    click.echo(_("set HUB_UPSTREAM_PUBLIC_KEY on each school server to:"), err=True)
    click.echo(mf.public_key_text(key))  # not translated: the key alone, as the last line, for scripts


# -- sync ------------------------------------------------------------------------------


@click.group(
    "sync", cls=HubGroup, help=_("Mirror courses from an upstream hub (school servers) or serve them (upstream).")
)
def sync_cli() -> None:
    pass


def _grades(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    low, _dash, high = value.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise click.BadParameter(_("grades are A-B, e.g. 3-6")) from None


@sync_cli.command(
    "init",
    help=_(
        "Make this data directory a school server of UPSTREAM: check, migrate, create the admin, store the "
        "settings.\n\nChecks first that the upstream answers, takes the token and signs with the key (exit 1 and "
        "nothing written otherwise); safe to run again."
    ),
)
@click.option(
    "--upstream", "upstream_url", required=True, help=_("The upstream hub's URL, e.g. https://hub.example.cn.")
)
@click.option(
    "--public-key", required=True, help=_("The upstream's public key (the last line of `hub keys generate`).")
)
@click.option("--token", required=True, help=_("A sync token of this school's user on the upstream."))
@click.option("--admin-email", help=_("Email of the local admin to create (default admin@NAME.local)."))
def sync_init(upstream_url: str, public_key: str, token: str, admin_email: str | None) -> None:
    import os

    from hub import create_app
    from hub.config import ConfigError
    from hub.sync import setup

    upstream = setup.UpstreamSettings(upstream_url.strip().rstrip("/"), public_key.strip(), token.strip())
    given = {
        "HUB_UPSTREAM_URL": upstream.url,
        "HUB_UPSTREAM_PUBLIC_KEY": upstream.public_key,
        "HUB_UPSTREAM_TOKEN": upstream.token,
    }
    try:
        app = create_app(given, web=False)
    except ConfigError as exc:
        raise click.ClickException(_("configuration: %(error)s", error=wording.render(exc.text, _))) from None
    try:
        version = setup.check_upstream(upstream.url, upstream.public_key, upstream.token)
        click.echo(
            _(
                "the upstream %(url)s answers; its manifest (version %(version)s) verifies with the key",
                url=upstream.url,
                version=version,
            )
        )
        done = setup.init_school_server(app, upstream, admin_email=admin_email, manifest_version=version)
    except HubError as exc:
        raise _fail(exc) from None
    settings = app.extensions["hub.settings"]
    click.echo(_("database is up to date; this is the school server of %(school)s", school=done.school))
    if done.admin_password is not None:
        click.echo(_("local admin created: %(email)s", email=done.admin_email))
        click.echo(
            _(
                "password: %(password)s  (shown once; change it with %(command)s)",
                password=done.admin_password,
                command="hub user password EMAIL",
            )
        )
    else:
        click.echo(_("local admin: %(email)s (exists already; password unchanged)", email=done.admin_email))
    click.echo(
        _("upstream settings written to %(path)s (environment variables override them)", path=done.settings_path)
    )
    overridden = [name for name, value in given.items() if os.environ.get(name) not in (None, "", value)]
    if overridden:
        click.echo(
            _(
                "note: the environment sets %(names)s differently, and wins over the file",
                names=", ".join(overridden),
            ),
            err=True,
        )
    paired = f'--paired-with "{done.paired_with[0]}"' if done.paired_with else "--subject math --grades 7-9"
    data_dir = settings.data_dir
    found = Path(sys.executable).with_name("hub")  # the hub of this installation, for cron's short PATH
    command = str(found) if found.exists() else "hub"
    # The commands stay as typed; the shell comments after them are the reader's language.
    click.echo(_("next:"))
    click.echo(f"  hub sync subscribe {paired}   # " + _("or --course ID, or --subject S --grades A-B"))
    click.echo("  hub sync pull                # " + _("the first pull, now; then from cron:"))
    click.echo(
        f"  */30 * * * *  cd {Path.cwd()} && HUB_DATA_DIR={data_dir} {command} sync pull --window 22:00-06:00 "
        f">>{data_dir}/sync.log 2>&1"
    )
    click.echo(
        "  hub serve --host 0.0.0.0 --port 80   # "
        + _("teachers open %(url)s (or this machine's address)", url=f"http://{done.host_name}.local/")
    )


@sync_cli.command(
    "subscribe", help=_("Subscribe to a course, a subject over grades, a paired school's courses or a textbook.")
)
# hub.inputs.MAX_ID, the largest id the databases hold (not imported: it would load pydantic at start).
@click.option("--course", "course_id", type=click.IntRange(1, 2**63 - 1), help=_("Upstream course id."))
@click.option("--subject", help=_("Subject code, e.g. math (with --grades)."))
@click.option("--grades", help=_("Grade range A-B, e.g. 7-9 (default 1-9)."))
@click.option("--paired-with", "paired_with", help=_("Everything from this paired famous school (its name)."))
@click.option("--textbook", help=_("Every course on this textbook, by its key, e.g. renjiao-math-3-1."))
@click.option(
    "--school",
    "school_name",
    help=_("On the upstream: subscribe this school directly (for bundles); otherwise asks HUB_UPSTREAM_URL."),
)
def sync_subscribe(
    course_id: int | None,
    subject: str | None,
    grades: str | None,
    paired_with: str | None,
    textbook: str | None,
    school_name: str | None,
) -> None:
    chosen = sum(x is not None for x in (course_id, subject, paired_with, textbook))
    if chosen != 1:
        raise click.UsageError(
            _("give exactly one of --course, --subject (with --grades), --paired-with or --textbook")
        )
    if grades is not None and subject is None:
        raise click.UsageError(_("--grades goes with --subject"))
    app = _app(schema=school_name is not None)  # else it only asks the upstream
    settings = app.extensions["hub.settings"]
    if school_name is not None:
        from hub.accounts.services import get_school_by_name
        from hub.db import get_database
        from hub.sync import services

        with get_database(app).session() as session:
            try:
                school = get_school_by_name(session, school_name)
                sub = services.subscribe(
                    session,
                    school,
                    course_id=course_id,
                    subject=subject,
                    grades=_grades(grades),
                    paired_with=paired_with,
                    textbook=textbook,
                )
                description = services.describe_subscription(sub, session)
                session.commit()
            except HubError as exc:
                raise _fail(exc) from None
        click.echo(
            _(
                "subscription %(id)s: %(school)s mirrors %(description)s",
                id=sub.id,
                school=school.name,
                description=description,
            )
        )
        return
    if not settings.upstream_url or not settings.upstream_token:
        raise click.ClickException(
            _("not a mirror: set HUB_UPSTREAM_URL and HUB_UPSTREAM_TOKEN, or use --school on the upstream")
        )
    from hub.sync.client import SyncError, Upstream

    body: dict[str, object] = {}
    if course_id is not None:
        body["course"] = course_id
    if subject is not None:
        body["subject"] = subject
        if grades is not None:
            body["grades"] = grades
    if paired_with is not None:
        body["paired_with"] = paired_with
    if textbook is not None:
        body["textbook"] = textbook
    try:
        answer = Upstream(settings.upstream_url, settings.upstream_token).json(
            "POST", "/api/v1/sync/subscriptions", body
        )
    except SyncError as exc:
        raise _fail(exc) from None
    click.echo(
        _(
            "subscription %(id)s on %(url)s: %(description)s",
            id=answer["id"],
            url=settings.upstream_url,
            description=answer["description"],
        )
    )


@sync_cli.command(
    "pull",
    help=_(
        "Fetch the signed manifest and the missing blobs; apply complete courses.\n\n"
        "Exit status 0 when up to date (or outside the window, or some courses skipped for the storage budget, "
        "which is said); 1 with a message when the manifest is refused or the pull fails. The old state stays in "
        "both cases."
    ),
)
@click.option("--max-rate", help=_("Bandwidth cap in bytes per second, e.g. 500k or 2M."))
@click.option("--window", help=_("Only run inside this daily window in HUB_TIMEZONE, e.g. 22:00-06:00."))
@click.option("--parallel", type=int, help=_("Downloads at once (default HUB_SYNC_PARALLEL)."))
@click.option(
    "--max-bytes",
    help=_(
        "Download at most this much in this run, e.g. 300M (what a metered link allows); "
        "with a teaching calendar the lessons due come first, the rest waits for the next run."
    ),
)
def sync_pull(max_rate: str | None, window: str | None, parallel: int | None, max_bytes: str | None) -> None:
    from hub.sync.client import PullOptions, SyncError, Window, parse_rate, parse_size, pull

    try:
        cap = parse_size(max_bytes) if max_bytes else None
        rate = parse_rate(max_rate) if max_rate else None
        parsed_window = Window.parse(window) if window else None
    except ValueError as exc:
        raise click.BadParameter(wording.render(exc.args[0], _)) from None
    app = _app()
    options = PullOptions.from_settings(
        app.extensions["hub.settings"], max_rate=rate, window=parsed_window, parallel=parallel, max_bytes=cap
    )
    try:
        report = pull(app, options, out=sys.stderr)
    except SyncError as exc:
        raise _fail(exc) from None
    _report(report, "sync")


@sync_cli.command("status", help=_("The mirror's manifest version, courses and recent runs."))
@click.option("--json", "as_json", is_flag=True, help=_("Print the state and recent runs as JSON."))
@click.option(
    "--state-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help=_(
        "Write the blobs this server holds, its download counts and state, for `hub bundle export --state` "
        "on the upstream."
    ),
)
def sync_status(as_json: bool, state_out: Path | None) -> None:
    from hub.sync.client import local_zone, status

    app = _app()
    if state_out is not None:
        from hub.sync.bundles import state_document

        document = state_document(app)
        state_out.write_text(json.dumps(document, indent=1))
        carried = sum(item["count"] for item in (document["counts"] or {}).get("counts", []))
        click.echo(
            _(
                "state written to %(path)s: %(blobs)s blobs, %(downloads)s downloads",
                path=state_out,
                blobs=len(document["blobs"]),
                downloads=carried,
            ),
            err=True,
        )
    info = status(app)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))  # not translated: for programs
        return
    click.echo(
        _(
            "manifest version %(version)s (applied %(applied)s), %(courses)s mirrored courses, feed cursor %(cursor)s",
            version=info["manifest_version"],
            applied=info["applied_version"],
            courses=info["courses"],
            cursor=info["cursor"],
        )
    )
    settings = app.extensions["hub.settings"]
    if info["runs"]:
        click.echo(_("runs (times in %(zone)s):", zone=settings.timezone))
    zone = local_zone(settings)
    sources = {"pull": _("pull"), "bundle": _("USB bundle")}
    for run in info["runs"]:
        started = datetime.fromisoformat(run["started_at"]).astimezone(zone)
        click.echo(
            "  "
            + _(
                "run %(id)s %(source)s %(status)s %(started)s: files %(files)s, bytes %(bytes)s "
                "(%(transferred)s transferred) %(note)s",
                id=run["id"],
                source=sources.get(run["source"], run["source"]),
                status=_run_status(run["status"]),
                started=f"{started:%Y-%m-%d %H:%M}",
                files=run["files"],
                bytes=run["bytes"],
                transferred=run["transferred"],
                # The pull's own words in the terminal's language (English for a row from before).
                note=wording.message_of(run["wording"], run["message"], _),
            )
        )
        for line in wording.skipped_of(run["wording"], run["skipped"], _):
            click.echo("    " + _("skipped: %(reason)s", reason=line))


def _run_status(code: str) -> str:
    """A sync run's status (hub.sync.models.SyncRun) in the terminal's language."""
    labels = {
        "running": _("running"),
        "ok": _("ok"),
        "partial": _("partial"),
        "failed": _("failed"),
        "refused": _("refused"),
    }
    return labels.get(code, code)


# -- bundles ---------------------------------------------------------------------------


@click.group("bundle", cls=HubGroup, help=_("USB bundles: a signed manifest and its blobs, for schools with no link."))
def bundle_cli() -> None:
    pass


@bundle_cli.command(
    "export", help=_("Write a bundle: the signed manifest and the blobs named by hash, split at 4 GiB.")
)
@click.option(
    "--to", "target", required=True, type=click.Path(path_type=Path), help=_("Directory, or a .zip/.tar file.")
)
@click.option("--school", "school_name", help=_("On the upstream: the subscriber school to export for."))
@click.option(
    "--state",
    "state_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=_("The school's state file (`hub sync status --state-out`): only the blobs it lacks go in."),
)
def bundle_export(target: Path, school_name: str | None, state_file: Path | None) -> None:
    from hub.sync import bundles
    from hub.sync.manifest import CHAPTERS, TEXTBOOKS

    app = _app()
    try:
        state = bundles.read_state_file(state_file) if state_file else None
        have = state.blobs if state else None
        subtitles = bundles.reads_subtitles(state_file if state_file else None)
        chapters = bundles.reads_extra(state_file if state_file else None, CHAPTERS)
        textbooks = bundles.reads_extra(state_file if state_file else None, TEXTBOOKS)
        ack = None
        if state is not None and school_name is not None:
            # The state file carried the school's download counts and server state: recorded
            # once here (where a pull would have sent them), acknowledged in the bundle.
            received = bundles.receive_state(app, school_name, state)
            ack = received.ack
            if ack is not None:
                click.echo(
                    _(
                        "download counts from the state file: %(added)s counted, %(ignored)s not "
                        "(already recorded, or not countable)",
                        added=received.added,
                        ignored=received.ignored,
                    ),
                    err=True,
                )
                if received.usage_added or received.usage_ignored:
                    click.echo(
                        _(
                            "plays, downloads and course ZIPs per lesson from the state file: %(added)s counted, "
                            "%(ignored)s not",
                            added=received.usage_added,
                            ignored=received.usage_ignored,
                        ),
                        err=True,
                    )
        if target.suffix.lower() in (".zip", ".tar", ".tgz", ".gz"):
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".bundle-") as tmp:
                written = bundles.export_bundle(
                    app,
                    Path(tmp),
                    school_name=school_name,
                    have=have,
                    subtitles=subtitles,
                    chapters=chapters,
                    ack=ack,
                    textbooks=textbooks,
                )
                bundles.pack_bundle(Path(tmp), target)
        else:
            written = bundles.export_bundle(
                app,
                target,
                school_name=school_name,
                have=have,
                subtitles=subtitles,
                chapters=chapters,
                ack=ack,
                textbooks=textbooks,
            )
    except HubError as exc:
        raise _fail(exc) from None
    click.echo(
        _(
            "bundle written to %(path)s: %(blobs)s blobs (%(bytes)s bytes), %(skipped)s already at the school",
            path=target,
            blobs=written["blobs"],
            bytes=written["bytes"],
            skipped=written["skipped"],
        )
    )
    if written.get("left_out"):
        click.echo(
            _(
                "%(count)s files of courses this server holds only in part (teaching calendar) are not in the "
                "bundle; the school gets them from its next pull or bundle.",
                count=written["left_out"],
            )
        )


@bundle_cli.command(
    "import", help=_("Verify a bundle (directory, ZIP or tar) and apply it; exit 1 with a message when refused.")
)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def bundle_import(path: Path) -> None:
    from hub.sync.bundles import import_bundle

    app = _app()
    try:
        report = import_bundle(app, path, out=sys.stderr)
    except HubError as exc:
        raise _fail(exc) from None
    _report(report, "bundle")


def _report(report: PullReport, what: str) -> None:
    """What a pull or an import skipped, then its outcome: exit 1 with the message unless it went well."""
    for line in report.skipped:
        click.echo(_("skipped: %(reason)s", reason=wording.render(line, _)), err=True)
    if not report.ok:
        raise click.ClickException(
            _(
                "%(what)s %(status)s: %(note)s",
                what=_("sync") if what == "sync" else _("bundle"),
                status=_run_status(report.status),
                note=wording.render(report.message, _),
            )
        )
    click.echo(wording.render(report.message, _))


sync_cli.add_command(calendar_cli)
