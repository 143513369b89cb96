"""Download pages: the data-saver preference and whole-course ZIPs (HTML side, no /api)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, request
from werkzeug.wrappers import Request

from hub.accounts.auth import current_user
from hub.catalog.services import course_is_public
from hub.db import Database, get_database, request_session
from hub.errors import Busy, PermissionDenied
from hub.i18n import N_
from hub.inputs import safe_next
from hub.media import downloads
from hub.media.course_download import CourseDownload, plan_course_download
from hub.media.reasons import localized_error
from hub.media.storage import Storage, content_disposition
from hub.media.zipstore import ZipWindow
from hub.reach import services as reach
from hub.web import csrf

blueprint = Blueprint("media", __name__)
# `{{ error|media_error }}`: a processing failure's stored English reason in the reader's
# language (hub.media.reasons), on the uploader's and the public lesson pages alike.
blueprint.add_app_template_filter(localized_error, "media_error")

DATA_SAVER_COOKIE = "data_saver"
_COOKIE_MAX_AGE = 2 * 365 * 24 * 3600  # a preference, not a session: keep it for years


def data_saver_on() -> bool:
    """The browser's data-saver preference (a cookie: no account needed)."""
    return data_saver_of(request)


def data_saver_of(request: Request) -> bool:
    """The data-saver preference ``request`` carries (also part of hub.pagecache's key)."""
    # On unless this browser turned it off: most teachers pay for every megabyte.
    return request.cookies.get(DATA_SAVER_COOKIE) != "0"


def default_quality() -> str:
    """What a course ZIP carries unless `?quality=` says: the smallest files with data saver on."""
    return "smallest" if data_saver_on() else "best"


@blueprint.app_context_processor
def _preferences() -> dict[str, object]:
    return {"data_saver": data_saver_on()}


def same_origin() -> bool:
    """Whether a POST comes from this site's own pages (or from no page at all: a form or a script of its own)."""
    # Browsers send Origin on every cross-site POST (and Sec-Fetch-Site where they
    # know it); a form of this site posts with our own host or with neither header.
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    return origin is None or origin == "null" or urlsplit(origin).netloc == request.host


# Exempt from the CSRF token on purpose: a token would put a session cookie on every
# anonymous lesson page, which then could not be cached. The only effect of this POST
# is one display preference of this browser, and a same-origin check refuses
# cross-site posts.
@blueprint.post("/preferences/data-saver")
def set_data_saver() -> Response:
    if not same_origin():
        raise PermissionDenied(N_("The data-saver switch only works from this site's pages."))
    on = request.form.get("data_saver") == "1"
    response = redirect(safe_next(request.form.get("next")), code=303)
    response.set_cookie(DATA_SAVER_COOKIE, "1" if on else "0", max_age=_COOKIE_MAX_AGE, samesite="Lax", httponly=True)
    return response  # type: ignore[return-value]


csrf.exempt(set_data_saver)


@blueprint.get("/courses/<int:course_id>/download")
def course_download(course_id: int) -> Response:
    """The course as one ZIP, with Range, If-Range and If-None-Match over its manifest's hash."""
    storage: Storage = current_app.extensions["hub.storage"]
    actor = current_user()
    plan = plan_course_download(
        request_session(), actor, storage, course_id, request.args.get("quality") or default_quality()
    )
    decision = downloads.decide_request(request.headers, size=plan.size, sha256=plan.etag)
    if course_is_public(request_session(), course_id):
        # Same URL, new bytes when the course changes: revalidate (cheap, 304) every time.
        # The default quality follows the data-saver cookie, the offline page's language the
        # language cookie or Accept-Language.
        cache = {"Cache-Control": "public, no-cache", "Vary": "Cookie, Accept-Language"}
    else:
        cache = {"Cache-Control": downloads.PRIVATE, "Vary": downloads.CREDENTIALS}
    base_headers = {"ETag": downloads.etag_for(plan.etag), **cache, "Accept-Ranges": "bytes"}
    if (bodiless := downloads.bodiless_answer(decision, base_headers)) is not None:
        return bodiless
    response_headers = {
        **base_headers,
        "Content-Disposition": content_disposition(plan.filename),
        "Content-Length": str(decision.length),
    }
    if decision.content_range is not None:
        response_headers["Content-Range"] = decision.content_range
    body: Iterable[bytes] = ()
    if request.method != "HEAD" and decision.length:
        school_id = actor.school_id if actor is not None else None
        completes = downloads.counts_as_completed(decision, plan.size)
        database = get_database()
        counting = reach.Counting.for_app(current_app, school_id)
        course_id = plan.course.id
        file_wrapper = request.environ.get("wsgi.file_wrapper")
        # local_path raises BlobNotFound for a missing blob now, before the response starts.
        local = all(storage.local_path(sha256) is not None for sha256 in plan.media_sha256s)
        if file_wrapper is not None and local:
            # Sent by the server's I/O loop (waitress), not a worker thread held for the
            # hour a course takes at 256 kbit/s (benchmarks/downloads).
            sha256s = plan.media_sha256s
            on_done = None
            if completes:
                on_done = lambda: _count_in_background(database, counting, sha256s, course_id, school_id)  # noqa: E731
            window = ZipWindow(plan.layout, decision.start, decision.end + 1, on_done)
            body = file_wrapper(window, 65536)
        else:
            # S3: each entry is one ranged GET, streamed by this thread, which it holds for
            # the hour a course takes at 256 kbit/s. Only a few at once, then: the rest are
            # asked to come back instead of taking every thread from page views
            # (benchmarks/downloads: 8 slow S3 ZIPs left no thread for any page).
            slots = _stream_slots()
            if not slots.acquire(blocking=False):
                raise Busy(N_("Too many course downloads are being sent right now; please try again in a minute."))
            chunks = _stream(plan, decision.start, decision.end, database, counting, course_id, school_id, completes)
            body = _HoldingSlot(chunks, slots.release)
    return Response(
        body, status=decision.status, headers=response_headers, mimetype="application/zip", direct_passthrough=True
    )


def _stream_slots() -> threading.BoundedSemaphore:
    slots = current_app.extensions.get("hub.zip_stream_slots")
    if slots is None:
        limit = current_app.extensions["hub.settings"].streamed_downloads
        slots = current_app.extensions.setdefault("hub.zip_stream_slots", threading.BoundedSemaphore(limit))
    return slots  # type: ignore[no-any-return]


class _HoldingSlot:
    """A streamed body that gives its slot back when the server closes it: sent, or the client left."""

    def __init__(self, chunks: Generator[bytes, None, None], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


def _stream(
    plan: CourseDownload,
    start: int,
    end: int,
    database: Database,
    counting: reach.Counting,
    course_id: int,
    school_id: int | None,
    completes: bool,
) -> Generator[bytes, None, None]:
    yield from plan.layout.iter_bytes(start, end)
    # Reached only once the server asks for more after the last chunk (see
    # hub.media.api._stream).
    if completes:
        _count(database, counting, plan.media_sha256s, course_id, school_id)


def _count(
    database: Database, counting: reach.Counting, sha256s: list[str], course_id: int, school_id: int | None
) -> None:
    # A completed course ZIP counts one download of every media file in it per blob, as
    # if each had been fetched alone (the per-blob counts school servers report: a
    # teacher who took the course offline did get each lesson), and one ZIP of the
    # course in the reach counts (hub.reach), which keep ZIPs apart from lessons'
    # downloads. index.html, manifest.json and SHA256SUMS are not blobs and do not count.
    for sha256 in dict.fromkeys(sha256s):
        downloads.safe_record_download(database, sha256, school_id)
    reach.safely("course ZIP", reach.record_zip, counting, course_id)


def _count_in_background(
    database: Database, counting: reach.Counting, sha256s: list[str], course_id: int, school_id: int | None
) -> None:
    # Called from the server's I/O loop: the database writes go to their own thread.
    threading.Thread(target=_count, args=(database, counting, sha256s, course_id, school_id), daemon=True).start()
