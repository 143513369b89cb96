"""School servers as their upstream sees them, and what a school server tells it about itself.

A school server reports its state upstream (``POST /api/v1/sync/status``) when
``hub sync init`` checks the link and at the end of every ``hub sync pull``; a
school without a link carries the same report in the state file of its USB
trip, which ``hub bundle export --state`` reads on the upstream. The report is
what the bureau's admins need to look after servers they cannot visit: the
manifest version the server verified and applied, how many courses it holds,
the storage it uses and has free, the name it answers to on its LAN. Who
downloaded what never leaves the school (download counts go separately, in
aggregate: hub.sync.counts).

The upstream keeps one row per school (:class:`ServerReport`) and lists every
school server with its subscriptions, its last contact (the newest of a report
and its sync token's last use), the manifest version issued to it and the one
it acknowledged, its last download-count report, and an alert when it has been
silent for more than ``HUB_SILENT_DAYS``.

Older school servers send no report: they still appear, from their sync token,
subscriptions and count reports. Older upstreams answer 404 to the report,
which the school server takes as "not supported" and goes on.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.accounts.models import ApiToken, Pairing, School, User
from hub.catalog.models import Course
from hub.db import utcnow
from hub.errors import PermissionDenied
from hub.i18n import N_
from hub.sync.models import CountReport, ManifestState, ServerReport, Subscription, SyncRun

if TYPE_CHECKING:
    from flask import Flask

    from hub.sync.client import Upstream

VIAS = ("init", "pull", "usb")

# -- school server: what it reports ----------------------------------------------------


def local_report(app: Flask) -> dict[str, Any]:
    """This school server's state, as it reports it upstream (JSON-ready)."""
    from hub.db import get_database
    from hub.media.storage.local import LocalStorage
    from hub.sync import services

    settings = app.extensions["hub.settings"]
    storage = app.extensions["hub.storage"]
    free: int | None = None
    if isinstance(storage, LocalStorage):
        storage.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(storage.root).free
    with get_database(app).session() as session:
        state = services.mirror_state(session)
        report = {
            "manifest_version": state.manifest_version,
            "applied_version": state.applied_version,
            "courses": len(services.mirrored_courses(session)),
            "storage_used": services.mirrored_bytes(session),
            "storage_free": free,
            "storage_budget": settings.sync_storage_budget,
            "host_name": settings.mdns_name,
        }
        session.commit()  # mirror_state may have made its row
    return report


def send_report(app: Flask, upstream: Upstream, via: str) -> dict[str, Any] | None:
    """Report this server's state; the upstream's answer (the school it knows this server as).

    None from an upstream older than the report (404). Other failures raise
    SyncError: `hub sync init` needs the answer; a pull calls :func:`report_quietly`.
    """
    from hub.sync.client import UpstreamRefused

    body = {**local_report(app), "via": via}
    try:
        answer = upstream.json("POST", "/api/v1/sync/status", body)
    except UpstreamRefused as exc:
        if exc.answered == 404:
            return None
        raise
    return answer if isinstance(answer, dict) else None


def report_quietly(app: Flask, upstream: Upstream, via: str) -> str:
    """:func:`send_report` for the end of a pull: never fatal; a note when it failed."""
    from hub.sync.client import SyncError

    try:
        send_report(app, upstream, via)
    except SyncError as exc:
        from hub.sync import wording
        from hub.uploads.terminal import _

        reason = wording.render(wording.from_error(exc), _)
        return _("state not reported upstream (%(reason)s); it goes with the next pull", reason=reason)
    return ""


def last_synced(session: Session) -> datetime | None:
    """When this school server last finished a pull or import that applied its manifest (ok or partial)."""
    return session.scalar(select(func.max(SyncRun.finished_at)).where(SyncRun.status.in_(("ok", "partial"))))


# -- upstream: receiving reports --------------------------------------------------------


class ServerReportIn(BaseModel):
    """What a school server says about itself. Fields a newer server adds are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")

    via: str = Field(default="pull", pattern=r"^(init|pull|usb)$", description="init, pull or usb")
    manifest_version: int = Field(default=0, ge=0, le=2**31 - 1, description="Newest manifest version verified")
    applied_version: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Manifest version whose courses are all applied"
    )
    courses: int = Field(default=0, ge=0, le=2**31 - 1, description="Courses mirrored")
    storage_used: int = Field(default=0, ge=0, le=2**62, description="Bytes the mirrored courses' blobs take")
    storage_free: int | None = Field(default=None, ge=0, le=2**62, description="Bytes free on its storage disk")
    storage_budget: int = Field(default=0, ge=0, le=2**62, description="HUB_SYNC_STORAGE_BUDGET there; 0: none")
    host_name: str = Field(default="", max_length=63, description="It answers on its LAN as http://NAME.local/")


def record_report(
    session: Session, school: School, report: ServerReportIn, *, via: str | None = None, now: datetime | None = None
) -> list[str]:
    """Keep a school server's report as its school's one row (the caller commits).

    Returns the names of the famous schools it is paired with: what `hub sync init`
    suggests subscribing to.
    """
    row = session.get(ServerReport, school.id)
    if row is None:
        row = ServerReport(school_id=school.id)
        session.add(row)
    row.reported_at = now or utcnow()
    row.via = via or report.via
    row.manifest_version = report.manifest_version
    row.applied_version = report.applied_version
    row.courses = report.courses
    row.storage_used = report.storage_used
    row.storage_free = report.storage_free
    row.storage_budget = report.storage_budget
    row.host_name = report.host_name
    session.flush()
    return list(
        session.scalars(
            select(School.name)
            .join(Pairing, Pairing.famous_school_id == School.id)
            .where(Pairing.rural_school_id == school.id)
            .order_by(School.name)
        )
    )


# -- upstream: the list -------------------------------------------------------------------


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied(N_("Only admins can see the school servers."))


@dataclass(frozen=True)
class SubscriptionInfo:
    kind: str  # course | subject | paired
    course_id: int | None
    course_title: str | None
    subject: str | None
    grade_min: int | None
    grade_max: int | None
    paired_school: str | None


@dataclass(frozen=True)
class SchoolServer:
    school: School
    subscriptions: list[SubscriptionInfo]
    last_contact: datetime | None
    manifest_issued: int | None  # the version this hub last signed for the school
    report: ServerReport | None
    last_counts_at: datetime | None
    last_counts_downloads: int | None
    alert: str  # ok | silent | never

    @property
    def silent_days(self) -> int | None:
        return None if self.last_contact is None else (utcnow() - self.last_contact).days


def list_school_servers(session: Session, silent_days: int, *, now: datetime | None = None) -> list[SchoolServer]:
    """Every school that has a school server (a sync token, a subscription or a report), by alert then name.

    Silent ones first: they are what an admin opens the page for.
    """
    now = now or utcnow()
    token_use: dict[int, datetime | None] = dict(
        session.execute(
            select(User.school_id, func.max(ApiToken.last_used_at))
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.kind == "sync", ApiToken.revoked_at.is_(None))
            .group_by(User.school_id)
        ).all()
    )
    subscriptions: dict[int, list[Subscription]] = {}
    for sub in session.scalars(select(Subscription).order_by(Subscription.id)):
        subscriptions.setdefault(sub.school_id, []).append(sub)
    reports = {row.school_id: row for row in session.scalars(select(ServerReport))}
    issued = dict(session.execute(select(ManifestState.school_id, ManifestState.version)).all())
    latest_counts: dict[int, tuple[datetime, int]] = {}
    for school_id, received_at, downloads in session.execute(
        select(CountReport.school_id, CountReport.received_at, CountReport.downloads).order_by(CountReport.received_at)
    ):
        latest_counts[school_id] = (received_at, downloads)  # the newest wins (ordered)
    ids = set(token_use) | set(subscriptions) | set(reports) | set(latest_counts)
    if not ids:
        return []
    schools = {s.id: s for s in session.scalars(select(School).where(School.id.in_(ids)))}
    titles = dict(
        session.execute(
            select(Course.id, Course.title).where(
                Course.id.in_({s.course_id for subs in subscriptions.values() for s in subs if s.course_id})
            )
        ).all()
    )
    names = {s.id: s.name for s in session.scalars(select(School))}
    limit = timedelta(days=silent_days)
    servers = []
    for school_id, school in schools.items():
        report = reports.get(school_id)
        seen = [t for t in (token_use.get(school_id), report.reported_at if report else None) if t is not None]
        last_contact = max(seen) if seen else None
        counts = latest_counts.get(school_id)
        servers.append(
            SchoolServer(
                school=school,
                subscriptions=[
                    SubscriptionInfo(
                        kind=s.kind,
                        course_id=s.course_id,
                        course_title=titles.get(s.course_id) if s.course_id else None,
                        subject=s.subject,
                        grade_min=s.grade_min,
                        grade_max=s.grade_max,
                        paired_school=names.get(s.paired_school_id) if s.paired_school_id else None,
                    )
                    for s in subscriptions.get(school_id, [])
                ],
                last_contact=last_contact,
                manifest_issued=issued.get(school_id),
                report=report,
                last_counts_at=counts[0] if counts else None,
                last_counts_downloads=counts[1] if counts else None,
                alert="never" if last_contact is None else "silent" if now - last_contact > limit else "ok",
            )
        )
    order = {"silent": 0, "never": 1, "ok": 2}
    return sorted(servers, key=lambda s: (order[s.alert], s.school.name))
