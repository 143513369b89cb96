"""Range and conditional requests for blob downloads (RFC 9110), and download counting.

The decision (`decide`) is a plain function of the request headers and the blob's
size and hash, so it is tested without Flask; the view in `hub.media.api` turns the
decision into a streamed response.

Choices where RFC 9110 leaves the server free:

- Several satisfiable ranges are answered with the whole file (200), not with
  `multipart/byteranges`: the RFC allows ignoring Range, download managers and
  players only ask for one range, and it keeps a single code path.
- A malformed Range header, or a unit other than `bytes`, is ignored (200).
- A zero-length blob is always sent whole (200): no byte range can describe it.
- Blobs are content-addressed, so the strong ETag is the sha256 and no
  Last-Modified is sent; an `If-Range` date therefore never matches (whole file).
"""

from __future__ import annotations

import logging
import mimetypes
import re
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from flask import Response
from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.datastructures import Headers

from hub.accounts.models import User
from hub.db import Database, utcnow
from hub.inputs import clamp_int
from hub.media.models import Blob, DownloadCount, Rendition

log = logging.getLogger(__name__)

MAX_RANGES = 64
"""More range-specs than this in one header is not a download client: send the file."""

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_ETAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def etag_for(sha256: str) -> str:
    """The strong entity tag of a blob: its hash, quoted."""
    return f'"{sha256}"'


@dataclass(frozen=True)
class Decision:
    """What to answer: status and, for bodies, the inclusive byte span to send.

    `start`/`end` are inclusive; a 200 of an empty blob has end == -1 (no bytes).
    `content_range` is the Content-Range value for 206 and 416, else None.
    """

    status: int
    start: int = 0
    end: int = -1
    content_range: str | None = None

    @property
    def length(self) -> int:
        return max(self.end - self.start + 1, 0) if self.status in (200, 206) else 0


def parse_range(header: str | None) -> list[tuple[int | None, int | None]] | None:
    """The range-specs of a `Range: bytes=…` header, or None when it must be ignored.

    Each spec is (first, last) with None for an open end; a suffix range `-N` is
    (None, N). Returns None for an absent or malformed header or another unit.
    """
    if header is None:
        return None
    unit, eq, rest = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    specs: list[tuple[int | None, int | None]] = []
    for element in rest.split(","):
        element = element.strip(" \t")
        if not element:
            continue  # RFC 9110 list syntax allows empty elements
        match = _RANGE_SPEC.fullmatch(element)
        if match is None:
            return None
        first_s, last_s = match.groups()
        if not first_s and not last_s:
            return None  # a lone "-"
        # Huge numerals are legal (RFC 9110 14.1.1): past 2^63-1 is past the end of any blob.
        first = clamp_int(first_s) if first_s else None
        last = clamp_int(last_s) if last_s else None
        if first is not None and last is not None and last < first:
            return None  # invalid int-range: the whole header is ignored
        specs.append((first, last))
    return specs or None


def _entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque) for each tag of an If-None-Match list; None when unparsable."""
    tags: list[tuple[bool, str]] = []
    for element in header.split(","):
        element = element.strip(" \t")
        if not element:
            continue
        match = _ETAG.fullmatch(element)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
    return tags


def none_match(if_none_match: str | None, sha256: str) -> bool:
    """True when If-None-Match names this blob (weak comparison, or `*`): answer 304."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = _entity_tags(if_none_match)
    return tags is not None and any(opaque == sha256 for _weak, opaque in tags)


def range_is_fresh(if_range: str | None, sha256: str) -> bool:
    """Whether a Range may be honoured under If-Range (absent, or the current strong ETag)."""
    if if_range is None:
        return True
    # Strong comparison: a weak tag or a date (we send no Last-Modified) never matches.
    return if_range.strip() == etag_for(sha256)


def satisfiable(specs: list[tuple[int | None, int | None]], size: int) -> list[tuple[int, int]]:
    """The satisfiable specs as inclusive (start, end) spans clamped to `size`."""
    spans: list[tuple[int, int]] = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last == 0:
                continue  # a zero-length suffix selects nothing
            spans.append((max(size - last, 0), size - 1))
        elif first < size:
            spans.append((first, size - 1 if last is None else min(last, size - 1)))
    return spans


def decide(
    *,
    size: int,
    sha256: str,
    range_header: str | None = None,
    if_range: str | None = None,
    if_none_match: str | None = None,
) -> Decision:
    """The answer to a GET or HEAD of a blob of `size` bytes named `sha256`."""
    whole = Decision(200, 0, size - 1)
    if none_match(if_none_match, sha256):
        return Decision(304)
    specs = parse_range(range_header)
    if specs is None or size == 0 or not range_is_fresh(if_range, sha256):
        return whole
    if len(specs) > MAX_RANGES:
        return whole
    spans = satisfiable(specs, size)
    if not spans:
        return Decision(416, content_range=f"bytes */{size}")
    if len(spans) > 1:
        return whole
    start, end = spans[0]
    return Decision(206, start, end, f"bytes {start}-{end}/{size}")


# -- who may keep a copy --------------------------------------------------------------

IMMUTABLE = "public, max-age=31536000, immutable"
"""A public blob: content-addressed, so the bytes behind its URL never change."""

PRIVATE = "private, no-store"
"""Anything not public (a draft's blob or ZIP): no cache keeps it, not even the browser's
(rural schools share their computers)."""

CREDENTIALS = "Authorization, Cookie"
"""What decides whether a private file is answered at all: a bearer token or a session cookie."""


def blob_cache_headers(public: bool) -> dict[str, str]:
    """Cache-Control (and Vary) of a blob that anyone may fetch (`public`) or only some may.

    A public blob's answer is the same for everyone (see `download_filename`), so it
    needs no Vary and one copy in a school's proxy serves every teacher.
    """
    if public:
        return {"Cache-Control": IMMUTABLE}
    return {"Cache-Control": PRIVATE, "Vary": CREDENTIALS}


# Sent by `hub sync pull` on every blob request: mirroring is not a download (see hub.media.api).
MIRROR_HEADER = "Hub-Mirror"


def decide_request(request_headers: Headers, *, size: int, sha256: str) -> Decision:
    """`decide` for a request's Range, If-Range and If-None-Match headers."""
    return decide(
        size=size,
        sha256=sha256,
        range_header=request_headers.get("Range"),
        if_range=request_headers.get("If-Range"),
        if_none_match=request_headers.get("If-None-Match"),
    )


def bodiless_answer(decision: Decision, headers: dict[str, str]) -> Response | None:
    """The 304 or the 416 (with `Content-Range: bytes */size`) a decision calls for, else None."""
    if decision.status == 304:
        return Response(status=304, headers=headers)
    if decision.status == 416:
        assert decision.content_range is not None
        return Response(status=416, headers={**headers, "Content-Range": decision.content_range, "Content-Length": "0"})
    return None


def counts_as_completed(decision: Decision, size: int) -> bool:
    """A body that ends at the last byte completes a download once it is fully sent.

    So a download in three ranges counts once (with the last one), and so does a
    whole-file 200; ranges that stop short of the end never count.
    """
    return decision.status == 200 or (decision.status == 206 and decision.end == size - 1)


# -- file names ----------------------------------------------------------------------

_MAX_NAME = 150


def _extension(blob: Blob, filename: str) -> str:
    suffix = PurePosixPath(filename).suffix if filename else ""
    if suffix and len(suffix) <= 8:
        return suffix.lower()
    guessed = mimetypes.guess_extension(blob.media_type) or ""
    return "" if guessed == ".bin" else guessed


def download_filename(session: Session, actor: User | None, blob: Blob, hint: str | None) -> str:
    """The name offered in Content-Disposition: the `?name=` hint, else title + extension.

    Only materials the actor may see lend their title. The caller passes the result to
    `content_disposition`, which strips directories and control characters.
    """
    from hub.catalog.models import Course, Lesson, Material
    from hub.catalog.services import visible_clause

    row = session.execute(
        select(Material.title, Material.filename, Material.original_sha256, Rendition.profile)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .outerjoin(Rendition, (Rendition.material_id == Material.id) & (Rendition.blob_sha256 == blob.sha256))
        .where(
            or_(Material.original_sha256 == blob.sha256, Rendition.blob_sha256 == blob.sha256),
            visible_clause(actor),
        )
        .order_by(Material.id)
        .limit(1)
    ).first()
    if row is None:
        title, filename, is_original, profile = "", "", True, None
    else:
        title, filename = row.title, row.filename
        is_original = row.original_sha256 == blob.sha256
        profile = None if is_original else row.profile
    ext = _extension(blob, filename if is_original else "")
    hint = (hint or "").strip()
    if hint:
        name = hint[:_MAX_NAME]
        return name if PurePosixPath(name.replace("\\", "/")).suffix else name + ext
    stem = (title or PurePosixPath(filename).stem or blob.sha256[:12]).strip()[:_MAX_NAME]
    if profile:
        stem = f"{stem} ({profile})"
    return stem + ext


# -- counting ----------------------------------------------------------------------


def record_download(database: Database, sha256: str, school_id: int | None, day: date | None = None) -> None:
    """Add one completed download of `sha256` today (UTC), in its own short transaction.

    UPDATE first, INSERT when there is no row yet. Two racing first downloads of the
    same (blob, day, school) make the loser's INSERT fail on the unique constraint and
    it retries the UPDATE. For anonymous downloads (school NULL) the constraint cannot
    catch the race (NULLs are distinct), so a second row may appear; `download_counts`
    sums rows, so the totals stay right.
    """
    day = day or utcnow().date()
    school_clause = DownloadCount.school_id.is_(None) if school_id is None else DownloadCount.school_id == school_id
    bump = (
        update(DownloadCount)
        .where(DownloadCount.blob_sha256 == sha256, DownloadCount.day == day, school_clause)
        .values(count=DownloadCount.count + 1)
        .execution_options(synchronize_session=False)
    )
    with database.session() as session:
        bumped: CursorResult[Any] = session.execute(bump)  # type: ignore[assignment]
        if bumped.rowcount:
            session.commit()
            return
        session.add(DownloadCount(blob_sha256=sha256, day=day, school_id=school_id, count=1))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            session.execute(bump)
            session.commit()


def safe_record_download(database: Database, sha256: str, school_id: int | None) -> None:
    """record_download that never breaks a download: a failure is logged, not raised."""
    try:
        record_download(database, sha256, school_id)
    except Exception:
        log.exception("could not count a download of %s", sha256)


@dataclass(frozen=True)
class DownloadTally:
    sha256: str
    day: date
    school_id: int | None
    count: int


def download_counts(session: Session, since: date) -> list[DownloadTally]:
    """Completed downloads per (blob, day, school) from `since` (inclusive), for reach statistics."""
    total = func.sum(DownloadCount.count)
    rows = session.execute(
        select(DownloadCount.blob_sha256, DownloadCount.day, DownloadCount.school_id, total)
        .where(DownloadCount.day >= since)
        .group_by(DownloadCount.blob_sha256, DownloadCount.day, DownloadCount.school_id)
        .order_by(DownloadCount.day, DownloadCount.blob_sha256, DownloadCount.school_id)
    ).all()
    return [DownloadTally(sha, day, school, int(count)) for sha, day, school, count in rows]
