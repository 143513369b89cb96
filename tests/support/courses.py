"""A published course with renditions of random bytes: enough to build course ZIPs from."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson, Material
from hub.media.models import Blob, Rendition
from hub.media.storage import Storage


@dataclass
class SeededCourse:
    course_id: int
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 → bytes
    by_role: dict[str, str] = field(default_factory=dict)  # "video-240p", "doc-original", … → sha256
    material_ids: dict[str, int] = field(default_factory=dict)
    lesson_ids: list[int] = field(default_factory=list)


def _blob(storage: Storage, session: Session, seeded: SeededCourse, role: str, size: int, media_type: str) -> Blob:
    data = os.urandom(size)
    stored = storage.store(io.BytesIO(data))
    blob = session.get(Blob, stored.sha256) or Blob(sha256=stored.sha256, size=stored.size, media_type=media_type)
    session.add(blob)
    seeded.blobs[stored.sha256] = data
    seeded.by_role[role] = stored.sha256
    return blob


def seed_course(
    storage: Storage, session: Session, school_id: int, status: str = "published", title: str = "一元二次方程"
) -> SeededCourse:
    """Lesson 1: a video with 360p, 240p, audio and poster renditions ready.
    Lesson 2: a PDF with its document rendition, an image whose rendition was skipped
    (the original is kept), and a video still processing (nothing to download yet)."""
    seeded = SeededCourse(course_id=0)
    with session.no_autoflush:  # blob look-ups must not flush half-built materials
        return _seed(storage, session, seeded, school_id, status, title)


def _seed(
    storage: Storage, session: Session, seeded: SeededCourse, school_id: int, status: str, title: str
) -> SeededCourse:
    course = Course(
        school_id=school_id,
        title=title,
        summary="配方法、公式法",
        category="curriculum",
        subject="math",
        grades_mask=1 << 9,
        edition="人教版",
        volume="上册",
        language="zh",
        license="CC-BY-SA-4.0",
        teacher="王老师",
        status=status,
    )
    first = Lesson(course=course, position=1, title="配方法", unit="第二十一章")
    second = Lesson(course=course, position=2, title="公式法")
    session.add_all([course, first, second])

    video = Material(
        lesson=first,
        kind="video",
        title="配方法讲解",
        filename="lesson.mov",
        original=_blob(storage, session, seeded, "video-original", 90_000, "video/mp4"),
        status="ready",
    )
    for profile, size, media_type in (
        ("video-360p", 60_000, "video/mp4"),
        ("video-240p", 30_000, "video/mp4"),
        ("audio", 8_000, "audio/mp4"),
        ("poster", 2_000, "image/jpeg"),
    ):
        blob = _blob(storage, session, seeded, profile, size, media_type)
        video.renditions.append(Rendition(profile=profile, status="ready", blob=blob, bytes=size))
    doc = Material(
        lesson=second,
        kind="document",
        title="练习题",
        filename="练习.pdf",
        original=_blob(storage, session, seeded, "doc-original", 20_000, "application/pdf"),
        status="ready",
    )
    doc_blob = _blob(storage, session, seeded, "document", 12_000, "application/pdf")
    doc.renditions.append(Rendition(profile="document", status="ready", blob=doc_blob, bytes=12_000))
    image = Material(
        lesson=second,
        kind="image",
        title="图示",
        filename="diagram.png",
        original=_blob(storage, session, seeded, "image-original", 5_000, "image/png"),
        status="ready",
    )
    image.renditions.append(Rendition(profile="image", status="skipped"))
    pending = Material(
        lesson=second,
        kind="video",
        title="还在处理",
        filename="later.mp4",
        original=_blob(storage, session, seeded, "pending-original", 4_000, "video/mp4"),
        status="processing",
    )
    pending.renditions.append(Rendition(profile="video-240p", status="processing"))
    session.add_all([video, doc, image, pending])
    session.commit()
    seeded.course_id = course.id
    seeded.lesson_ids = [first.id, second.id]
    seeded.material_ids = {"video": video.id, "doc": doc.id, "image": image.id, "pending": pending.id}
    return seeded
