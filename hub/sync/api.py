"""Upstream sync endpoints under /api/v1/sync/, for school servers.

A school server authenticates with a sync token of one of its school's users
(``hub token create EMAIL --kind sync``); everything it gets is for that school.
A user's own token still reads what that user may see; what a school server
writes (download counts, subscriptions) takes a sync token (hub.accounts.auth).

Single blobs come from the blob endpoint (``/api/v1/blobs/<sha256>``, with
Range); ``POST /sync/blobs`` sends many small ones in one response, so a
lesson's poster and slides do not cost a round trip each. Nothing here accepts
courses from a school server: the only thing a school server sends up is
aggregated download counts.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from flask import Blueprint, Response, current_app, request
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.exc import IntegrityError

from hub.accounts.auth import require_sync_client, require_user
from hub.api import PREFIX, Strict, no_content, operation, parse_query
from hub.config import Settings
from hub.db import request_session
from hub.errors import HubError, Invalid, Text
from hub.i18n import N_
from hub.inputs import Cursor, Id
from hub.media.storage import Storage
from hub.sync import catalog, counts, servers, services
from hub.sync import manifest as mf
from hub.sync.models import Subscription

blueprint = Blueprint("sync_api", __name__, url_prefix=PREFIX)

BATCH_MAX_BLOBS = 512
BATCH_MAX_BYTES = 64 * 1024 * 1024
"""One batch response at most: a dropped link costs at most this much again."""


class NoSigningKey(HubError):
    status = 503
    code = "no_signing_key"


class FeedQuery(BaseModel):
    since: Cursor = Field(default=0, description="Last seq seen; 0 for the whole feed")
    limit: int = Field(default=services.FEED_PAGE, ge=1, le=services.FEED_PAGE)


class ChangeOut(BaseModel):
    seq: int
    course: int
    action: str
    version: int
    at: datetime


class FeedOut(BaseModel):
    changes: list[ChangeOut]
    cursor: int
    more: bool
    pending: int = Field(description="Changes after `since` in all: ask with limit=1 to learn only how many")


class SubscriptionIn(Strict):
    course: Id | None = None
    subject: str | None = None
    grades: Annotated[str, Field(pattern=r"^[1-9](-[1-9])?$", description="A-B, e.g. 3-6")] | None = None
    paired_with: str | None = Field(default=None, description="Name (or id) of the paired famous school")
    textbook: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="Key of a textbook: every course that follows it or has lessons on its chapters"
    )


class SubscriptionOut(BaseModel):
    id: int
    kind: str
    course: int | None
    subject: str | None
    grades: str | None
    paired_with: int | None
    textbook: str | None = None
    description: str


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class CountsOut(BaseModel):
    added: int = Field(description="Downloads counted")
    ignored: int = Field(
        description="Downloads not counted: blobs the school's subscriptions do not select (or no blob at all), "
        "days out of range, or past the daily bound. Never said per row."
    )
    usage_added: int = Field(0, description="Plays, downloads and course ZIPs per lesson counted")
    usage_ignored: int = Field(
        0,
        description="Plays, downloads and course ZIPs per lesson not counted (another school's course, "
        "a lesson or material not in it, days out of range, past the daily bound), or already counted",
    )


class CoursesIn(Strict):
    courses: list[Id] = Field(min_length=1, max_length=services.MAX_ENTRIES)
    since: AwareDatetime | None = Field(
        default=None,
        description="issued_at of the manifest whose entries the school server holds: only the lessons "
        "changed since are sent",
    )


class BlobBatchIn(Strict):
    sha256: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(min_length=1, max_length=BATCH_MAX_BLOBS)


def parse_grades(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _subscription_out(sub: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=sub.id,
        kind=sub.kind,
        course=sub.course_id,
        subject=sub.subject,
        grades=f"{sub.grade_min}-{sub.grade_max}" if sub.kind == "subject" else None,
        paired_with=sub.paired_school_id,
        textbook=sub.textbook_key,
        description=services.describe_subscription(sub, request_session()),
    )


@operation(
    blueprint, "/sync/feed", "GET", summary="Published catalog changes after a cursor", response=FeedOut, auth=True
)
def get_feed() -> FeedOut:
    require_user()
    query = parse_query(FeedQuery)
    page = services.feed(request_session(), query.since, query.limit)
    return FeedOut(
        changes=[
            ChangeOut(seq=c.seq, course=c.course_id, action=c.action, version=c.version, at=c.created_at)
            for c in page.changes
        ],
        cursor=page.cursor,
        more=page.more,
        pending=services.pending_changes(request_session(), query.since),
    )


@operation(
    blueprint,
    "/sync/subscriptions",
    "GET",
    summary="The caller's school's subscriptions",
    response=SubscriptionList,
    auth=True,
)
def list_subscriptions() -> SubscriptionList:
    user = require_user()
    subs = services.list_subscriptions(request_session(), user.school_id)
    return SubscriptionList(items=[_subscription_out(s) for s in subs])


@operation(
    blueprint,
    "/sync/subscriptions",
    "POST",
    summary="Subscribe the caller's school to a course, a subject over grades, its paired school or a textbook",
    body=SubscriptionIn,
    response=SubscriptionOut,
    status=201,
    auth=True,
)
def create_subscription(body: SubscriptionIn) -> SubscriptionOut:
    user = require_sync_client()
    session = request_session()
    if body.grades is not None and body.subject is None:
        raise Invalid(N_("Grades go with a subject."), {"grades": N_("needs subject")})
    sub = services.subscribe(
        session,
        user.school,
        course_id=body.course,
        subject=body.subject,
        grades=parse_grades(body.grades),
        paired_with=body.paired_with,
        textbook=body.textbook,
    )
    session.commit()
    return _subscription_out(sub)


@operation(blueprint, "/sync/subscriptions/<int:subscription_id>", "DELETE", summary="Unsubscribe", auth=True)
def delete_subscription(subscription_id: int) -> Response:
    user = require_sync_client()
    session = request_session()
    services.unsubscribe(session, user.school_id, subscription_id)
    session.commit()
    return no_content()


@operation(
    blueprint,
    "/sync/catalog",
    "GET",
    summary="The published catalog as the caller's school server would mirror it: sizes, subscriptions, pairings",
    response=catalog.CatalogOut,
    auth=True,
)
def get_catalog() -> catalog.CatalogOut:
    user = require_user()
    settings: Settings = current_app.extensions["hub.settings"]
    # Built like the entries this school server fetches (`?with=` extras included), so a size is what it pulls.
    offered = catalog.offer(request_session(), user.school, _profiles(settings))
    return catalog.CatalogOut.model_validate(offered)


@operation(blueprint, "/sync/manifest", "GET", summary="The signed manifest of the caller's subscriptions", auth=True)
def get_manifest() -> Response:
    user = require_user()
    settings: Settings = current_app.extensions["hub.settings"]
    try:
        key = mf.load_private_key(settings.sync_signing_key)
    except HubError as exc:
        raise NoSigningKey(
            N_("This hub cannot sign manifests yet: %(reason)s"), reason=Text(exc.template, **exc.params)
        ) from None
    session = request_session()
    envelope = services.issue_manifest(
        session,
        user.school,
        private_key=key,
        lifetime=settings.sync_manifest_lifetime,
        profiles=_profiles(settings),
    )
    session.commit()
    version = mf.unverified_version(envelope)
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding", "ETag": mf.manifest_etag(version)}
    if mf.manifest_etag(version) in request.headers.get("If-None-Match", ""):
        # The school holds this version already: it keeps its copy (whose signature it checked).
        return Response(status=304, headers=headers)
    return _maybe_gzip(envelope, "application/octet-stream", headers)


def _profiles(settings: Settings) -> tuple[str, ...]:
    """What the entries are built for: this hub's video preference, and the extras the school server reads.

    ``?with=subtitles,chapters`` comes from school servers that read subtitle tracks and
    chapters; older ones never send it and get entries without them (hub.sync.manifest.EXTRAS). A query
    parameter, not a body field: an older upstream ignores it, where it would refuse an
    unknown field in the JSON body.
    """
    extras = {part.strip() for part in request.args.get("with", "").split(",")}
    profiles = services.video_profiles(settings.sync_video_profiles)
    return (*profiles, *(extra for extra in mf.EXTRAS if extra in extras))


def _maybe_gzip(body: bytes, mimetype: str, headers: dict[str, str]) -> Response:
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        # JSON of hashes and titles shrinks 4-5x: on an incremental sync it would otherwise
        # outweigh the blobs that changed. Level 1 above a few MB keeps the entries of a
        # 100,000-lesson catalog to well under a second of compression.
        body = gzip.compress(body, compresslevel=6 if len(body) < 4 * 1024 * 1024 else 1, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return Response(body, mimetype=mimetype, headers=headers)


@operation(
    blueprint,
    "/sync/courses",
    "POST",
    summary="Course entries the signed manifest lists by sha256: one JSON line each, whole or as a patch since",
    body=CoursesIn,
    auth=True,
)
def post_courses(body: CoursesIn) -> Response:
    user = require_user()
    settings: Settings = current_app.extensions["hub.settings"]
    lines = services.course_entries(
        request_session(),
        user.school,
        body.courses,
        since=body.since,
        profiles=_profiles(settings),
    )
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    return _maybe_gzip(b"".join(line + b"\n" for line in lines), "application/x-ndjson", headers)


@operation(
    blueprint,
    "/sync/counts",
    "POST",
    summary="Aggregated download and usage counts from a school server (resending a report adds nothing)",
    body=counts.CountReportIn,
    response=CountsOut,
    auth=True,
)
def post_counts(body: counts.CountReportIn) -> CountsOut:
    user = require_sync_client()
    settings: Settings = current_app.extensions["hub.settings"]
    limits = counts.CountLimits.from_settings(settings)
    # Commits batch by batch itself: a big report never holds the write lock for long.
    received = counts.receive_counts(request_session(), user.school, body, limits)
    return CountsOut(
        added=received.added,
        ignored=received.ignored,
        usage_added=received.usage_added,
        usage_ignored=received.usage_ignored,
    )


@operation(
    blueprint,
    "/sync/blobs",
    "POST",
    summary="Many small blobs in one response: for each, a line '<sha256> <size>' then its bytes",
    body=BlobBatchIn,
    auth=True,
)
def post_blob_batch(body: BlobBatchIn) -> Response:
    actor = require_user()
    session = request_session()
    storage: Storage = current_app.extensions["hub.storage"]
    blobs = services.readable_blobs(session, actor, body.sha256)
    total = sum(b.size for b in blobs)
    if total > BATCH_MAX_BYTES:
        raise Invalid(
            N_("Ask for at most %(most)d bytes per batch; these are %(total)d."), most=BATCH_MAX_BYTES, total=total
        )
    sizes = [(b.sha256, b.size) for b in blobs]
    # Opened now, so a blob missing from storage fails the request before it starts.
    parts = [storage.open_range(sha, 0, None) for sha, _size in sizes]
    length = sum(len(f"{sha} {size}\n") + size for sha, size in sizes)

    def stream() -> Iterator[bytes]:
        for (sha, size), chunks in zip(sizes, parts, strict=True):
            yield f"{sha} {size}\n".encode()
            yield from chunks

    return Response(
        stream(),
        mimetype="application/octet-stream",
        headers={"Content-Length": str(length), "Cache-Control": "no-store"},
        direct_passthrough=True,
    )


class SchoolIdentity(BaseModel):
    id: int
    name: str
    kind: str
    region: str
    county: str


class StatusAck(BaseModel):
    school: SchoolIdentity = Field(description="The school this server's sync token belongs to")
    paired_with: list[str] = Field(description="Names of the famous schools it is paired with (--paired-with)")


@operation(
    blueprint,
    "/sync/status",
    "POST",
    summary="A school server reports its state (manifest version, storage, LAN name); answers its school",
    body=servers.ServerReportIn,
    response=StatusAck,
    auth=True,
)
def post_status(body: servers.ServerReportIn) -> StatusAck:
    user = require_sync_client()
    session = request_session()
    try:
        paired = servers.record_report(session, user.school, body)
        session.commit()
    except IntegrityError:
        # `hub sync init` and a pull of the same server made the school's first row at once: update it.
        session.rollback()
        paired = servers.record_report(session, user.school, body)
        session.commit()
    school = user.school
    return StatusAck(
        school=SchoolIdentity(
            id=school.id, name=school.name, kind=school.kind, region=school.region, county=school.county
        ),
        paired_with=paired,
    )
