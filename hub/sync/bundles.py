"""USB bundles: a signed manifest and the blobs it lists, for schools with no link at all.

Layout of a bundle (a directory, or the same packed as ZIP or tar)::

    manifest.json            the signed index (hub.sync.manifest) exactly as issued, then every
                             course entry it lists, one line each (checked against its sha256)
    blobs/ab/abcd…           each blob named by its sha256, sharded by its first two hex digits
    blobs/ab/abcd….000, .001 a blob over 4 GiB, split for FAT32 (hub.sync.archive joins them)
    counts-ack.json          only in answer to a state file that carried download counts: the
                             report the upstream recorded, so the school stops carrying it

Export writes only the blobs a school lacks when told its state (``--state``,
the file ``hub sync status --state-out`` writes on the school server). The
state file also carries what a pull would have sent over the link: the
school's aggregated download counts since its last report and its server's
state (hub.sync.servers); the upstream records them once, whatever number of
times the same file is read (the report's id, as over the link). Import
reads the bundle through hub.sync.archive (nothing is extracted; names, links,
entry counts and decompressed bytes are checked as it reads), verifies the
signature like a pull does, refuses a bundle holding anything the manifest does
not list, verifies every blob against its sha256 as it stores it, and applies
course by course exactly as ``hub sync pull`` does.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import Pairing, School
from hub.config import Settings
from hub.db import get_database, utcnow
from hub.errors import HubError, Invalid, Text
from hub.i18n import N_
from hub.locks import LockBusy, file_lock
from hub.media.storage import Storage, is_sha256
from hub.sync import archive, services, wording
from hub.sync import manifest as mf
from hub.sync.calendar import PARTIAL
from hub.sync.client import Progress, PullOptions, PullReport, apply_manifest, sync_lock_path
from hub.sync.models import MirrorCourse, SyncRun
from hub.uploads.terminal import _

MANIFEST_NAME = "manifest.json"
ACK_NAME = "counts-ack.json"
ACK_MAX_BYTES = 32 * 1024 * 1024
"""A count report of 100,000 rows (the most one request carries) is some 10 MB of JSON."""
STATE_FORMAT = "oer-hub-state/1"
_SLACK_ENTRIES = 16
STORE_THREADS = 8
"""Blob files written at once by an export or an import: their fsyncs share the disk's commits."""


def blob_name(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


# -- state files ---------------------------------------------------------------------


def state_document(app: Flask) -> dict[str, Any]:
    """What this school server holds, for an incremental export, and what it reports upstream.

    The blobs it has, by hash; its download counts not yet reported (the pending
    report, kept so that the same report goes by USB or by link, never both); its
    server's state for the upstream's list of school servers.
    """
    from hub.sync import counts
    from hub.sync.servers import local_report

    storage: Storage = app.extensions["hub.storage"]
    with get_database(app).session() as session:
        state = services.mirror_state(session)
        have = sorted(sha for sha in services.mirrored_blobs(session) if storage.exists(sha))
        report = counts.pending_count_report(session)
        version = state.manifest_version
        session.commit()
    # "with": what this release reads beyond the base entries (hub.sync.manifest.EXTRAS);
    # an upstream exports subtitle tracks and chapters to a school only when its state file says so.
    return {
        "format": STATE_FORMAT,
        "manifest_version": version,
        "blobs": have,
        "with": list(mf.EXTRAS),
        "counts": report,
        "server": local_report(app),
        "at": utcnow().isoformat(),
    }


def reads_subtitles(path: Path | None) -> bool:
    """Whether the school server whose state file this is reads subtitle tracks in entries.

    No state file: a first bundle, for a school server just installed (so of this release
    or later): yes. A state file of an older release (no "with"): no, it would refuse them.
    """
    return reads_extra(path, mf.SUBTITLES)


def reads_extra(path: Path | None, extra: str) -> bool:
    """Whether the school server whose state file this is reads ``extra`` (hub.sync.manifest.EXTRAS) in entries."""
    if path is None:
        return True
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    extras = data.get("with") if isinstance(data, dict) else None
    return isinstance(extras, list) and extra in extras


@dataclass(frozen=True)
class StateFile:
    blobs: set[str]
    counts: dict[str, Any] | None  # a download-count report (hub.sync.counts), as the school would send it
    server: dict[str, Any] | None  # its server's state (hub.sync.servers.ServerReportIn)


def read_state(path: Path) -> set[str]:
    """The blob hashes of a state file; Invalid when it is not one."""
    return read_state_file(path).blobs


def read_state_file(path: Path) -> StateFile:
    """A state file written by `hub sync status --state-out`; Invalid when it is not one.

    Files from older school servers have no counts and no server state.
    """
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise Invalid(
            N_("%(path)s is not a readable state file."), path=path, detail=f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(data.get("blobs"), list):
        raise Invalid(N_("%(path)s is not a state file written by `hub sync status --state-out`."), path=path)
    blobs = data["blobs"]
    if not all(is_sha256(b) for b in blobs):
        raise Invalid(N_("%(path)s lists something that is not a sha256."), path=path)
    counts, server = data.get("counts"), data.get("server")
    if counts is not None and not (isinstance(counts, dict) and isinstance(counts.get("counts"), list)):
        raise Invalid(
            N_("%(path)s: its download counts are not a report written by `hub sync status --state-out`."), path=path
        )
    return StateFile(set(blobs), counts, server if isinstance(server, dict) else None)


@dataclass(frozen=True)
class StateReceived:
    added: int  # downloads counted
    ignored: int
    ack: dict[str, Any] | None  # what goes back in the bundle (ACK_NAME)
    usage_added: int = 0  # plays, downloads and ZIPs per lesson counted (source usb)
    usage_ignored: int = 0


def receive_state(app: Flask, school_name: str, state: StateFile) -> StateReceived:
    """Record on the upstream what a school's state file carried: its download counts, once, and its server's state.

    The counts go in exactly as the school server would send them over the link
    (the same parts, the same ids), so reading the same file twice, or the school
    sending the same report by link later, adds nothing.
    """
    from pydantic import ValidationError

    from hub.accounts.services import get_school_by_name
    from hub.sync import counts, servers

    settings: Settings = app.extensions["hub.settings"]
    limits = counts.CountLimits.from_settings(settings)
    added = ignored = usage_added = usage_ignored = 0
    with get_database(app).session() as session:
        school = get_school_by_name(session, school_name)
        if state.server is not None:
            try:
                report = servers.ServerReportIn.model_validate(state.server)
            except ValidationError:
                report = None  # the counts and the bundle matter more than the list's details
            if report is not None:
                servers.record_report(session, school, report, via="usb")
                session.commit()
        if state.counts is None or not state.counts["counts"]:
            return StateReceived(0, 0, None)
        try:
            parts = [counts.CountReportIn.model_validate(p) for p in counts.report_parts(state.counts, limits.max_rows)]
        except (ValidationError, KeyError, TypeError):
            raise Invalid(N_("The state file's download counts are not a report this hub can read.")) from None
        for part in parts:
            # Commits batch by batch; usage rows are recorded as come by USB.
            received = counts.receive_counts(session, school, part, limits, source="usb")
            added, ignored = added + received.added, ignored + received.ignored
            usage_added += received.usage_added
            usage_ignored += received.usage_ignored
    ack = {"id": state.counts["id"], "counts": state.counts["counts"]}
    return StateReceived(added, ignored, ack, usage_added, usage_ignored)


# -- export --------------------------------------------------------------------------


def _require_subscriptions(session: Session, school: School) -> None:
    """A school that subscribes to nothing gets no bundle: an empty one would look like a delivery."""
    if services.list_subscriptions(session, school.id):
        return
    famous = session.scalar(
        select(School.name)
        .join(Pairing, Pairing.famous_school_id == School.id)
        .where(Pairing.rural_school_id == school.id)
        .order_by(School.name)
        .limit(1)
    )
    raise Invalid(
        N_(
            "%(school)s subscribes to nothing, so its bundle would be empty. Subscribe it first, e.g. "
            'hub sync subscribe --school "%(school)s" %(choice)s (or --course ID, or --subject math --grades 7-9).'
        ),
        school=school.name,
        choice=f'--paired-with "{famous}"' if famous else "--subject math --grades 1-9",
    )


def export_bundle(
    app: Flask,
    target: Path,
    *,
    school_name: str | None = None,
    have: set[str] | None = None,
    part_bytes: int = archive.FAT32_LIMIT,
    subtitles: bool = True,
    chapters: bool = True,
    ack: dict[str, Any] | None = None,
    textbooks: bool = True,
) -> dict[str, int]:
    """Write a bundle into the directory `target`; returns counts of blobs and bytes written.

    On the upstream, `school_name` names the subscriber and a fresh manifest is
    signed for it, with subtitle tracks when `subtitles`, chapters when `chapters` and the
    textbook alignment when `textbooks` (the school reads them).
    On a school server (no `school_name`), the last verified manifest from its
    upstream is re-exported with the blobs it holds, so one synced school can
    carry an update to its neighbour.
    """
    settings: Settings = app.extensions["hub.settings"]
    storage: Storage = app.extensions["hub.storage"]
    database = get_database(app)
    with database.session() as session:
        if school_name is not None:
            from hub.accounts.services import get_school_by_name

            school = get_school_by_name(session, school_name)
            _require_subscriptions(session, school)
            key = mf.load_private_key(settings.sync_signing_key)
            profiles = services.video_profiles(settings.sync_video_profiles)
            if subtitles:  # the school server reads them (see reads_subtitles)
                profiles = (*profiles, mf.SUBTITLES)
            if chapters:  # the same for chapters (reads_extra)
                profiles = (*profiles, mf.CHAPTERS)
            if textbooks:  # and for the textbook alignment
                profiles = (*profiles, mf.TEXTBOOKS)
            envelope = services.issue_manifest(
                session,
                school,
                private_key=key,
                lifetime=settings.sync_manifest_lifetime,
                profiles=profiles,
            )
            index = mf.verify(envelope, key.public_key(), not_older_than=None, now=utcnow())
            bodies = mf.ENTRY_CACHE.entries(session, [c.id for c in index.courses], profiles)
            session.commit()
            public_key = key.public_key()
        else:
            if not settings.upstream_public_key:
                raise Invalid(N_("Name the school to export for (--school), or run this on a synced school server."))
            public_key = mf.load_public_key(settings.upstream_public_key)
            found = services.stored_manifest(session, public_key)
            if found is None:
                raise Invalid(N_("This school server has not synced yet: there is no manifest to export."))
            index, envelope = found
            held = services.held_entries(session, [c.id for c in index.courses])
            bodies = {cid: body for cid, (body, _issued) in held.items()}
    absent = [c.id for c in index.courses if c.id not in bodies]
    if absent:
        raise HubError(
            N_(
                "%(courses)d courses of the manifest (first: %(first)s) are not applied on this hub yet; "
                "sync first, then export."
            ),
            courses=len(absent),
            first=absent[0],
        )
    document = mf.document(envelope, [bodies[c.id] for c in index.courses])
    # Checked like an import checks it: an entry that does not match the index is never carried.
    manifest, _envelope = mf.verify_document(document, public_key, not_older_than=None, now=utcnow())
    target.mkdir(parents=True, exist_ok=True)
    written = {"blobs": 0, "bytes": 0, "skipped": 0, "left_out": 0}
    coming = _files_still_coming(database, manifest) if school_name is None else set()
    todo = []
    for sha, file in sorted(manifest.files().items()):
        if have is not None and sha in have:
            written["skipped"] += 1
            continue
        if sha in coming and not storage.exists(sha):
            # A course this school server holds in part (teaching calendar): what it has goes
            # along, the neighbour gets the rest from its own pull or the next bundle.
            written["left_out"] += 1
            continue
        if not storage.exists(sha):
            raise HubError(
                N_("Blob %(file)s of the manifest is not in this hub's storage; the bundle is incomplete."),
                file=f"{sha[:12]}…",
            )
        todo.append(file)

    def copy(file: mf.ManifestFile) -> None:
        chunks = storage.open_range(file.sha256, 0, None, chunk_size=1024 * 1024)
        archive.write_file(target, blob_name(file.sha256), chunks, part_bytes)

    # Each file is written, fsynced and renamed; several at once share the disk's commits.
    with ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="bundle-export") as pool:
        for file, _done in zip(todo, pool.map(copy, todo), strict=True):
            written["blobs"] += 1
            written["bytes"] += file.size
    if ack is not None:
        archive.write_file(target, ACK_NAME, [json.dumps(ack, separators=(",", ":")).encode()])
    # The manifest last: a bundle whose export was interrupted has no manifest and is not taken for whole.
    archive.write_file(target, MANIFEST_NAME, [document])
    return written


def _files_still_coming(database: Any, manifest: mf.Manifest) -> set[str]:
    """The files of the courses this school server holds only in part (hub.sync.calendar)."""
    with database.session() as session:
        partial = set(session.scalars(select(MirrorCourse.upstream_id).where(MirrorCourse.revision == PARTIAL)))
    return {sha for course in manifest.courses if course.id in partial for sha in course.files()}


# -- import --------------------------------------------------------------------------


def _read_limited(stream: IO[bytes], limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise archive.BundleError(N_("The bundle's manifest is larger than any this hub accepts."))
    return data


def import_bundle(app: Flask, path: Path, *, out: IO[str], options: PullOptions | None = None) -> PullReport:
    """Verify and apply a bundle (directory, ZIP or tar); the report says what happened.

    Refused (status "refused", nothing changed): a bad or missing signature, an
    older or expired manifest, an entry the manifest does not list, an unsafe
    archive. Blobs whose bytes do not match their hash are never stored and the
    courses that need them are not applied (status "failed").
    """
    settings: Settings = app.extensions["hub.settings"]
    if not settings.upstream_public_key:
        raise Invalid(N_("Set HUB_UPSTREAM_PUBLIC_KEY (the upstream's public key) before importing bundles."))
    public_key = mf.load_public_key(settings.upstream_public_key)
    options = options or PullOptions.from_settings(settings, report_counts=False)
    try:
        with file_lock(sync_lock_path(settings)):
            return _import_locked(app, path, public_key, options, out)
    except LockBusy:
        return PullReport(
            "failed", Text(N_("A `hub sync pull` or another import is running; try again when it has finished."))
        )


def _import_locked(
    app: Flask, path: Path, public_key: Ed25519PublicKey, options: PullOptions, out: IO[str]
) -> PullReport:
    database = get_database(app)
    with database.session() as session:
        services.close_abandoned_runs(session)
        run = services.start_run(session, "bundle")
        session.commit()
        run_id = run.id
    report = PullReport("failed", "", run_id=run_id)
    try:
        report = _import(app, path, public_key, options, out, run_id)
    except (archive.BundleError, mf.ManifestRefused) as exc:
        report.status, report.message = "refused", wording.from_error(exc)
    except HubError as exc:
        report.status, report.message = "failed", wording.from_error(exc)
    finally:
        with database.session() as session:
            logged = session.get(SyncRun, run_id)
            if logged is not None:
                logged.manifest_version = report.manifest_version
                logged.courses_applied, logged.courses_removed = report.courses_applied, report.courses_removed
                services.finish_run(session, logged, report.status, report.message, report.skipped)
                session.commit()
    return report


def _import(
    app: Flask, path: Path, public_key: Ed25519PublicKey, options: PullOptions, out: IO[str], run_id: int
) -> PullReport:
    database = get_database(app)
    storage: Storage = app.extensions["hub.storage"]
    # First look: only the manifest, with a budget that fits nothing else.
    with archive.open_bundle(path, max_bytes=mf.MAX_DOCUMENT_BYTES, max_entries=_first_look_entries()) as source:
        if MANIFEST_NAME not in source.names():
            raise archive.BundleError(
                N_("%(path)s has no %(name)s: not a bundle, or its export did not finish."),
                path=path,
                name=MANIFEST_NAME,
            )
        with source.open(MANIFEST_NAME) as stream:
            document = _read_limited(stream, mf.MAX_DOCUMENT_BYTES)
        carried = ACK_NAME in source.names()
    with database.session() as session:
        state = services.mirror_state(session)
        before = (state.manifest_version, state.envelope, state.cursor)
        manifest = services.accept_document(session, document, public_key)
        files = manifest.files()
        # Then the real budget: exactly the bytes and entries the signed manifest accounts for.
        allowed = {MANIFEST_NAME} | {blob_name(sha) for sha in files} | ({ACK_NAME} if carried else set())
        max_bytes = len(document) + sum(f.size for f in files.values()) + (ACK_MAX_BYTES if carried else 0)
        max_entries = len(files) * 2 + 256 + _SLACK_ENTRIES  # files, their shard directories, blobs/
        with archive.open_bundle(path, max_bytes=max_bytes, max_entries=max_entries) as source:
            names = source.names()
            strangers = sorted(set(names) - allowed)
            if strangers:
                raise archive.BundleError(
                    N_(
                        "The bundle holds %(entries)d entries its manifest does not list (first: %(first)s); "
                        "nothing was imported."
                    ),
                    entries=len(strangers),
                    first=repr(strangers[0][:100]),
                )
            session.commit()  # the manifest is accepted only once the bundle's contents are known to be its own
            present = set(names)
            out.write(
                _(
                    "bundle manifest version %(version)s: %(courses)s courses",
                    version=manifest.version,
                    courses=len(manifest.courses),
                )
                + "\n"
            )
            if carried:
                _acknowledge_carried(session, source, out)

            def store_missing(missing: dict[str, mf.ManifestFile], progress: Progress) -> dict[str, Text]:
                failures: dict[str, Text] = {}
                pending: deque[tuple[str, Future[None]]] = deque()

                def settle(sha: str, future: Future[None]) -> None:
                    exc = future.exception()
                    if isinstance(exc, services.BlobMismatch):
                        failures[sha] = wording.from_error(exc)
                    elif exc is not None:
                        raise exc

                # The archive is read in order by this thread; small files are stored by a pool,
                # whose fsyncs overlap, with at most PENDING of them held in memory.
                with ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="bundle-store") as pool:
                    for sha, file in missing.items():
                        name = blob_name(sha)
                        if name not in present:
                            failures[sha] = Text(N_("not in this bundle"))
                            continue
                        with source.open(name) as stream:
                            counted = cast(IO[bytes], _Counting(stream, progress))
                            if file.size > IN_MEMORY_BYTES:
                                pending.append((sha, _stored_now(storage, counted, file, progress)))
                            else:
                                data = io.BytesIO(_read_up_to(counted, file.size + 1))
                                pending.append((sha, pool.submit(_store, storage, data, file, progress)))
                        while len(pending) > PENDING:
                            settle(*pending.popleft())
                    while pending:
                        settle(*pending.popleft())
                return failures

            try:
                return apply_manifest(
                    app, manifest, options, out, run_id=run_id, fetcher=None, store_missing=store_missing
                )
            except archive.BundleError:
                # Refused while its blobs were read (past its budget, say): the signed manifest
                # came with contents that are not its own, so the mirror forgets it again. A
                # pull that fails mid-way keeps its manifest instead, to resume from it.
                state = services.mirror_state(session)
                state.manifest_version, state.envelope, state.cursor = before
                session.commit()
                raise


def _acknowledge_carried(session: Session, source: Any, out: IO[str]) -> None:
    """The upstream recorded the download counts of our state file: stop carrying them (see ACK_NAME)."""
    from hub.sync import counts

    with source.open(ACK_NAME) as stream:
        raw = _read_up_to(stream, ACK_MAX_BYTES + 1)
    try:
        carried = json.loads(raw) if len(raw) <= ACK_MAX_BYTES else None
    except (ValueError, RecursionError):
        carried = None
    if not isinstance(carried, dict):
        out.write(
            _("the bundle's acknowledgement of download counts is unreadable; they go with the next state file") + "\n"
        )
        return
    acknowledged = counts.acknowledge_carried_report(session, carried)
    session.commit()
    if acknowledged:
        out.write(
            _("the upstream recorded %(downloads)s downloads from this school's state file", downloads=acknowledged)
            + "\n"
        )


IN_MEMORY_BYTES = 8 * 1024 * 1024
PENDING = 32


def _read_up_to(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes, however short the stream's reads are (one more than expected shows a liar)."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        chunk = stream.read(min(left, 1024 * 1024))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _store(storage: Storage, data: IO[bytes], file: mf.ManifestFile, progress: Progress) -> None:
    services.store_verified(storage, data, file)
    progress.file_done(file.sha256)


def _stored_now(storage: Storage, data: IO[bytes], file: mf.ManifestFile, progress: Progress) -> Future[None]:
    future: Future[None] = Future()
    try:
        _store(storage, data, file, progress)
        future.set_result(None)
    except services.BlobMismatch as exc:
        future.set_exception(exc)
    return future


def _first_look_entries() -> int:
    # Enough for a bundle of a very large catalog; the exact bound comes once the manifest is read.
    return 4_000_000


class _Counting:
    """A read-only stream that counts its bytes into the run's progress."""

    def __init__(self, stream: IO[bytes], progress: Progress) -> None:
        self._stream = stream
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._progress.received(len(data))
        return data

    def readable(self) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk


def pack_bundle(directory: Path, archive_path: Path) -> None:
    """Pack an exported bundle directory as ZIP or tar (by suffix) for carrying as one file."""
    archive.pack(directory, archive_path)
