"""``GET /api/v1/sync/servers``: the school servers that mirror this hub, for its admins.

Its own blueprint, not the sync API's: that one accepts school servers' sync
tokens, and a school server has no business reading the list of the others.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app
from pydantic import BaseModel, Field

from hub.accounts.auth import require_user
from hub.api import PREFIX, operation
from hub.db import request_session
from hub.sync import servers
from hub.sync.api import SchoolIdentity

blueprint = Blueprint("servers_api", __name__, url_prefix=PREFIX)


class SubscriptionBrief(BaseModel):
    kind: str = Field(description="course, subject or paired")
    course: int | None
    course_title: str | None
    subject: str | None
    grades: str | None = Field(description="A-B for a subject subscription")
    paired_with: str | None = Field(description="The famous school's name for a paired subscription")


class CountsReportOut(BaseModel):
    at: datetime
    downloads: int


class ServerOut(BaseModel):
    school: SchoolIdentity
    subscriptions: list[SubscriptionBrief]
    last_contact: datetime | None = Field(description="Its last report or use of its sync token")
    alert: str = Field(description="ok, silent (no contact for more than silent_days) or never (no contact yet)")
    manifest_issued: int | None = Field(description="The manifest version this hub last signed for the school")
    manifest_acknowledged: int | None = Field(description="The newest manifest version the server reported verified")
    manifest_applied: int | None = Field(description="The manifest version whose courses it reported all applied")
    courses: int | None
    storage_used: int | None = Field(description="Bytes its mirrored courses take, as it reported")
    storage_free: int | None = Field(description="Bytes free on its storage disk, as it reported")
    storage_budget: int | None
    host_name: str | None = Field(description="NAME of http://NAME.local/ on its LAN")
    reported_at: datetime | None
    reported_via: str | None = Field(description="init, pull or usb (a state file carried on a USB drive)")
    last_counts_report: CountsReportOut | None


class ServerList(BaseModel):
    items: list[ServerOut]
    silent_days: int = Field(description="HUB_SILENT_DAYS")


def _out(server: servers.SchoolServer) -> ServerOut:
    school, report = server.school, server.report
    return ServerOut(
        school=SchoolIdentity(
            id=school.id, name=school.name, kind=school.kind, region=school.region, county=school.county
        ),
        subscriptions=[
            SubscriptionBrief(
                kind=sub.kind,
                course=sub.course_id,
                course_title=sub.course_title,
                subject=sub.subject,
                grades=f"{sub.grade_min}-{sub.grade_max}" if sub.kind == "subject" else None,
                paired_with=sub.paired_school,
            )
            for sub in server.subscriptions
        ],
        last_contact=server.last_contact,
        alert=server.alert,
        manifest_issued=server.manifest_issued,
        manifest_acknowledged=report.manifest_version if report else None,
        manifest_applied=report.applied_version if report else None,
        courses=report.courses if report else None,
        storage_used=report.storage_used if report else None,
        storage_free=report.storage_free if report else None,
        storage_budget=report.storage_budget if report else None,
        host_name=report.host_name or None if report else None,
        reported_at=report.reported_at if report else None,
        reported_via=report.via if report else None,
        last_counts_report=(
            CountsReportOut(at=server.last_counts_at, downloads=server.last_counts_downloads or 0)
            if server.last_counts_at
            else None
        ),
    )


@operation(
    blueprint,
    "/sync/servers",
    "GET",
    summary="The school servers that mirror this hub: contact, manifest versions, storage, alerts (admins)",
    response=ServerList,
    auth=True,
)
def list_servers() -> ServerList:
    servers.require_admin(require_user())
    days = current_app.extensions["hub.settings"].silent_days
    found = servers.list_school_servers(request_session(), days)
    return ServerList(items=[_out(s) for s in found], silent_days=days)
