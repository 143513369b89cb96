"""Resumable upload use cases, shared by the tus API, the pages, the CLI's server side and workers.

Rules kept here and nowhere else:

- only uploaders and admins create uploads; an upload is its owner's and the
  admins': anyone else, a colleague of the same school included, gets NotFound (not
  403), the answer for a URL that names nothing, so a leaked upload URL confirms
  nothing to those who may not use it;
- an upload fits the quotas when it is created (unfinished uploads per user, bytes
  they declare per school) and, when it is created and at every PATCH, the disks it
  writes to keep their reserve free (507 before a disk fills, not a failed write);
- the offset a client is told is what storage holds, never a remembered number;
- one writer per upload at a time (:func:`upload_lock`);
- a PATCH is checked (declared length, checksum, declared type) before its bytes
  count; a rejected PATCH leaves the upload exactly as it was before it;
- a client may declare the whole file's sha256 at creation (Upload-Metadata ``sha256``):
  the bytes are then checked against it when the last one arrives, before any blob
  exists, and an upload whose bytes hash otherwise is discarded whole (422, then 410).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.exceptions import ClientDisconnected

from hub import jobs
from hub.accounts.models import School, User
from hub.api import PREFIX
from hub.catalog import services as catalog
from hub.catalog.models import Material
from hub.db import Database, utcnow
from hub.errors import Conflict, HubError, Invalid, NotFound, PermissionDenied, Unauthorized
from hub.i18n import N_, filesize
from hub.locks import LockBusy, file_lock
from hub.media import services as media_services
from hub.media.ffmpeg import sniff_bytes
from hub.media.models import Blob
from hub.media.storage import Storage, StoredBlob
from hub.media.storage.base import CHUNK_SIZE
from hub.search import changes as search_changes
from hub.uploads import Uploads
from hub.uploads.models import Upload
from hub.uploads.storage import (
    UPLOAD_ID,
    Chunk,
    DigestMismatch,
    PartialLost,
    PartialUpload,
    Sha256State,
    part_size_for,
)

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
CHECKSUM_ALGORITHMS = ("sha1", "sha256")

# How long a PATCH waits for another one on the same upload before answering 423.
# Long enough for a PATCH of a few hundred MB to reach disk; a connection that
# died mid-body is noticed by the WSGI server (which buffers bodies) long before.
LOCK_WAIT_SECONDS = 20.0
# Expired uploads keep a row (so their URL answers 410, not 404) this long.
TOMBSTONE_DAYS = 30
# First bytes checked against the declared type: what hub.media.ffmpeg.sniff_bytes reads.
HEAD_BYTES = 4096
MAX_METADATA_CHARS = 4096

# Declared types we can do something with, and the material kind each one claims.
_DECLARED_KINDS = {"video": "video", "audio": "audio", "image": "image"}
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_METADATA_KEY = re.compile(r"[!-+\--~]{1,100}")  # printable ASCII except "," (the pair separator)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Put in backend_state of an upload discarded because its bytes did not match its declared
# sha256: its bytes are gone, and its tombstone (status "expired") says why.
_REJECTED = "rejected"
_UPLOAD_PATH = re.compile(rf"{re.escape(PREFIX)}/uploads/([A-Za-z0-9_-]{{32}})/?")


# ---------------------------------------------------------------------------
# Errors with tus status codes.


class TusError(HubError):
    """A HubError that may carry response headers the protocol asks for."""

    def __init__(self, message: str, headers: dict[str, str] | None = None, **params: object) -> None:
        super().__init__(message, None, **params)
        self.headers = headers or {}


class BadUploadRequest(TusError):
    status = 400
    code = "bad_request"


class ContentMismatch(TusError):
    status = 400
    code = "content_mismatch"


class UploadFinished(TusError):
    status = 403
    code = "upload_complete"


class TooManyUploads(TusError):
    # A quota, not a rate: retrying the same request changes nothing until the user
    # finishes or cancels an upload, and tus clients give up on a 403 and show its body.
    status = 403
    code = "quota_exceeded"


class OffsetMismatch(TusError):
    status = 409
    code = "offset_mismatch"


class UploadGone(TusError):
    status = 410
    code = "gone"


class UnsupportedVersion(TusError):
    status = 412
    code = "unsupported_version"


class UploadTooLarge(TusError):
    status = 413
    code = "too_large"


class SchoolQuotaExceeded(TusError):
    status = 413
    code = "quota_exceeded"


class WrongContentType(TusError):
    status = 415
    code = "unsupported_media_type"


class UploadLocked(TusError):
    status = 423
    code = "locked"


class ChecksumMismatch(TusError):
    status = 460
    code = "checksum_mismatch"


class Sha256Mismatch(TusError):
    # Not 460: tus clients answer 460 by sending the chunk again, and no chunk resent can
    # help here (the damage may be in any earlier PATCH, or the file changed on the
    # client's disk); the upload is discarded. 422: the request was well-formed, the
    # file it completed cannot be taken.
    status = 422
    code = "sha256_mismatch"


class InsufficientStorage(TusError):
    status = 507
    code = "insufficient_storage"


# ---------------------------------------------------------------------------
# Parsing what clients send.


@dataclass(frozen=True)
class UploadMetadata:
    pairs: dict[str, str] = field(default_factory=dict)  # key → base64 value, as received
    filename: str = "upload"
    filetype: str = ""
    sha256: str | None = None
    """The whole file's SHA-256 (lowercase hex) the client declared, checked when the last byte arrives."""

    def header(self) -> str:
        return ",".join(f"{key} {value}".rstrip() for key, value in self.pairs.items())


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_metadata(header: str) -> UploadMetadata:
    """Upload-Metadata: comma-separated ``key base64value`` pairs (tus 1.0, creation)."""
    if len(header) > MAX_METADATA_CHARS:
        raise BadUploadRequest(N_("Upload-Metadata is longer than %(limit)s characters."), limit=MAX_METADATA_CHARS)
    pairs: dict[str, str] = {}
    for item in header.split(","):
        item = item.strip(" ")
        if not item:
            if header.strip():
                raise BadUploadRequest(N_("Upload-Metadata has an empty pair."))
            continue
        key, _, value = item.partition(" ")
        if not _METADATA_KEY.fullmatch(key) or " " in value:
            raise BadUploadRequest(N_("Upload-Metadata keys are printable ASCII without spaces or commas."))
        if key in pairs:
            raise BadUploadRequest(N_("Upload-Metadata names %(key)r twice."), key=key)
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadUploadRequest(N_("Upload-Metadata value of %(key)r is not base64."), key=key) from None
        pairs[key] = value
    filename = _decoded(pairs, "filename") if "filename" in pairs else "upload"
    filetype = _decoded(pairs, "filetype").lower() if "filetype" in pairs else ""
    sha256 = _checked_sha256(_decoded(pairs, "sha256")) if "sha256" in pairs else None
    return UploadMetadata(
        pairs=pairs, filename=_checked_filename(filename), filetype=_checked_filetype(filetype), sha256=sha256
    )


def _checked_sha256(value: str) -> str:
    digest = value.strip().lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise BadUploadRequest(N_("Upload-Metadata sha256 must be the file's SHA-256 as 64 hexadecimal digits."))
    return digest


def declared_sha256(upload: Upload) -> str | None:
    """The sha256 the client declared at creation (checked there), or None."""
    encoded = (upload.upload_metadata or {}).get("sha256")
    if not encoded:
        return None
    return base64.b64decode(encoded).decode("utf-8").strip().lower()


def _decoded(pairs: dict[str, str], key: str) -> str:
    try:
        return base64.b64decode(pairs[key], validate=True).decode("utf-8")
    except UnicodeDecodeError:
        raise BadUploadRequest(N_("Upload-Metadata %(key)s is not UTF-8 text."), key=key) from None


def _checked_filename(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    if not name.strip() or name.strip() in (".", ".."):
        raise BadUploadRequest(N_("The file name is empty."))
    if "/" in name or "\\" in name:
        raise BadUploadRequest(N_("The file name must not contain / or \\ (send the name without its folders)."))
    # Control and format characters (CR/LF, NUL, bidi overrides) split headers and
    # disguise names; no real file name needs them.
    if any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise BadUploadRequest(N_("The file name contains control characters."))
    if len(name) > 255:
        raise BadUploadRequest(N_("The file name is longer than 255 characters."))
    return name


def _checked_filetype(filetype: str) -> str:
    if not filetype or filetype == "application/octet-stream":
        return filetype
    if not _MEDIA_TYPE.fullmatch(filetype):
        raise BadUploadRequest(
            N_("Upload-Metadata filetype %(type)r is not a media type like video/mp4."), type=filetype[:100]
        )
    if _declared_kind(filetype) is None:
        raise BadUploadRequest(
            N_("%(type)s files cannot become lesson materials: upload video, audio, images or PDF documents."),
            type=filetype,
        )
    return filetype


def _declared_kind(filetype: str) -> str | None:
    if filetype == "application/pdf":
        return "document"
    return _DECLARED_KINDS.get(filetype.split("/")[0])


def parse_checksum(header: str | None) -> Checksum | None:
    """Upload-Checksum: ``<algorithm> <base64 digest>`` of this request's body (tus checksum)."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        # The protocol's answer to an algorithm the server does not support.
        raise BadUploadRequest(
            N_("Upload-Checksum algorithm must be one of %(names)s."), names=", ".join(CHECKSUM_ALGORITHMS)
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadUploadRequest(N_("Upload-Checksum digest is not base64.")) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise BadUploadRequest(N_("Upload-Checksum digest is not a %(name)s digest."), name=algorithm)
    return Checksum(algorithm, digest)


def upload_url(uploads: Uploads, upload_id: str) -> str:
    """The upload's URL, from configuration only: a forged Host header cannot redirect clients."""
    return f"{uploads.settings.public_url}{PREFIX}/uploads/{upload_id}"


def parse_upload_ref(uploads: Uploads, ref: str) -> str:
    """The upload id in an upload URL given back to us (absolute or host-relative)."""
    parts = urlsplit(ref.strip())
    public = uploads.settings.public_url
    if (parts.scheme or parts.netloc) and public and not ref.strip().startswith(public + "/"):
        raise Invalid(N_("This is not an upload URL of this hub."), {"upload": f"Expected {public}{PREFIX}/uploads/…"})
    match = _UPLOAD_PATH.search(parts.path)
    if match is None or not parts.path.endswith(match.group(0)):
        raise Invalid(N_("This is not an upload URL."), {"upload": f"Expected {PREFIX}/uploads/<id>"})
    return match.group(1)


# ---------------------------------------------------------------------------
# Finding and locking uploads.


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time the hub stores is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def expires_at(upload: Upload) -> datetime:
    return _aware(upload.expires_at)


def may_touch(actor: User, upload: Upload) -> bool:
    """Only the upload's owner and admins may see, resume, cancel or use an upload (see the module docstring)."""
    return upload.user_id == actor.id or actor.is_admin


def _visible(session: Session, actor: User, upload_id: str) -> Upload:
    upload = session.get(Upload, upload_id, populate_existing=True) if UPLOAD_ID.fullmatch(upload_id) else None
    if upload is None or not may_touch(actor, upload):
        raise NotFound(N_("There is no such upload."))
    return upload


def get_upload(session: Session, actor: User, upload_id: str, now: datetime | None = None) -> Upload:
    """The actor's school's upload, still alive (else NotFound / UploadGone)."""
    upload = _visible(session, actor, upload_id)
    if upload.status == "expired" and (upload.backend_state or {}).get(_REJECTED):
        raise UploadGone(
            N_(
                "This upload was discarded: its bytes did not match the sha256 declared when it was created. "
                "Start the upload again."
            )
        )
    if upload.status == "expired" or expires_at(upload) <= (now or utcnow()):
        raise UploadGone(N_("This upload has expired; start the upload again."))
    return upload


def current_offset(uploads: Uploads, upload: Upload) -> int:
    """The offset storage holds (what a HEAD reports); reads only, needs no lock."""
    if upload.status == "complete":
        return upload.length
    try:
        return uploads.partials.committed_offset(upload.id, upload.backend_state)
    except PartialLost:
        raise UploadGone(N_("The bytes of this upload are gone; start the upload again.")) from None


def inspect_upload(
    session: Session, uploads: Uploads, storage: Storage, actor: User, upload_id: str
) -> tuple[Upload, int]:
    """The upload and its offset, for HEAD and GET.

    Every byte may be stored while the upload is not complete: the server died (or
    S3 failed) between the last PATCH's bytes and the blob. Finishing it here means a
    client that sees offset == length can rely on the upload being complete.
    """
    upload = get_upload(session, actor, upload_id)
    offset = current_offset(uploads, upload)
    if upload.status == "uploading" and offset == upload.length:
        upload = finish_stalled(session, uploads, storage, actor, upload_id)
    return upload, offset


def finish_stalled(session: Session, uploads: Uploads, storage: Storage, actor: User, upload_id: str) -> Upload:
    """Complete an upload whose bytes all arrived but whose blob was never made."""
    with upload_lock(session, uploads, upload_id):
        upload = get_upload(session, actor, upload_id)
        if upload.status == "complete":
            return upload
        partial = _open(uploads, upload)
        if partial.offset != upload.length:
            return upload
        whole = _resume_sha256(upload, partial)
        # The last PATCH was checked before its bytes were committed; only sending
        # them on and making the blob were left undone (and, with a declared sha256,
        # comparing it: the crash may have come before that too).
        partial.commit(final=True)
        state = dict(upload.backend_state)
        rejected = _finish(session, uploads, storage, upload, partial, whole, utcnow())
        session.commit()
    uploads.partials.discard(upload.id, state)
    if rejected is not None:
        get_upload(session, actor, upload_id)  # raises the tombstone's UploadGone
    return upload


def _finish(
    session: Session,
    uploads: Uploads,
    storage: Storage,
    upload: Upload,
    partial: PartialUpload,
    whole: Sha256State | None,
    now: datetime,
) -> str | None:
    """Make the blob of an upload whose bytes all arrived; if they are not the declared ones, their sha256.

    With a running hash (the usual case) the declared sha256 is compared before storage
    is touched; without one, partial.finish() hashes the file and compares before it
    stores anything under a content key. Either way a mismatch stores no blob: the upload
    becomes a tombstone, and the caller discards its bytes after the commit.
    """
    declared = declared_sha256(upload)
    sha256 = whole.hexdigest() if whole is not None else None
    try:
        if declared is not None and sha256 is not None and sha256 != declared:
            raise DigestMismatch(sha256)
        stored = partial.finish(sha256, declared)
    except DigestMismatch as exc:
        log.warning("upload %s: the bytes hash to %s, not the declared %s; discarded", upload.id, exc.actual, declared)
        upload.status = "expired"
        upload.sha256_state = None
        upload.expires_at = now
        upload.backend_state = {_REJECTED: "sha256"}
        return exc.actual
    _complete(session, uploads, storage, upload, stored, now)
    return None


@contextlib.contextmanager
def upload_lock(session: Session, uploads: Uploads, upload_id: str, wait: float | None = None) -> Iterator[None]:
    """Serialise writers of one upload until the session's transaction ends.

    PostgreSQL (one database, maybe many web servers): ``SELECT … FOR UPDATE`` on the
    row, which PostgreSQL releases at commit or rollback, also when a server dies.
    SQLite is only ever one machine, but its only lock is the whole database's: a
    BEGIN IMMEDIATE held while a PATCH writes hundreds of MB would stall every other
    writer of the hub past its busy timeout. So there, an flock on a per-upload lock
    file; flock (unlike fcntl/lockf record locks) excludes other threads of the same
    process too, which a threaded server needs, and the kernel drops it when the
    process dies, so a killed server never leaves an upload locked.

    A waiter gives up after ``wait`` seconds with 423 Locked. A client whose first
    connection died can always take over: waitress buffers request bodies, so a dead
    connection never reaches us holding the lock, and a live PATCH ends within the time
    its bytes take to reach disk; the streaming upload listener (hub.serving) ends a
    PATCH whose client is silent for UPLOAD_IDLE_SECONDS, less than ``wait``.
    """
    wait = LOCK_WAIT_SECONDS if wait is None else wait
    if session.get_bind().dialect.name == "postgresql":
        # 0 would mean "wait forever" to PostgreSQL; 1 ms is as good as NOWAIT.
        session.execute(text(f"SET LOCAL lock_timeout = '{max(1, int(wait * 1000))}ms'"))
        try:
            session.execute(select(Upload.id).where(Upload.id == upload_id).with_for_update())
        except OperationalError as exc:
            session.rollback()
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise UploadLocked(
                    N_("Another request is writing to this upload; try again shortly."), {"Retry-After": "5"}
                ) from None
            raise
        try:
            yield
        except BaseException:
            session.rollback()
            raise
        return
    try:
        with file_lock(uploads.partials.lock_path(upload_id), wait):
            try:
                yield
            except BaseException:
                session.rollback()
                raise
    except LockBusy:  # only the lock raises it: the body never takes file locks
        raise UploadLocked(
            N_("Another request is writing to this upload; try again shortly."), {"Retry-After": "5"}
        ) from None


# ---------------------------------------------------------------------------
# Creating, appending, finishing.


def create_upload(
    session: Session, uploads: Uploads, actor: User | None, length: int, metadata: UploadMetadata
) -> Upload:
    if actor is None:
        raise Unauthorized(N_("Sign in to upload files."))
    if actor.role not in ("admin", "uploader"):
        raise PermissionDenied(N_("Only uploaders and admins upload files."))
    if length == 0:
        raise BadUploadRequest(N_("The file is empty: there is nothing to upload."))
    if length > uploads.settings.max_bytes:
        raise UploadTooLarge(
            N_("The file is %(size)s; uploads may be at most %(limit)s."),
            {"Tus-Max-Size": str(uploads.settings.max_bytes)},
            size=filesize(length),
            limit=filesize(uploads.settings.max_bytes),
        )
    now = utcnow()
    # Before storage is touched (on S3, creating is two round trips): most refusals cost nothing.
    _check_quotas(session, uploads, actor, now, new_length=length)
    check_disk(uploads, length, 0)
    upload_id = secrets.token_urlsafe(24)
    # Storage first: if the commit fails, the sweep removes the unclaimed bytes later;
    # the other order could leave a row whose bytes have nowhere to go.
    state = uploads.partials.create(upload_id, length)
    upload = Upload(
        id=upload_id,
        school_id=actor.school_id,
        user_id=actor.id,
        status="uploading",
        length=length,
        offset=0,
        filename=metadata.filename,
        filetype=metadata.filetype,
        upload_metadata=metadata.pairs,
        sha256_state=Sha256State().state() if Sha256State.available() else None,
        sha256_offset=0,
        backend=uploads.partials.kind,
        backend_state=state,
        expires_at=now + timedelta(seconds=uploads.settings.expires_seconds),
    )
    try:
        # Again with the new row in, under a lock: concurrent creations cannot all squeeze
        # through the check above. PostgreSQL: the school's row, NO KEY UPDATE so rows that
        # merely reference the school do not wait. SQLite: the INSERT takes the one write lock.
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(School.id).where(School.id == actor.school_id).with_for_update(key_share=True))
        session.add(upload)
        session.flush()
        _check_quotas(session, uploads, actor, now, new_length=None)
    except BaseException:
        session.rollback()
        uploads.partials.discard(upload_id, state)
        raise
    return upload


def _check_quotas(session: Session, uploads: Uploads, actor: User, now: datetime, *, new_length: int | None) -> None:
    """Refuse an upload past the quotas; `new_length` is its length while its row is not flushed yet, else None."""
    live = (Upload.status == "uploading", Upload.expires_at > now)
    mine = session.scalar(select(func.count()).select_from(Upload).where(*live, Upload.user_id == actor.id)) or 0
    declared = session.scalar(
        select(func.coalesce(func.sum(Upload.length), 0)).where(*live, Upload.school_id == actor.school_id)
    )
    declared = int(declared or 0)
    if new_length is not None:
        mine, declared = mine + 1, declared + new_length
    settings = uploads.settings
    if mine > settings.max_unfinished:
        raise TooManyUploads(
            N_(
                "You have %(limit)s unfinished uploads, the most one person may have at once. "
                "Finish or cancel one of them before starting another."
            ),
            limit=settings.max_unfinished,
        )
    if declared > settings.school_max_bytes:
        raise SchoolQuotaExceeded(
            N_(
                "With this file your school's unfinished uploads would come to %(total)s, more than its limit of "
                "%(limit)s. Finish or cancel some of them first."
            ),
            total=_size(declared),
            limit=_size(settings.school_max_bytes),
        )


def check_disk(uploads: Uploads, length: int, offset: int) -> None:
    """Refuse (507) an upload whose bytes still to come would leave a disk they go to with less than the reserve.

    Measured, not assumed: the free space now on the upload directory's disk and,
    when finished uploads are copied rather than linked into local storage (another
    filesystem), on the storage's disk too.
    """
    settings = uploads.settings
    remaining = length - offset
    # With S3 storage, at most a part waits on local disk before it is sent.
    local = uploads.partials.kind == "local"
    here = remaining if local else min(remaining, part_size_for(length, settings.part_bytes))
    needs = {_device(settings.directory): (settings.directory, here)}
    if settings.storage_dir is not None and _device(settings.storage_dir) not in needs:
        needs[_device(settings.storage_dir)] = (settings.storage_dir, length)
    for directory, needed in needs.values():
        free = _free(directory)
        if free - needed < settings.disk_reserve:
            log.warning(
                "upload refused: %s has %d bytes free; %d more would pass the reserve of %d (HUB_UPLOAD_DISK_RESERVE)",
                directory,
                free,
                needed,
                settings.disk_reserve,
            )
            raise InsufficientStorage(
                N_(
                    "The server's disk is too full to take this upload (%(needed)s still to come; the server keeps "
                    "%(reserve)s free). Ask the hub's administrator to make room, then resume the upload."
                ),
                needed=_size(needed),
                reserve=_size(settings.disk_reserve),
            )


def _existing(path: Path) -> Path:
    # The upload directory is made on the first upload; until then its parent's disk is the one.
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _device(path: Path) -> int:
    return os.stat(_existing(path)).st_dev


def _free(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def _size(count: int) -> str:
    """Bytes for a person, in the decimal units the pages use."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


class _Pump:
    """Reads the request body in CHUNK_SIZE steps, feeding the hashes as bytes pass.

    At most ``limit`` bytes are handed on; one more byte in the body is noted as an
    overflow (a chunked body running past the upload's length). A body that stops
    early (client gone) ends the iteration and is noted as ``error``: an exception from
    the stream, or, from a server that streams the body (the upload listener, whose
    stream just ends when the connection does), fewer bytes than ``expected``.

    The body is read with ``readinto`` into a few buffers taken from a small pool and
    reused, not into a new bytes object per MiB: on this VM a fresh MiB costs 256 page
    faults, and allocating, copying and freeing a MiB per read was ~15 % of the upload
    server's CPU (benchmarks/uploads/RESULTS.md, issue 19). Each chunk handed on is a
    memoryview of one of them, valid until the next one is asked for: the stores write
    it before they ask (a buffered file copies what it keeps).

    The hashes run on a helper thread while the caller writes the same chunk to disk:
    hashlib and OpenSSL release the GIL, so on two cores hashing costs no wall time.
    At most ``_AHEAD`` chunks wait for their hash, which bounds memory (``_AHEAD`` + 1
    buffers: the one being filled is never one still being hashed); :meth:`drain`
    waits for the last ones and gives the buffers back.
    """

    _AHEAD = 4

    def __init__(
        self, body: IO[bytes], limit: int, sinks: list[Callable[[Chunk], None]], expected: int | None = None
    ) -> None:
        self.body = body
        self.limit = limit
        self.expected = expected
        self.sinks = sinks
        self.received = 0
        self.overflow = False
        self.error: Exception | None = None
        self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-hash")
        self._pending: deque[Future[None]] = deque()
        self._buffers = _take_buffers(self._AHEAD + 1) if hasattr(body, "readinto") else None

    def _feed(self, chunk: Chunk) -> None:
        for sink in self.sinks:
            sink(chunk)

    def _read(self, turn: int) -> Chunk:
        """The next chunk: up to CHUNK_SIZE bytes, fewer only at the end of the body."""
        want = min(CHUNK_SIZE, self.limit - self.received)
        if self.expected is not None:
            # Never ask past Content-Length: werkzeug's LimitedStream would read into a
            # temporary buffer instead of ours.
            want = min(want, max(self.expected - self.received, 1))
        if self._buffers is None:
            return self.body.read(want)
        view = memoryview(self._buffers[turn % len(self._buffers)])[:want]
        filled = 0
        while filled < want:
            got = self.body.readinto(view[filled:])  # type: ignore[attr-defined]
            if not got:
                break
            filled += got
        return view[:filled]

    def __iter__(self) -> Iterator[Chunk]:
        turn = 0
        try:
            while self.received < self.limit:
                chunk = self._read(turn)
                turn += 1
                if not chunk:
                    if self.expected is not None and self.received < self.expected:
                        self.error = ClientDisconnected()
                    return
                # One worker thread: the hashes see the chunks in order.
                self._pending.append(self._hashing.submit(self._feed, chunk))
                if len(self._pending) > self._AHEAD:
                    self._pending.popleft().result()
                self.received += len(chunk)
                yield chunk
            self.overflow = bool(self.body.read(1))
        except (ClientDisconnected, ConnectionError, TimeoutError) as exc:
            self.error = exc

    def drain(self) -> None:
        """Wait until every chunk handed on has been hashed."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._hashing.shutdown(wait=True, cancel_futures=True)
            if self._buffers is not None:
                _give_buffers(self._buffers)
                self._buffers = None


# Body buffers kept between PATCHes (see _Pump): a few sets, so memory stays flat however
# many PATCHes arrive; a PATCH that finds none makes its own.
_BUFFER_SETS_KEPT = 2
_buffer_sets: list[list[bytearray]] = []
_buffer_lock = threading.Lock()


def _take_buffers(count: int) -> list[bytearray]:
    with _buffer_lock:
        if _buffer_sets and len(_buffer_sets[-1]) == count:
            return _buffer_sets.pop()
    return [bytearray(CHUNK_SIZE) for _ in range(count)]


def _give_buffers(buffers: list[bytearray]) -> None:
    with _buffer_lock:
        if len(_buffer_sets) < _BUFFER_SETS_KEPT:
            _buffer_sets.append(buffers)


def _resume_sha256(upload: Upload, partial: PartialUpload) -> Sha256State | None:
    """The whole-file hash state at the upload's offset, or None (then finish() hashes)."""
    if not Sha256State.available():
        return None
    try:
        state = Sha256State(upload.sha256_state) if upload.sha256_state else Sha256State()
    except ValueError:
        return None
    start = upload.sha256_offset if upload.sha256_state else 0
    if start > partial.offset:
        return None  # storage holds less than was hashed: the state is no longer ours
    if start < partial.offset:
        # A killed PATCH stored bytes its state never recorded: catch up if we can read them.
        chunks = partial.read(start, partial.offset)
        if chunks is None:
            return None
        for chunk in chunks:
            state.update(chunk)
    return state


def _content_problem(filetype: str, head: bytes) -> ContentMismatch | None:
    expected = _declared_kind(filetype)
    if expected is None:
        return None
    sniffed = sniff_bytes(head)
    kind = media_services.SNIFFED[sniffed][0] if sniffed in media_services.SNIFFED else None
    if kind == expected:
        return None
    if sniffed:
        return ContentMismatch(
            N_("The file's content does not match its declared type %(type)s: it looks like %(found)s."),
            type=filetype,
            found=sniffed,
        )
    return ContentMismatch(
        N_(
            "The file's content does not match its declared type %(type)s: "
            "it is not a video, audio, image or PDF we can read."
        ),
        type=filetype,
    )


def append(
    session: Session,
    uploads: Uploads,
    storage: Storage,
    actor: User,
    upload_id: str,
    *,
    offset: int,
    body: IO[bytes],
    content_length: int | None,
    checksum: Checksum | None,
) -> Upload:
    """Append a PATCH body at ``offset``; complete the upload when its last byte arrives."""
    _visible(session, actor, upload_id)  # 404 before queueing for another school's lock
    now = utcnow()
    with upload_lock(session, uploads, upload_id):
        upload = get_upload(session, actor, upload_id, now)
        if upload.status == "complete":
            raise UploadFinished(N_("This upload is complete; it takes no more bytes."))
        partial = _open(uploads, upload)
        if offset != partial.offset:
            raise OffsetMismatch(
                N_("Upload-Offset is %(offset)s but the server has %(have)s bytes; send from there."),
                {"Upload-Offset": str(partial.offset)},
                offset=offset,
                have=partial.offset,
            )
        if content_length == 0:
            raise BadUploadRequest(N_("The PATCH carries no bytes."))
        remaining = upload.length - offset
        if content_length is not None and content_length > remaining:
            raise UploadTooLarge(
                N_("The PATCH carries %(sent)s bytes but only %(remaining)s remain of the declared length."),
                sent=content_length,
                remaining=remaining,
            )
        check_disk(uploads, upload.length, offset)
        whole = _resume_sha256(upload, partial)
        check_until = min(HEAD_BYTES, upload.length)
        head = bytearray()
        if offset < check_until and offset > 0:
            head.extend(b"".join(partial.read(0, offset) or []))
        sinks: list[Callable[[Chunk], None]] = []
        if whole is not None:
            sinks.append(whole.update)
        chunk_hash = hashlib.new(checksum.algorithm) if checksum else None
        if chunk_hash is not None:
            sinks.append(chunk_hash.update)
        if offset < check_until:
            sinks.append(lambda chunk: head.extend(chunk[: check_until - len(head)]))
        pump = _Pump(body, remaining, sinks, content_length)
        try:
            partial.append(pump)
            pump.drain()
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                pump.drain()
            partial.rollback()
            raise
        end = partial.offset
        final = end == upload.length
        problem: TusError | None = None
        if pump.overflow:
            problem = UploadTooLarge(N_("The PATCH runs past the upload's declared length; nothing of it was kept."))
        elif checksum is not None and chunk_hash is not None and chunk_hash.digest() != checksum.digest:
            problem = ChecksumMismatch(N_("Upload-Checksum does not match the bytes received; send them again."))
        elif checksum is not None and pump.error is not None:
            problem = BadUploadRequest(N_("The body ended early, so its checksum cannot be checked; send it again."))
        elif offset < check_until and (end >= check_until):
            problem = _content_problem(upload.filetype, bytes(head))
        if problem is not None:
            partial.rollback()
            raise problem
        partial.commit(final=final)
        upload.offset = end
        upload.expires_at = now + timedelta(seconds=uploads.settings.expires_seconds)
        if whole is not None:
            upload.sha256_state, upload.sha256_offset = whole.state(), end
        state = dict(upload.backend_state)
        rejected = _finish(session, uploads, storage, upload, partial, whole, now) if final else None
        session.commit()
    if final:
        # The blob row (or the tombstone) is committed: the upload's own copy of the bytes can go.
        uploads.partials.discard(upload.id, state)
    if rejected is not None:
        raise Sha256Mismatch(
            N_(
                "The uploaded file's sha256 is %(actual)s, not %(declared)s as declared when the upload was created; "
                "the upload was discarded. Check the file and start the upload again."
            ),
            actual=rejected,
            declared=declared_sha256(upload),
        )
    if pump.error is not None:
        # The client went away mid-body; what arrived is kept and the next HEAD says so.
        raise BadUploadRequest(N_("The request body ended before its Content-Length."))
    return upload


def _open(uploads: Uploads, upload: Upload) -> PartialUpload:
    try:
        return uploads.partials.open(upload.id, upload.backend_state)
    except PartialLost:
        raise UploadGone(N_("The bytes of this upload are gone; start the upload again.")) from None


def _complete(
    session: Session, uploads: Uploads, storage: Storage, upload: Upload, stored: StoredBlob, now: datetime
) -> None:
    if stored.size != upload.length:
        raise RuntimeError(f"upload {upload.id} stored {stored.size} bytes, expected {upload.length}")
    record_blob(session, storage, stored.sha256, stored.size, upload.filename)
    upload.status = "complete"
    upload.blob_sha256 = stored.sha256
    upload.completed_at = now
    upload.sha256_state = None
    # A finished upload waits this long to become a material.
    upload.expires_at = now + timedelta(seconds=uploads.settings.expires_seconds)


def record_blob(session: Session, storage: Storage, sha256: str, size: int, filename: str) -> Blob:
    """The Blob row for stored bytes; the same bytes finishing twice at once make one row."""
    blob = session.get(Blob, sha256)
    if blob is not None:
        return blob
    _, media_type = media_services._kind_and_type(storage, sha256, filename)
    values = {"sha256": sha256, "size": size, "media_type": media_type, "created_at": utcnow()}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Blob).values(**values).on_conflict_do_nothing(index_elements=["sha256"]))
    blob = session.get(Blob, sha256)
    assert blob is not None
    return blob


def terminate(session: Session, uploads: Uploads, actor: User, upload_id: str) -> None:
    """tus termination: forget the upload and its bytes (a finished upload's blob stays)."""
    _visible(session, actor, upload_id)
    with upload_lock(session, uploads, upload_id):
        upload = get_upload(session, actor, upload_id)
        state = dict(upload.backend_state)
        session.delete(upload)
        session.commit()
    # After the commit: a crash in between leaves orphan bytes for the sweep, never a
    # row whose bytes are gone.
    uploads.partials.discard(upload_id, state)


# ---------------------------------------------------------------------------
# Expiry.


@dataclass
class ExpiryReport:
    expired: int = 0
    purged: int = 0
    orphans: int = 0
    skipped: list[str] = field(default_factory=list)


def expire_uploads(database: Database, uploads: Uploads, now: datetime | None = None) -> ExpiryReport:
    """Remove expired uploads' bytes (aborting S3 multipart uploads) and leftovers nobody claims."""
    now = now or utcnow()
    report = ExpiryReport()
    with database.session() as session:
        due = list(
            session.scalars(
                select(Upload.id)
                .where(Upload.status != "expired", Upload.expires_at < now)
                .order_by(Upload.expires_at)
                .limit(1000)
            )
        )
    for upload_id in due:
        with database.session() as session:
            try:
                # No waiting: an upload being written right now is not abandoned.
                with upload_lock(session, uploads, upload_id, wait=0):
                    upload = session.get(Upload, upload_id)
                    if upload is None or upload.status == "expired" or expires_at(upload) >= now:
                        continue
                    try:
                        uploads.partials.discard(upload.id, upload.backend_state)
                    except Exception:  # storage trouble with one upload must not stop the sweep
                        log.exception("could not remove the bytes of expired upload %s; will retry", upload.id)
                        report.skipped.append(upload.id)
                        continue
                    upload.status = "expired"
                    upload.sha256_state = None
                    session.commit()
                    report.expired += 1
            except UploadLocked:
                report.skipped.append(upload_id)
    with database.session() as session:
        purged = session.execute(
            delete(Upload).where(Upload.status == "expired", Upload.expires_at < now - timedelta(days=TOMBSTONE_DAYS))
        )
        report.purged = getattr(purged, "rowcount", 0) or 0
        session.commit()

        def claimed(upload_id: str) -> bool:
            status = session.scalar(select(Upload.status).where(Upload.id == upload_id))
            return status is not None and status != "expired"

        # Bytes whose row never committed (a crash right after create) or whose discard
        # failed: old enough that no live request can still be creating them.
        report.orphans = uploads.partials.sweep_orphans(
            claimed, now - timedelta(seconds=min(uploads.settings.expires_seconds, 86400))
        )
    return report


# ---------------------------------------------------------------------------
# From upload to material.


def _finished_upload(session: Session, uploads: Uploads, storage: Storage, actor: User, upload_ref: str) -> Upload:
    """The actor's upload named by ``upload_ref``, refused while bytes are still missing."""
    upload, _ = inspect_upload(session, uploads, storage, actor, parse_upload_ref(uploads, upload_ref))
    if upload.status != "complete":
        raise Conflict(
            N_("The upload is not finished: %(done)s of %(total)s arrived. Resume it first."),
            {"upload": N_("not finished")},
            done=filesize(upload.offset),
            total=filesize(upload.length),
        )
    return upload


def create_material(
    session: Session,
    uploads: Uploads,
    storage: Storage,
    actor: User | None,
    lesson_id: int,
    upload_ref: str,
    title: str,
) -> Material:
    """Make a finished upload a lesson's material and queue its processing; no byte is copied."""
    if actor is None:
        raise Unauthorized(N_("Sign in to add materials."))
    upload = _finished_upload(session, uploads, storage, actor, upload_ref)
    lesson = catalog.get_lesson(session, actor, lesson_id)
    if not catalog.can_edit(actor, lesson.course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    if upload.material_id is not None:
        existing = session.get(Material, upload.material_id)
        if existing is not None and existing.lesson_id == lesson.id:
            return existing  # a retried request: the material it made the first time
        if existing is not None:
            raise Conflict(
                N_("This upload is already material %(id)s of another lesson."), {"upload": N_("used")}, id=existing.id
            )
    title = title.strip() or upload.filename
    if not title or len(title) > 200:
        raise Invalid(N_("A material needs a title of at most 200 characters."), {"title": "1 to 200 characters"})
    blob = session.get(Blob, upload.blob_sha256)
    if blob is None:
        raise UploadGone(N_("The file of this upload is missing; upload it again."))
    kind, _ = media_services._kind_and_type(storage, blob.sha256, upload.filename)
    material = Material(
        lesson=lesson,
        kind=kind,
        title=title,
        filename=media_services.safe_filename(upload.filename),
        original=blob,
        status="pending",
    )
    session.add(material)
    session.flush()
    # Claim the upload atomically: two concurrent requests cannot both make a material of it.
    claimed = session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.material_id.is_(None) | (Upload.material_id == upload.material_id))
        .values(material_id=material.id)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        session.rollback()
        raise Conflict(N_("This upload was just made into a material by another request."), {"upload": "Used"})
    jobs.enqueue(session, media_services.process_task(material.kind), material.id)
    search_changes.reindex(session, [lesson.course_id])
    return material


def replace_material(
    session: Session,
    uploads: Uploads,
    storage: Storage,
    actor: User | None,
    material_id: int,
    upload_ref: str,
    title: str,
) -> Material:
    """Make a finished upload a material's new original (hub.catalog.services.replace_original); no byte is copied."""
    if actor is None:
        raise Unauthorized(N_("Sign in to change materials."))
    upload = _finished_upload(session, uploads, storage, actor, upload_ref)
    material = catalog.get_material(session, actor, material_id)
    if not catalog.can_edit(actor, material.lesson.course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    if upload.material_id == material.id and material.original_sha256 == upload.blob_sha256:
        return material  # a retried request: the replacement is done
    if upload.material_id is not None:
        raise Conflict(N_("This upload is already material %(id)s."), {"upload": N_("used")}, id=upload.material_id)
    blob = session.get(Blob, upload.blob_sha256)
    if blob is None:
        raise UploadGone(N_("The file of this upload is missing; upload it again."))
    kind, _ = media_services._kind_and_type(storage, blob.sha256, upload.filename)
    material = catalog.replace_original(session, actor, material_id, blob, kind, filename=upload.filename, title=title)
    # Claim the upload atomically, as create_material does: one replacement per upload.
    claimed = session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.material_id.is_(None))
        .values(material_id=material.id)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        session.rollback()
        raise Conflict(N_("This upload was just used by another request."), {"upload": N_("used")})
    return material


def list_uploads(session: Session, actor: User, *, unfinished_only: bool = True) -> list[Upload]:
    """The live uploads the actor may touch, newest first (for the pages): its own; an admin's school's."""
    query = select(Upload).where(Upload.status != "expired")
    if actor.is_admin:
        query = query.where(Upload.school_id == actor.school_id)
    else:
        query = query.where(Upload.user_id == actor.id)
    if unfinished_only:
        query = query.where(Upload.status == "uploading")
    return list(session.scalars(query.order_by(Upload.created_at.desc()).limit(100)))


def describe(upload: Upload) -> dict[str, Any]:
    """What a person or a script wants to know about an upload (the JSON GET)."""
    return {
        "id": upload.id,
        "status": upload.status,
        "offset": upload.offset,
        "length": upload.length,
        "filename": upload.filename,
        "filetype": upload.filetype,
        "sha256": upload.blob_sha256,
        "material": upload.material_id,
        "expires_at": expires_at(upload).isoformat(),
    }
