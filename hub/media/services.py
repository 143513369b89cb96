"""Blob and rendition use cases shared by the API, pages, CLI and workers."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from collections.abc import Iterable
from typing import IO

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from hub import jobs
from hub.accounts.models import User
from hub.catalog.models import Course, Lesson, Material
from hub.db import Database
from hub.errors import NotFound
from hub.i18n import N_
from hub.media.models import Blob, DownloadCount, Rendition
from hub.media.storage import Storage, is_sha256

# What the first bytes say (hub.media.ffmpeg.sniff) → (material kind, media type).
SNIFFED = {
    "mov": ("video", "video/mp4"),
    "matroska": ("video", "video/webm"),
    "avi": ("video", "video/x-msvideo"),
    "mp3": ("audio", "audio/mpeg"),
    "aac": ("audio", "audio/aac"),
    "wav": ("audio", "audio/wav"),
    "ogg": ("audio", "audio/ogg"),
    "flac": ("audio", "audio/flac"),
    "png": ("image", "image/png"),
    "jpeg": ("image", "image/jpeg"),
    "webp": ("image", "image/webp"),
    "gif": ("image", "image/gif"),
    "pdf": ("document", "application/pdf"),
}


# Material kinds whose work is seconds, not minutes: their tasks go to the `documents`
# queue, so they never wait behind a backlog of transcodes (hub.jobs.QUEUES).
_QUICK_KINDS = frozenset({"document", "image"})


def process_task(kind: str) -> str:
    """The task that probes an original of this material kind."""
    return jobs.PROCESS_DOCUMENT if kind in _QUICK_KINDS else jobs.PROCESS_MATERIAL


def build_task(kind: str) -> str:
    """The task that builds a rendition of a material of this kind."""
    return jobs.BUILD_DOCUMENT_RENDITION if kind in _QUICK_KINDS else jobs.BUILD_RENDITION


def safe_filename(filename: str) -> str:
    """A name safe to keep and to offer back: no directories, no control characters."""
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name[:255] or "file"


def _kind_and_type(storage: Storage, sha256: str, filename: str) -> tuple[str, str]:
    from hub.media.ffmpeg import sniff_bytes  # reads magic numbers only; runs no ffmpeg

    head = b"".join(storage.open_range(sha256, 0, 4095)) if storage.size(sha256) else b""
    sniffed = sniff_bytes(head)
    if sniffed in SNIFFED:
        return SNIFFED[sniffed]
    # Unknown content: keep the name's hint for the page; the worker's probe
    # will fail it with a reason the uploader can read.
    guessed = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    major = guessed.split("/")[0]
    kind = {"video": "video", "audio": "audio", "image": "image"}.get(major, "document")
    return kind, "application/octet-stream"


def store_original(session: Session, storage: Storage, fileobj: IO[bytes], filename: str) -> tuple[Blob, str]:
    """Store uploaded bytes under their sha256 and record the blob; returns it and the kind."""
    stored = storage.store(fileobj)
    kind, media_type = _kind_and_type(storage, stored.sha256, filename)
    blob = session.get(Blob, stored.sha256)
    if blob is None:
        blob = Blob(sha256=stored.sha256, size=stored.size, media_type=media_type)
        session.add(blob)
    return blob, kind


def get_readable_blob(session: Session, actor: User | None, sha256: str) -> Blob:
    """A blob is readable when some material, rendition or subtitle using it is in a visible course."""
    if not is_sha256(sha256):
        raise NotFound(N_("There is no such file."))
    blob = session.get(Blob, sha256)
    if blob is None or not _used_in_visible_course(session, actor, sha256):
        raise NotFound(N_("There is no such file."))
    return blob


def blob_is_public(session: Session, sha256: str) -> bool:
    """Whether anyone, anonymous included, may fetch the blob: only then may shared caches keep it.

    The same bytes may serve a published course and a draft (blobs are named by their
    hash): the published use makes them public.
    """
    return is_sha256(sha256) and _used_in_visible_course(session, None, sha256)


def _used_in_visible_course(session: Session, actor: User | None, sha256: str) -> bool:
    from hub.catalog.services import visible_clause
    from hub.subtitles.services import readable_subtitle_blobs

    used = session.scalar(
        select(Material.id)
        .join(Lesson)
        .join(Course)
        .outerjoin(Rendition, Rendition.material_id == Material.id)
        .where(
            or_(Material.original_sha256 == sha256, Rendition.blob_sha256 == sha256),
            visible_clause(actor),
        )
        .limit(1)
    )
    # A subtitle's .vtt is a blob too: school servers fetch it like a rendition.
    return used is not None or bool(readable_subtitle_blobs(session, actor, [sha256]))


_CHUNK = 500
"""Hashes per IN (...) list: well under SQLite's bound-parameter limit."""


def drop_unreferenced_blobs(session: Session, candidates: Iterable[str]) -> list[str]:
    """Forget the rows of `candidates` nothing uses any more; returns their hashes.

    Used: a material's original, a rendition, a subtitle track, or an upload that
    holds the bytes (finished, not yet made a material). The caller commits, then
    deletes the bytes: a crash in between leaves unreferenced bytes (harmless,
    reclaimed next time), never a row without bytes.
    """
    from hub.subtitles.models import Subtitle
    from hub.sync.models import ReportedCount
    from hub.uploads.models import Upload

    wanted = sorted({sha for sha in candidates if is_sha256(sha)})
    dropped: list[str] = []
    # A few set-based statements per chunk instead of two lookups and three deletes per blob.
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        used = set(session.scalars(select(Material.original_sha256).where(Material.original_sha256.in_(chunk))))
        used |= set(session.scalars(select(Rendition.blob_sha256).where(Rendition.blob_sha256.in_(chunk))))
        used |= set(session.scalars(select(Subtitle.blob_sha256).where(Subtitle.blob_sha256.in_(chunk))))
        used |= set(session.scalars(select(Upload.blob_sha256).where(Upload.blob_sha256.in_(chunk))))
        unused = [sha for sha in chunk if sha not in used]
        if not unused:
            continue
        options = {"synchronize_session": False}
        session.execute(delete(DownloadCount).where(DownloadCount.blob_sha256.in_(unused)), execution_options=options)
        session.execute(delete(ReportedCount).where(ReportedCount.blob_sha256.in_(unused)), execution_options=options)
        session.execute(delete(Blob).where(Blob.sha256.in_(unused)), execution_options=options)
        dropped += unused
    session.flush()
    return dropped


def forget_blobs_later(session: Session, candidates: Iterable[str]) -> None:
    """After commit, remove those of `candidates` nothing uses any more (:func:`remove_unused_blobs`).

    For a service that just deleted or replaced a material: the same bytes may serve
    another material (blobs are named by their sha256, and renditions are reused
    across materials of the same original), so whether they go is decided by the
    task, against what is committed then, not by the request.
    """
    shas = sorted({sha for sha in candidates if sha})
    if shas:
        jobs.enqueue(session, jobs.REMOVE_UNUSED_BLOBS, shas)


def remove_unused_blobs(database: Database, storage: Storage, candidates: Iterable[str]) -> list[str]:
    """Drop the rows of the candidates nothing uses, commit, then delete their bytes; safe to run twice."""
    with database.session() as session:
        dropped = drop_unreferenced_blobs(session, candidates)
        session.commit()
    for sha in dropped:
        storage.delete(sha)
    return dropped
