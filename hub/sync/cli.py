"""``hub keys``, ``hub sync`` and ``hub bundle``: each command parses, calls the sync code, prints."""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hub.errors import HubError
from hub.sync.calendar_cli import calendar_cli
from hub.uploads.terminal import _

if TYPE_CHECKING:  # Flask and the sync modules load only when a command runs
    from flask import Flask

    from hub.sync.client import PullReport


def _app(*, schema: bool = True) -> Flask:
    from hub.cli import command_app  # the one place that loads the app for a command and checks the schema

    return command_app(schema=schema)  # no command here serves a request: no pages' or API's imports


def _fail(exc: HubError) -> click.ClickException:
    return click.ClickException(exc.message)


# -- keys ------------------------------------------------------------------------------


@click.group("keys")
def keys_cli() -> None:
    """The upstream's manifest signing key."""


@keys_cli.command("generate")
def keys_generate() -> None:
    """Create the Ed25519 signing key (once); print the public key as the last line.

    Run again, it keeps the existing key and prints its public key: school
    servers configured with it stay valid.
    """
    from hub.sync import manifest as mf

    app = _app(schema=False)  # a file, not the database
    path: Path = app.extensions["hub.settings"].sync_signing_key
    if path.exists():
        key = mf.load_private_key(path)
        click.echo(f"a signing key already exists at {path}; its public key:", err=True)
    else:
        key = mf.generate_private_key()
        try:
            mf.save_private_key(key, path)
        except FileExistsError:  # another `hub keys generate` got there first: use its key
            key = mf.load_private_key(path)
        click.echo(f"signing key written to {path} (keep it private; back it up)", err=True)
    click.echo("set HUB_UPSTREAM_PUBLIC_KEY on each school server to:", err=True)
    click.echo(mf.public_key_text(key))


# -- sync ------------------------------------------------------------------------------


@click.group("sync")
def sync_cli() -> None:
    """Mirror courses from an upstream hub (school servers) or serve them (upstream)."""


def _grades(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    low, _, high = value.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise click.BadParameter("grades are A-B, e.g. 3-6") from None


@sync_cli.command("init")
@click.option("--upstream", "upstream_url", required=True, help="The upstream hub's URL, e.g. https://hub.example.cn.")
@click.option("--public-key", required=True, help="The upstream's public key (the last line of `hub keys generate`).")
@click.option("--token", required=True, help="A sync token of this school's user on the upstream.")
@click.option("--admin-email", help="Email of the local admin to create (default admin@NAME.local).")
def sync_init(upstream_url: str, public_key: str, token: str, admin_email: str | None) -> None:
    """Make this data directory a school server of UPSTREAM: check, migrate, create the admin, store the settings.

    Checks first that the upstream answers, takes the token and signs with the
    key (exit 1 and nothing written otherwise); safe to run again.
    """
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
        raise click.ClickException(f"configuration: {exc}") from None
    try:
        version = setup.check_upstream(upstream.url, upstream.public_key, upstream.token)
        click.echo(f"the upstream {upstream.url} answers; its manifest (version {version}) verifies with the key")
        done = setup.init_school_server(app, upstream, admin_email=admin_email, manifest_version=version)
    except HubError as exc:
        raise _fail(exc) from None
    settings = app.extensions["hub.settings"]
    click.echo(f"database is up to date; this is the school server of {done.school}")
    if done.admin_password is not None:
        click.echo(f"local admin created: {done.admin_email}")
        click.echo(f"password: {done.admin_password}  (shown once; change it with hub user password EMAIL)")
    else:
        click.echo(f"local admin: {done.admin_email} (exists already; password unchanged)")
    click.echo(f"upstream settings written to {done.settings_path} (environment variables override them)")
    overridden = [name for name, value in given.items() if os.environ.get(name) not in (None, "", value)]
    if overridden:
        click.echo(f"note: the environment sets {', '.join(overridden)} differently, and wins over the file", err=True)
    paired = f'--paired-with "{done.paired_with[0]}"' if done.paired_with else "--subject math --grades 7-9"
    data_dir = settings.data_dir
    found = Path(sys.executable).with_name("hub")  # the hub of this installation, for cron's short PATH
    command = str(found) if found.exists() else "hub"
    click.echo("next:")
    click.echo(f"  hub sync subscribe {paired}   # or --course ID, or --subject S --grades A-B")
    click.echo("  hub sync pull                # the first pull, now; then from cron:")
    click.echo(
        f"  */30 * * * *  cd {Path.cwd()} && HUB_DATA_DIR={data_dir} {command} sync pull --window 22:00-06:00 "
        f">>{data_dir}/sync.log 2>&1"
    )
    click.echo(
        f"  hub serve --host 0.0.0.0 --port 80   # teachers open http://{done.host_name}.local/ "
        "(or this machine's address)"
    )


@sync_cli.command("subscribe")
# hub.inputs.MAX_ID, the largest id the databases hold (not imported: it would load pydantic at start).
@click.option("--course", "course_id", type=click.IntRange(1, 2**63 - 1), help="Upstream course id.")
@click.option("--subject", help="Subject code, e.g. math (with --grades).")
@click.option("--grades", help="Grade range A-B, e.g. 7-9 (default 1-9).")
@click.option("--paired-with", "paired_with", help="Everything from this paired famous school (its name).")
@click.option("--textbook", help="Every course on this textbook, by its key, e.g. renjiao-math-3-1.")
@click.option(
    "--school",
    "school_name",
    help="On the upstream: subscribe this school directly (for bundles); otherwise asks HUB_UPSTREAM_URL.",
)
def sync_subscribe(
    course_id: int | None,
    subject: str | None,
    grades: str | None,
    paired_with: str | None,
    textbook: str | None,
    school_name: str | None,
) -> None:
    """Subscribe to a course, a subject over grades, a paired school's courses or a textbook."""
    chosen = sum(x is not None for x in (course_id, subject, paired_with, textbook))
    if chosen != 1:
        raise click.UsageError("give exactly one of --course, --subject (with --grades), --paired-with or --textbook")
    if grades is not None and subject is None:
        raise click.UsageError("--grades goes with --subject")
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
        click.echo(f"subscription {sub.id}: {school.name} mirrors {description}")
        return
    if not settings.upstream_url or not settings.upstream_token:
        raise click.ClickException(
            "not a mirror: set HUB_UPSTREAM_URL and HUB_UPSTREAM_TOKEN, or use --school on the upstream"
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
    click.echo(f"subscription {answer['id']} on {settings.upstream_url}: {answer['description']}")


@sync_cli.command("pull")
@click.option("--max-rate", help="Bandwidth cap in bytes per second, e.g. 500k or 2M.")
@click.option("--window", help="Only run inside this daily window in HUB_TIMEZONE, e.g. 22:00-06:00.")
@click.option("--parallel", type=int, help="Downloads at once (default HUB_SYNC_PARALLEL).")
@click.option(
    "--max-bytes",
    help="Download at most this much in this run, e.g. 300M (what a metered link allows); "
    "with a teaching calendar the lessons due come first, the rest waits for the next run.",
)
def sync_pull(max_rate: str | None, window: str | None, parallel: int | None, max_bytes: str | None) -> None:
    """Fetch the signed manifest and the missing blobs; apply complete courses.

    Exit status 0 when up to date (or outside the window, or some courses
    skipped for the storage budget, which is said); 1 with a message when the
    manifest is refused or the pull fails. The old state stays in both cases.
    """
    from hub.sync.client import PullOptions, SyncError, Window, parse_rate, parse_size, pull

    try:
        cap = parse_size(max_bytes) if max_bytes else None
        rate = parse_rate(max_rate) if max_rate else None
        parsed_window = Window.parse(window) if window else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    app = _app()
    options = PullOptions.from_settings(
        app.extensions["hub.settings"], max_rate=rate, window=parsed_window, parallel=parallel, max_bytes=cap
    )
    try:
        report = pull(app, options, out=sys.stderr)
    except SyncError as exc:
        raise _fail(exc) from None
    _report(report, "sync")


@sync_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the state and recent runs as JSON.")
@click.option(
    "--state-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the blobs this server holds, its download counts and state, for `hub bundle export --state` "
    "on the upstream.",
)
def sync_status(as_json: bool, state_out: Path | None) -> None:
    """The mirror's manifest version, courses and recent runs."""
    from hub.sync.client import local_zone, status

    app = _app()
    if state_out is not None:
        from hub.sync.bundles import state_document

        document = state_document(app)
        state_out.write_text(json.dumps(document, indent=1))
        carried = sum(item["count"] for item in (document["counts"] or {}).get("counts", []))
        click.echo(f"state written to {state_out}: {len(document['blobs'])} blobs, {carried} downloads", err=True)
    info = status(app)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"manifest version {info['manifest_version']} (applied {info['applied_version']}), "
        f"{info['courses']} mirrored courses, feed cursor {info['cursor']}"
    )
    settings = app.extensions["hub.settings"]
    if info["runs"]:
        click.echo(f"runs (times in {settings.timezone}):")
    zone = local_zone(settings)
    for run in info["runs"]:
        started = datetime.fromisoformat(run["started_at"]).astimezone(zone)
        click.echo(
            f"  run {run['id']} {run['source']} {run['status']} {started:%Y-%m-%d %H:%M}: files {run['files']}, "
            f"bytes {run['bytes']} ({run['transferred']} transferred) {run['message']}"
        )


# -- bundles ---------------------------------------------------------------------------


@click.group("bundle")
def bundle_cli() -> None:
    """USB bundles: a signed manifest and its blobs, for schools with no link."""


@bundle_cli.command("export")
@click.option("--to", "target", required=True, type=click.Path(path_type=Path), help="Directory, or a .zip/.tar file.")
@click.option("--school", "school_name", help="On the upstream: the subscriber school to export for.")
@click.option(
    "--state",
    "state_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The school's state file (`hub sync status --state-out`): only the blobs it lacks go in.",
)
def bundle_export(target: Path, school_name: str | None, state_file: Path | None) -> None:
    """Write a bundle: the signed manifest and the blobs named by hash, split at 4 GiB."""
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
                    f"download counts from the state file: {received.added} counted, {received.ignored} not "
                    "(already recorded, or not countable)",
                    err=True,
                )
                if received.usage_added or received.usage_ignored:
                    click.echo(
                        f"plays, downloads and course ZIPs per lesson from the state file: {received.usage_added} "
                        f"counted, {received.usage_ignored} not",
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
        f"bundle written to {target}: {written['blobs']} blobs ({written['bytes']} bytes), "
        f"{written['skipped']} already at the school"
    )
    if written.get("left_out"):
        click.echo(
            _(
                "%(count)s files of courses this server holds only in part (teaching calendar) are not in the "
                "bundle; the school gets them from its next pull or bundle.",
                count=written["left_out"],
            )
        )


@bundle_cli.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def bundle_import(path: Path) -> None:
    """Verify a bundle (directory, ZIP or tar) and apply it; exit 1 with a message when refused."""
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
        click.echo(f"skipped: {line}", err=True)
    if not report.ok:
        raise click.ClickException(f"{what} {report.status}: {report.message}")
    click.echo(report.message)


sync_cli.add_command(calendar_cli)
