"""Processing an uploaded original into renditions: the services the media workers call.

Two steps, each a task that takes an id, re-checks state and is safe to run twice:

1. :func:`process_material` probes the original (bounded, untrusted input),
   finds the chapters of a slides-like video (:mod:`hub.media.chapters`) and plans one
   rendition row per applicable profile;
2. :func:`build_rendition` transcodes one profile into a temp file, stores it
   under its sha256 and marks the row ready (or skipped, or failed with a reason).

A worker killed mid-transcode leaves its row ``processing``; the redelivered
task simply redoes it. Outputs are content-addressed, so a redo that produces
the same bytes stores nothing new, and the (material, profile) unique key keeps
exactly one row per profile.

The same bytes uploaded twice (a lesson reused in another course, a re-upload)
are transcoded once: a rendition another material of the same original already
has, made with the profile's current settings (``Rendition.fingerprint``), is
copied, blob and numbers, instead of queued; so are its chapters.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from hub import jobs
from hub.catalog.models import Material
from hub.db import Database, utcnow
from hub.media import chapters, ffmpeg, quality
from hub.media.models import Blob, Rendition
from hub.media.profiles import PROFILES, applicable_profiles
from hub.media.sandbox import job_directory
from hub.media.services import build_task, forget_blobs_later, process_task
from hub.media.storage import Storage

log = logging.getLogger(__name__)

SETTLED = ("ready", "skipped", "failed")
# A pending rendition or material waits this many leases before its message counts as lost.
PENDING_LEASES = 6


def process_material(session: Session, storage: Storage, material_id: int, limits: ffmpeg.MediaLimits) -> list[int]:
    """Probe the original and plan its renditions; returns the rendition ids queued."""
    material = session.get(Material, material_id)
    if material is None or material.status in ("ready", "failed"):
        return []  # deleted since, or already done: a redelivered message
    # A job directory of its own: the decoders of this job see its files and nothing else.
    with job_directory(limits.sandbox, "probe-") as tmp:
        source = tmp / "original"
        storage.fetch_to(material.original_sha256, source)
        try:
            probe = ffmpeg.probe(source, limits)
        except ffmpeg.MediaError as exc:
            if exc.transient:
                raise
            material.status = "failed"
            material.error = exc.reason
            session.commit()
            return []
        if probe.kind == "video" and material.chapters is None:
            material.chapters = _donor_chapters(session, material)
            if material.chapters is None:
                material.chapters = _find_chapters(source, probe, limits)
    material.kind = probe.kind
    existing = {r.profile: r for r in material.renditions}
    queued: list[Rendition] = []
    for profile in applicable_profiles(probe):
        rendition = existing.get(profile.name)
        if rendition is None:
            rendition = Rendition(material=material, profile=profile.name, status="pending")
            session.add(rendition)
        if rendition.status not in ("ready", "skipped") and not _reuse(session, rendition, material):
            queued.append(rendition)
    material.status = "processing"
    material.error = ""
    session.flush()
    for rendition in queued:
        jobs.enqueue(session, build_task(material.kind), rendition.id)
    if not queued:
        _settle_material(material)
    session.commit()
    return [r.id for r in queued]


def _find_chapters(source: Path, probe: ffmpeg.Probe, limits: ffmpeg.MediaLimits) -> list[float]:
    """Chapter starts of a video ([] unless slides-like); [] when the search fails (a help, not the lesson)."""
    try:
        changes = ffmpeg.picture_changes(source, probe, limits=limits)
    except ffmpeg.MediaError as exc:
        if exc.transient:
            raise
        log.warning("no chapters for %s: %s %s", source, exc.reason, exc.detail)
        return []
    return chapters.chapter_starts(changes.times, changes.sampled, probe.duration)


def _donor_chapters(session: Session, material: Material) -> list[float] | None:
    """The chapters another material of the same original already has (None when none has looked)."""
    found = session.scalar(
        select(Material.chapters)
        .where(
            Material.original_sha256 == material.original_sha256,
            Material.id != material.id,
            Material.chapters.is_not(None),
        )
        .limit(1)
    )
    return None if found is None else chapters.clean_chapters(found)


def _reuse(session: Session, rendition: Rendition, material: Material) -> bool:
    """Copy the same profile's rendition of another material with the same original, if one is settled.

    Only one made with the profile's current settings (its fingerprint): a ladder
    retuned since must not hand out renditions made the old way. Skipped counts too:
    "bigger than this original" holds for the same bytes. Safe to run twice: the copy
    is the same whichever donor is found.
    """
    profile = PROFILES[rendition.profile]
    donor = session.scalar(
        select(Rendition)
        .join(Material, Rendition.material_id == Material.id)
        .where(
            Material.original_sha256 == material.original_sha256,
            Material.id != material.id,
            Rendition.profile == rendition.profile,
            Rendition.fingerprint == profile.fingerprint,
            Rendition.status.in_(("ready", "skipped")),
            or_(Rendition.status == "skipped", Rendition.blob_sha256.is_not(None)),
        )
        .order_by(Rendition.id)
        .limit(1)
    )
    if donor is None:
        return False
    for name in (
        "status",
        "blob_sha256",
        "bytes",
        "kbps",
        "width",
        "height",
        "duration",
        "ssim",
        "quality",
        "fingerprint",
    ):
        setattr(rendition, name, getattr(donor, name))
    rendition.progress = 100
    rendition.error = ""
    log.info("rendition %s reuses %s (same original, same %s settings)", rendition.id, donor.id, donor.profile)
    return True


class _Progress:
    """Write progress at most every few seconds: the database is shared with the web."""

    def __init__(self, database: Database, rendition_id: int) -> None:
        self.database = database
        self.rendition_id = rendition_id
        self.last = 0.0
        self.renewed = 0.0

    def __call__(self, percent: float) -> None:
        now = time.monotonic()
        if now - self.last < 2 and percent < 100:
            return
        self.last = now
        with self.database.session() as session:
            rendition = session.get(Rendition, self.rendition_id)
            if rendition is not None:
                rendition.progress = int(min(100, max(0, percent)))
                rendition.updated_at = utcnow()  # renews this worker's lease (see _claim)
                _update_material_progress(rendition.material)
                session.commit()

    def renew(self, _percent: float) -> None:
        """Keep the lease through a step that shows no progress of its own (the SSIM check).

        Measuring a 45-minute lesson decodes the whole source again and can take
        longer than the lease; without this, the sweeper would hand the rendition
        to a second worker while the first is still on it.
        """
        now = time.monotonic()
        if now - self.renewed < 2:
            return
        self.renewed = now
        with self.database.session() as session:
            session.execute(
                update(Rendition)
                .where(Rendition.id == self.rendition_id, Rendition.status == "processing")
                .values(updated_at=utcnow())
            )
            session.commit()


def build_rendition(
    database: Database,
    storage: Storage,
    rendition_id: int,
    limits: ffmpeg.MediaLimits,
    *,
    lease: int,
) -> str:
    """Make one rendition; returns its final status (or "busy" when another worker has it)."""
    with database.session() as session:
        rendition = session.get(Rendition, rendition_id)
        if rendition is None:
            return "gone"
        if rendition.status in ("ready", "skipped"):
            return rendition.status  # a redelivered message for finished work
        if not _claim(session, rendition_id, lease):
            return "busy"
        session.refresh(rendition)
        if _reuse(session, rendition, rendition.material):
            # Another material of the same original got this rendition since it was planned
            # (the same file uploaded twice in a row): copy it rather than transcode it again.
            _settle_material(rendition.material)
            session.commit()
            return rendition.status
        profile = PROFILES[rendition.profile]
        original = rendition.material.original_sha256

    with job_directory(limits.sandbox, "render-") as tmp:
        source = tmp / "original"
        dest = tmp / f"rendition{profile.extension}"
        try:
            storage.fetch_to(original, source)
            probe = ffmpeg.probe(source, limits)
            progress = _Progress(database, rendition_id)
            info = ffmpeg.transcode(source, probe, profile, dest, on_progress=progress, limits=limits)
            if info is not None and profile.kind != "poster" and info.bytes >= probe.bytes:
                info = None  # never keep a rendition larger than its source: the original is smaller
            ssim = None
            quality_note = None
            if info is not None and profile.kind == "video":
                # Measured at the profile's full size: a rendition made smaller is scaled up, as a player shows it.
                full = info.full_plan
                width, height = (full.width, full.height) if full else (info.width or 0, info.height or 0)
                ssim = ffmpeg.ssim(source, dest, probe, width, height, limits=limits, on_progress=progress.renew)
                if info.plan is not None and full is not None:
                    quality_note = quality.describe(
                        info.plan, full, ssim=ssim, floor=profile.ssim_floor, budget_kbps=profile.budget_kbps
                    )
            stored = storage.store_file(dest) if info is not None else None
        except ffmpeg.MediaError as exc:
            if not exc.transient:
                return _finish(database, rendition_id, "failed", error=exc.reason)
            _release(database, rendition_id)
            raise
        except Exception:
            # Storage or disk trouble: let the retry (or another worker) take it at once.
            _release(database, rendition_id)
            raise

    if info is None or stored is None:
        return _finish(database, rendition_id, "skipped")
    with database.session() as session:
        if session.get(Blob, stored.sha256) is None:
            session.add(Blob(sha256=stored.sha256, size=stored.size, media_type=info.mime_type))
            session.commit()
    status = _finish(
        database, rendition_id, "ready", sha256=stored.sha256, info=info, ssim=ssim, quality_note=quality_note
    )
    if status == "gone":
        # The material was deleted or its original replaced while this was made: the bytes
        # just stored are nobody's, unless another material has the same ones.
        with database.session() as session:
            forget_blobs_later(session, [stored.sha256])
            session.commit()
    return status


def _claim(session: Session, rendition_id: int, lease: int) -> bool:
    """Take the rendition for this worker, unless a live worker already has it.

    A worker holding a rendition touches ``updated_at`` with every progress
    write (at least every few seconds while ffmpeg advances, which it must:
    ffmpeg.py kills a stalled transcode). A row left ``processing`` and silent
    for ``lease`` seconds belongs to a dead worker and may be taken over. The
    conditional UPDATE makes the claim atomic on SQLite and PostgreSQL alike, so
    a message delivered twice never runs two transcodes of one rendition.
    """
    now = utcnow()
    claimed = session.execute(
        update(Rendition)
        .where(
            Rendition.id == rendition_id,
            or_(
                Rendition.status.in_(("pending", "failed")),
                and_(Rendition.status == "processing", Rendition.updated_at < now - timedelta(seconds=lease)),
            ),
        )
        .values(status="processing", progress=0, error="", updated_at=now)
    )
    session.commit()
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def _release(database: Database, rendition_id: int) -> None:
    with database.session() as session:
        session.execute(
            update(Rendition)
            .where(Rendition.id == rendition_id, Rendition.status == "processing")
            .values(status="pending", progress=0)
        )
        session.commit()


def requeue_stalled(session: Session, lease: int) -> int:
    """Re-enqueue work whose worker died or whose message the broker lost.

    Called by the periodic sweeper. Renditions ``processing`` past their lease
    and ``pending`` ones untouched for a long while are sent again; touching
    ``updated_at`` keeps a backlog from being re-sent on every sweep. A
    duplicate message is harmless: :func:`_claim` lets only one worker run.
    """
    now = utcnow()
    lost = now - timedelta(seconds=lease * PENDING_LEASES)
    stalled = list(
        session.scalars(
            select(Rendition)
            .where(
                or_(
                    and_(Rendition.status == "processing", Rendition.updated_at < now - timedelta(seconds=lease)),
                    and_(Rendition.status == "pending", Rendition.updated_at < lost),
                )
            )
            .limit(500)
        )
    )
    for rendition in stalled:
        # Back to pending: the dead worker's claim is released, so the next
        # delivery can take it, and the fresh updated_at stops a re-send per sweep.
        rendition.status = "pending"
        rendition.updated_at = now
        jobs.enqueue(session, build_task(rendition.material.kind), rendition.id)
    waiting = list(
        session.scalars(select(Material).where(Material.status == "pending", Material.updated_at < lost).limit(500))
    )
    for material in waiting:
        material.updated_at = now
        jobs.enqueue(session, process_task(material.kind), material.id)
    session.commit()
    return len(stalled) + len(waiting)


def _finish(
    database: Database,
    rendition_id: int,
    status: str,
    *,
    error: str = "",
    sha256: str | None = None,
    info: ffmpeg.RenditionInfo | None = None,
    ssim: float | None = None,
    quality_note: dict[str, Any] | None = None,
) -> str:
    with database.session() as session:
        rendition = session.get(Rendition, rendition_id)
        if rendition is None:
            return "gone"
        rendition.status = status
        rendition.error = error
        rendition.progress = 100
        rendition.blob_sha256 = sha256
        if info is not None:
            rendition.bytes = info.bytes
            rendition.kbps = info.kbps
            rendition.width = info.width
            rendition.height = info.height
            rendition.duration = info.duration
        rendition.ssim = ssim
        rendition.quality = quality_note
        if status in ("ready", "skipped"):
            rendition.fingerprint = PROFILES[rendition.profile].fingerprint
        _settle_material(rendition.material)
        session.commit()
    return status


def _update_material_progress(material: Material) -> None:
    renditions = material.renditions
    if renditions:
        material.progress = int(sum(r.progress for r in renditions) / len(renditions))


def _settle_material(material: Material) -> None:
    """A material is ready when every rendition is settled; failed if any failed."""
    _update_material_progress(material)
    if not all(r.status in SETTLED for r in material.renditions):
        return
    failed = [r for r in material.renditions if r.status == "failed"]
    if failed:
        material.status = "failed"
        material.error = "; ".join(f"{r.profile}: {r.error}" for r in failed)
    else:
        material.status = "ready"
        material.progress = 100


def reprocess_profile(session: Session, profile: str) -> list[int]:
    """Redo one profile for every material, after the ladder changed.

    Existing renditions of the profile go back to pending and are queued;
    materials that could have the profile but lack it are probed again, which
    adds it. Outputs are content-addressed, so a redo that produces the same
    bytes stores nothing new. Returns the rendition ids queued.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    renditions = list(session.scalars(select(Rendition).where(Rendition.profile == profile)))
    for rendition in renditions:
        rendition.status = "pending"
        rendition.progress = 0
        rendition.material.status = "processing"
        jobs.enqueue(session, build_task(rendition.material.kind), rendition.id)
    lacking = session.scalars(
        select(Material).where(
            Material.kind.in_(PROFILES[profile].sources),
            Material.status.in_(("ready", "failed")),
            ~select(Rendition.id).where(Rendition.material_id == Material.id, Rendition.profile == profile).exists(),
        )
    )
    for material in lacking:
        material.status = "pending"
        jobs.enqueue(session, process_task(material.kind), material.id)
    session.commit()
    return [r.id for r in renditions]
