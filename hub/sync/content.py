"""The school server's content page: choose what to mirror from the upstream, and watch it arrive.

One service per thing an admin does there (hub.sync.views is the adapter):

- :func:`overview` — the upstream's catalog (hub.sync.catalog) as this server
  sees it, by subject × grade and by paired school, each course's size against
  the free disk and the storage budget, the subscriptions, the pull in
  progress and the last runs with course names;
- :func:`subscribe` / :func:`unsubscribe` — ask the upstream, as ``hub sync
  subscribe`` does: subscriptions live there, since the upstream signs the
  manifest they select;
- :func:`start_pull` — ``hub sync pull`` in a background thread of this
  process, so the request returns at once.

The catalog is not signed: it only informs a choice. What a pull fetches is
still what the signed manifest lists, each file checked against its sha256. It
is kept in HUB_SYNC_DIR for a few minutes (a 2G link should not carry it on
every page view), and when the upstream cannot be reached the last copy is
shown, saying how old it is; the courses mirrored here are always shown, from
this server's own database.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context
from pydantic import ValidationError
from sqlalchemy import select

from hub.accounts.models import School
from hub.catalog.models import Course
from hub.config import Settings
from hub.db import get_database, utcnow
from hub.errors import Conflict, HubError, Text, english
from hub.i18n import N_, current_locale
from hub.locks import LockBusy, file_lock
from hub.media.storage.local import LocalStorage
from hub.sync import network, services, wording
from hub.sync.catalog import CatalogOut
from hub.sync.client import (
    WITH_EXTRAS,
    PullOptions,
    SyncError,
    Upstream,
    UpstreamRefused,
    gunzip_bounded,
    pull,
    storage_room,
    sync_lock_path,
)
from hub.sync.models import MirrorCourse, SyncRun

log = logging.getLogger(__name__)

CATALOG_MAX_AGE = 300.0
"""Seconds a fetched catalog is shown before the next page view asks again (a subscription change asks at once)."""
CATALOG_TIMEOUT = 15.0
"""Seconds a page view waits for the upstream's catalog before showing the copy it has."""
MAX_CATALOG_BYTES = 64 * 1024 * 1024
"""A catalog of 100,000 courses is some 30 MB of JSON; anything far beyond is not ours."""
RUNS_SHOWN = 10


class NotAMirror(HubError):
    status = 409
    code = "not_a_mirror"


class UpstreamUnavailable(HubError):
    """The upstream did not answer a subscription change: nothing changed."""

    status = 502
    code = "upstream_unavailable"


# -- the upstream's catalog, kept a few minutes ----------------------------------------


@dataclass
class Catalog:
    """The catalog as last fetched (None: never), and why it could not be fetched now ("" when it was)."""

    offer: CatalogOut | None
    fetched_at: datetime | None
    problem: str = ""  # "" | "unreachable" | "refused" | "invalid"
    detail: str = ""  # why, in a few words (a Text, translated where shown; its own detail for the technician)


def _cache_path(settings: Settings) -> Path:
    return settings.sync_dir / "catalog.json"


def _read_cache(settings: Settings) -> Catalog:
    try:
        data = json.loads(_cache_path(settings).read_text())
        return Catalog(CatalogOut.model_validate(data["catalog"]), datetime.fromisoformat(data["fetched_at"]))
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return Catalog(None, None)


def _write_cache(settings: Settings, raw: dict[str, Any], at: datetime) -> None:
    path = _cache_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(json.dumps({"fetched_at": at.isoformat(), "catalog": raw}, ensure_ascii=False))
    os.replace(partial, path)  # a page view reading meanwhile sees the old copy or the new, never half


def _stale_path(settings: Settings) -> Path:
    return settings.sync_dir / "catalog.stale"


def forget_catalog(settings: Settings) -> None:
    """Ask the upstream again on the next page view; the copy kept is still shown if it does not answer."""
    path = _stale_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _upstream(settings: Settings, timeout: float = CATALOG_TIMEOUT) -> Upstream:
    if not settings.upstream_url:
        raise NotAMirror(N_("This hub is not a school server: set HUB_UPSTREAM_URL and HUB_UPSTREAM_PUBLIC_KEY."))
    if not settings.upstream_token:
        raise NotAMirror(
            N_("Set HUB_UPSTREAM_TOKEN to a sync token of this school's user on the upstream to change subscriptions.")
        )
    # Asked in the reader's language: the upstream's own words (a refused subscription) are shown as they come.
    language = current_locale() if has_request_context() else None
    return Upstream(settings.upstream_url, settings.upstream_token, timeout=timeout, language=language)


def upstream_catalog(settings: Settings, *, refresh: bool = False) -> Catalog:
    """The upstream's catalog: the copy kept if it is recent, else fetched; the old copy (and why) if that fails."""
    kept = _read_cache(settings)
    now = utcnow()
    if (
        not refresh
        and not _stale_path(settings).exists()
        and kept.offer is not None
        and kept.fetched_at is not None
        and 0 <= (now - kept.fetched_at).total_seconds() < CATALOG_MAX_AGE
    ):
        return kept
    try:
        upstream = _upstream(settings)
        status, raw = upstream.fetch(
            "GET", "/api/v1/sync/catalog" + WITH_EXTRAS, None, {"Accept-Encoding": "gzip"}, MAX_CATALOG_BYTES
        )
    except NotAMirror as exc:
        return Catalog(kept.offer, kept.fetched_at, "refused", wording.from_error(exc))
    except SyncError as exc:
        return Catalog(kept.offer, kept.fetched_at, "unreachable", wording.from_error(exc))
    if status != 200:
        reason = network.answered(status, raw[:200].decode(errors="replace"))
        return Catalog(kept.offer, kept.fetched_at, "refused", reason)
    try:
        data = json.loads(gunzip_bounded(raw, MAX_CATALOG_BYTES) if raw[:2] == b"\x1f\x8b" else raw)
        offer = CatalogOut.model_validate(data)
    except (ValueError, ValidationError, SyncError) as exc:
        reason = Text(N_("the upstream's catalog is not one this hub can read"), detail=str(exc)[:300])
        return Catalog(kept.offer, kept.fetched_at, "invalid", reason)
    _write_cache(settings, data, now)
    _stale_path(settings).unlink(missing_ok=True)
    return Catalog(offer, now)


# -- subscriptions (kept by the upstream) ----------------------------------------------


def subscribe(
    settings: Settings,
    *,
    course: int | None = None,
    subject: str | None = None,
    grades: tuple[int, int] | None = None,
    paired_with: int | None = None,
    textbook: str | None = None,
) -> None:
    """Subscribe this school to one course, a subject over grades, a paired school or a textbook, on the upstream."""
    body: dict[str, Any] = {}
    if course is not None:
        body["course"] = course
    elif subject is not None:
        body["subject"] = subject
        if grades is not None:
            body["grades"] = f"{grades[0]}-{grades[1]}"
    elif paired_with is not None:
        body["paired_with"] = str(paired_with)
    elif textbook is not None:
        body["textbook"] = textbook
    _change(settings, "POST", "/api/v1/sync/subscriptions", body)


def unsubscribe(settings: Settings, subscription_id: int) -> None:
    _change(settings, "DELETE", f"/api/v1/sync/subscriptions/{subscription_id}", None)


def _change(settings: Settings, method: str, path: str, body: dict[str, Any] | None) -> None:
    try:
        _upstream(settings).json(method, path, body)
    except UpstreamRefused as exc:
        said = exc.said or wording.from_error(exc)  # the upstream's own message, in the language asked for
        raise UpstreamUnavailable(N_("The upstream refused the change: %(reason)s"), reason=said) from None
    except SyncError as exc:
        raise UpstreamUnavailable(
            N_("The upstream could not be reached; nothing changed. Try again when the link is up (%(reason)s)."),
            reason=wording.from_error(exc),
        ) from None
    finally:
        # Whatever happened, the next page view asks the upstream what is subscribed now.
        forget_catalog(settings)


# -- pull now ----------------------------------------------------------------------------

_started: dict[str, threading.Thread] = {}  # by HUB_DATA_DIR: tests run several hubs in one process
_started_guard = threading.Lock()


def start_pull(app: Flask) -> None:
    """Start a pull in a background thread of this process and return at once.

    One pull at a time, between processes too: the pull holds the sync lock for
    its whole run (cron's `hub sync pull` then says "busy" and does nothing, and
    so does this one when cron's is running). A pull started here ignores the
    night window (an admin asked for it now) and runs with the configured budget.
    If the server stops mid-pull, the partial files stay and the next pull
    resumes them; its row in the run log is marked failed by the next run.
    """
    settings: Settings = app.extensions["hub.settings"]
    _upstream(settings)  # not a mirror: say so now, not in a thread
    if pull_running(app):
        raise Conflict(N_("A pull is already running; its progress is shown on this page."))
    key = str(settings.data_dir)
    with _started_guard:
        thread = _started.get(key)
        if thread is not None and thread.is_alive():
            raise Conflict(N_("A pull is already running; its progress is shown on this page."))
        thread = threading.Thread(target=_pull_now, args=(app,), name="sync-pull-now", daemon=True)
        _started[key] = thread
        thread.start()


def _pull_now(app: Flask) -> None:
    settings: Settings = app.extensions["hub.settings"]
    settings.sync_dir.mkdir(parents=True, exist_ok=True)
    # What `hub sync pull` prints goes to a file beside the partial downloads, for the technician.
    with app.app_context(), (settings.sync_dir / "pull-now.log").open("w") as out:
        try:
            report = pull(app, PullOptions.from_settings(settings), out=out)
            out.write(f"{report.status}: {english(report.message)}\n")  # the technician's file: English, with details
        except Exception:  # a thread has nobody to raise to: the log says what happened
            log.exception("pull started from the content page failed")


def _started_here(settings: Settings) -> bool:
    thread = _started.get(str(settings.data_dir))
    return thread is not None and thread.is_alive()


def pull_running(app: Flask) -> bool:
    """True while a pull (or bundle import) holds the sync lock, or one started here is getting going."""
    settings: Settings = app.extensions["hub.settings"]
    if _started_here(settings):
        return True
    try:
        # Taken and given back at once: only a pull that holds it makes this fail.
        with file_lock(sync_lock_path(settings)):
            return False
    except LockBusy:
        return True


# -- the page's data -------------------------------------------------------------------


@dataclass
class Room:
    """Bytes on this server: what mirrored courses use, the budget, the free disk, and what still fits."""

    used: int
    budget: int  # 0: no budget, only the disk
    free: int | None  # None: object storage, no disk to measure
    reserve: int
    left: int | None  # what a pull may still add; None: no limit known
    pending: int = 0  # subscribed courses not yet here
    after_pending: int | None = None  # left once those arrive


@dataclass
class CourseRow:
    id: int
    title: str
    subject: str
    grades: list[int]
    school: str
    school_id: int
    lessons: int
    bytes: int
    state: str  # here | waiting | fits | too-big
    subscription: int | None = None  # the course subscription to end, when there is one


@dataclass
class RunRow:
    id: int
    source: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    transferred: int
    courses: dict[str, list[str]]
    applied: int
    removed: int
    message: str
    wording: dict[str, Any] | None = None

    @property
    def summary(self) -> str:
        """The run's own summary in the request's language (a row from before wording: its English text)."""
        from flask_babel import gettext

        return wording.message_of(self.wording, self.message, gettext)

    @property
    def localized(self) -> bool:
        return bool(self.wording and self.wording.get("message") is not None)

    @property
    def percent(self) -> int:
        if self.bytes_total:
            return min(100, self.bytes_done * 100 // self.bytes_total)
        return 100 if self.status != "running" else 0


@dataclass
class Overview:
    upstream: str
    catalog: Catalog
    room: Room
    courses: list[CourseRow]  # the filtered catalog
    shown: int  # how many of `courses` the page lists
    grid: dict[str, dict[int, int]]  # subject → grade → courses
    subscriptions: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    mirrored: list[tuple[str, str]]  # (title, school) of the courses on this server
    runs: list[RunRow]
    running: RunRow | None
    starting: bool  # "pull now" was pressed and the run has not written its row yet
    filters: dict[str, Any] = field(default_factory=dict)
    schools: list[tuple[int, str]] = field(default_factory=list)


COURSES_SHOWN = 60
"""Courses listed without a filter: a phone page, not the whole catalog; subject and grade narrow it."""


def room(app: Flask) -> Room:
    settings: Settings = app.extensions["hub.settings"]
    storage = app.extensions["hub.storage"]
    with get_database(app).session() as session:
        used = services.mirrored_bytes(session)
        left = storage_room(session, storage, PullOptions.from_settings(settings))
    free = None
    if isinstance(storage, LocalStorage):
        free = shutil.disk_usage(storage.root).free
    return Room(used, settings.sync_storage_budget, free, settings.sync_disk_reserve, left)


def overview(
    app: Flask,
    *,
    subject: str | None = None,
    grade: int | None = None,
    school: int | None = None,
    refresh: bool = False,
) -> Overview:
    """Everything the content page shows, for these filters of the catalog (`refresh`: ask the upstream now)."""
    settings: Settings = app.extensions["hub.settings"]
    catalog = upstream_catalog(settings, refresh=refresh) if settings.upstream_url else Catalog(None, None)
    space = room(app)
    with get_database(app).session() as session:
        mirrored_ids = set(session.scalars(select(MirrorCourse.upstream_id)))
        mirrored = [
            (title, name)
            for title, name in session.execute(
                select(Course.title, Course.school_id)
                .join(MirrorCourse, MirrorCourse.course_id == Course.id)
                .order_by(Course.title)
            )
        ]
        names: dict[int, str] = {sid: name for sid, name in session.execute(select(School.id, School.name))}
        mirrored_named = [(title, names.get(sid, "")) for title, sid in mirrored]
        runs = [_run_row(run) for run in services.recent_runs(session, RUNS_SHOWN)]
    running = next((run for run in runs if run.status == "running"), None)
    # The lock is probed only when the log says a run is going: a probe at the very moment
    # cron starts its pull would make that pull find the lock taken and skip a night.
    busy = _started_here(settings) or (running is not None and pull_running(app))
    if running is not None and not busy:
        running.status = "interrupted"  # its process stopped: the next run marks it failed
        running = None
    offer = catalog.offer
    rows: list[CourseRow] = []
    grid: dict[str, dict[int, int]] = {}
    subscriptions: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    schools: dict[int, str] = {}
    if offer is not None:
        titles = {c.id: c.title for c in offer.courses}
        course_subs = {s.course: s.id for s in offer.subscriptions if s.kind == "course" and s.course is not None}
        space.pending = sum(c.bytes for c in offer.courses if c.subscribed and c.id not in mirrored_ids)
        if space.left is not None:
            space.after_pending = max(space.left - space.pending, 0)
        for c in offer.courses:
            schools[c.school.id] = c.school.name
            for g in c.grades:
                grid.setdefault(c.subject, {}).setdefault(g, 0)
                grid[c.subject][g] += 1
            if not _matches(c.subject, c.grades, c.school.id, subject, grade, school):
                continue
            if c.id in mirrored_ids and c.subscribed:
                state = "here"
            elif c.subscribed:
                state = "waiting"
            elif space.after_pending is None or c.bytes <= space.after_pending:
                state = "fits"
            else:
                state = "too-big"
            rows.append(
                CourseRow(
                    c.id,
                    c.title,
                    c.subject,
                    c.grades,
                    c.school.name,
                    c.school.id,
                    c.lessons,
                    c.bytes,
                    state,
                    course_subs.get(c.id),
                )
            )
        for s in offer.subscriptions:
            subscriptions.append(
                {
                    "id": s.id,
                    "kind": s.kind,
                    "course": titles.get(s.course or 0, str(s.course)),
                    "subject": s.subject,
                    "grades": list(range(s.grade_min or 1, (s.grade_max or 9) + 1)),
                    "paired_with": s.paired_with.name if s.paired_with else "",
                    "textbook": s.textbook or "",
                    "titles": [titles[cid] for cid in s.courses if cid in titles],
                    "bytes": s.bytes,
                    "here": sum(1 for cid in s.courses if cid in mirrored_ids),
                    "count": len(s.courses),
                }
            )
        subscribed_paired = {s.paired_with.id for s in offer.subscriptions if s.paired_with is not None}
        for p in offer.paired:
            paired.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "courses": p.courses,
                    "bytes": p.bytes,
                    "subscribed": p.id in subscribed_paired,
                    "fits": space.after_pending is None or p.bytes <= space.after_pending,
                }
            )
    filtered = bool(subject or grade or school)
    return Overview(
        upstream=settings.upstream_url,
        catalog=catalog,
        room=space,
        courses=rows,
        shown=len(rows) if filtered else min(len(rows), COURSES_SHOWN),
        grid={s: dict(sorted(g.items())) for s, g in grid.items()},
        subscriptions=subscriptions,
        paired=paired,
        mirrored=mirrored_named,
        runs=runs,
        running=running,
        starting=busy and running is None,
        filters={"subject": subject or "", "grade": grade or "", "school": school or ""},
        schools=sorted(schools.items(), key=lambda item: item[1]),
    )


def _matches(
    subject: str,
    grades: list[int],
    school_id: int,
    want_subject: str | None,
    want_grade: int | None,
    want_school: int | None,
) -> bool:
    return (
        (not want_subject or subject == want_subject)
        and (not want_grade or want_grade in grades)
        and (not want_school or school_id == want_school)
    )


def _run_row(run: SyncRun) -> RunRow:
    return RunRow(
        id=run.id,
        source=run.source,
        status=run.status,
        started_at=run.started_at.replace(tzinfo=run.started_at.tzinfo or UTC),
        finished_at=run.finished_at,
        files_done=run.files_done,
        files_total=run.files_total,
        bytes_done=run.bytes_done,
        bytes_total=run.bytes_total,
        transferred=run.bytes_transferred,
        courses=dict(run.courses or {}),
        applied=run.courses_applied,
        removed=run.courses_removed,
        message=run.message,
        wording=run.wording,
    )
