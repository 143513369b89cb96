"""Subtitle use cases: one function each, shared by the API, the uploader's page, sync and search.

Visibility and permissions are the catalog's: a subtitle is readable where its
material is, and only the owning school's uploaders and admins attach or remove one.
A subtitle is stored only once it passed every check (hub.subtitles.webvtt), as the
normalised UTF-8 .vtt blob named by its sha256; a refused file leaves nothing behind.
Adding or removing one re-indexes the course after commit, so its words are found.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.catalog import services as catalog
from hub.catalog.models import Course, Lesson, Material
from hub.errors import Invalid, NotFound, PermissionDenied, Unauthorized
from hub.i18n import N_
from hub.media.models import Blob
from hub.media.storage import Storage, is_sha256
from hub.search import changes as search_changes
from hub.subtitles import webvtt
from hub.subtitles.models import Subtitle
from hub.vocab import LANGUAGES

MEDIA_TYPE = "text/vtt"
KINDS = ("video", "audio")
"""Materials that play, and so can have subtitles."""
DEFAULT_LABELS = {"zh": "中文", "en": "English"}
"""A track's label when the uploader gives none: each in its own language, as players list them."""
MAX_LABEL = 100


def material_duration(material: Material) -> float | None:
    """The length of the material's playable renditions, when the pipeline measured it."""
    durations = [
        r.duration
        for r in material.renditions
        if r.status == "ready" and r.duration and (r.profile.startswith("video-") or r.profile == "audio")
    ]
    return max(durations) if durations else None


def _editable_material(session: Session, actor: User | None, material_id: int) -> Material:
    material = catalog.get_material(session, actor, material_id)
    if actor is None:
        raise Unauthorized(N_("Sign in to change courses."))
    if not catalog.can_edit(actor, material.lesson.course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    return material


def attach_subtitle(
    session: Session,
    storage: Storage,
    actor: User | None,
    material_id: int,
    data: bytes,
    *,
    language: str,
    label: str = "",
) -> Subtitle:
    """Check, convert and store a subtitle file for a video or audio material; replaces its track in `language`."""
    material = _editable_material(session, actor, material_id)
    if material.kind not in KINDS:
        raise Invalid(
            N_("Subtitles go with video or audio materials; this one is a %(kind)s."),
            {"material": N_("Not video or audio")},
            kind=material.kind,
        )
    if language not in LANGUAGES:
        raise Invalid(N_("The subtitle language must be zh or en."), {"language": N_("zh or en")})
    label = " ".join(label.split())
    if len(label) > MAX_LABEL:
        raise Invalid(N_("A subtitle label has at most 100 characters."), {"label": N_("At most 100 characters")})
    parsed = webvtt.normalise(data, duration=material_duration(material), language=language)
    vtt = parsed.vtt()
    stored = storage.store(io.BytesIO(vtt))
    blob = session.get(Blob, stored.sha256)
    if blob is None:
        blob = Blob(sha256=stored.sha256, size=stored.size, media_type=MEDIA_TYPE)
        session.add(blob)
    subtitle = next((s for s in material.subtitles if s.language == language), None)
    if subtitle is None:
        subtitle = Subtitle(language=language)
        material.subtitles.append(subtitle)
    subtitle.label = label or DEFAULT_LABELS[language]
    subtitle.blob = blob
    subtitle.blob_sha256 = blob.sha256
    subtitle.cues = len(parsed.cues)
    subtitle.transcript = parsed.transcript()
    session.flush()
    search_changes.reindex(session, [material.lesson.course_id])
    return subtitle


def list_subtitles(session: Session, actor: User | None, material_id: int) -> list[Subtitle]:
    """The material's tracks, by language; NotFound where the material is not visible."""
    return list(catalog.get_material(session, actor, material_id).subtitles)


def delete_subtitle(session: Session, actor: User | None, material_id: int, language: str) -> None:
    """Remove the material's track in `language` (the blob stays: blobs are shared by content)."""
    material = _editable_material(session, actor, material_id)
    subtitle = next((s for s in material.subtitles if s.language == language), None)
    if subtitle is None:
        raise NotFound(N_("Material %(id)s has no subtitles in %(language)s."), id=material_id, language=language)
    material.subtitles.remove(subtitle)
    # Deleted by name, not only as an orphan: the flush then lists it in session.deleted, where
    # hub.catalog.models stamps its lesson as changed (sync re-sends the lesson).
    session.delete(subtitle)
    session.flush()
    search_changes.reindex(session, [material.lesson.course_id])


def get_readable_track(session: Session, actor: User | None, sha256: str) -> Blob:
    """The .vtt blob `sha256` when some subtitle in a course `actor` may see uses it; NotFound otherwise."""
    if not is_sha256(sha256) or not readable_subtitle_blobs(session, actor, [sha256]):
        raise NotFound(N_("There is no such file."))
    blob = session.get(Blob, sha256)
    if blob is None:
        raise NotFound(N_("There is no such file."))
    return blob


def readable_subtitle_blobs(session: Session, actor: User | None, shas: Sequence[str]) -> set[str]:
    """Which of `shas` are subtitle blobs of a course `actor` may see (for blob downloads and sync)."""
    if not shas:
        return set()
    return set(
        session.scalars(
            select(Subtitle.blob_sha256)
            .join(Material, Material.id == Subtitle.material_id)
            .join(Lesson, Lesson.id == Material.lesson_id)
            .join(Course, Course.id == Lesson.course_id)
            .where(Subtitle.blob_sha256.in_(list(shas)), catalog.visible_clause(actor))
        )
    )
