"""Courses, lessons and materials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, Text, event, inspect, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from hub.accounts.models import School, User
from hub.db import Base, Timestamped, UTCDateTime, utcnow
from hub.vocab import (
    CATEGORIES,
    COURSE_EVENTS,
    COURSE_STATUSES,
    LANGUAGES,
    LICENSES,
    MATERIAL_KINDS,
    MATERIAL_STATUSES,
    SUBJECTS,
)


def _enum(values: tuple[str, ...] | list[str], name: str) -> Enum:
    # VARCHAR + CHECK rather than a native enum: same on SQLite and PostgreSQL,
    # and adding a value later is a plain migration.
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


class Course(Timestamped, Base):
    __tablename__ = "course"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(_enum(list(CATEGORIES), "course_category"))
    subject: Mapped[str] = mapped_column(_enum(list(SUBJECTS), "course_subject"), index=True)
    # Grades 1–9 as a bit set (bit g = grade g): one indexed integer filters
    # "covers grade 5" with a bitwise AND on SQLite and PostgreSQL alike.
    grades_mask: Mapped[int] = mapped_column(Integer)
    edition: Mapped[str] = mapped_column(String(50), default="")
    volume: Mapped[str] = mapped_column(String(20), default="")
    language: Mapped[str] = mapped_column(_enum(LANGUAGES, "course_language"))
    license: Mapped[str] = mapped_column(_enum(LICENSES, "course_license"))
    teacher: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(_enum(COURSE_STATUSES, "course_status"), index=True)
    # Goes up on every published change: the sync manifest's course version.
    version: Mapped[int] = mapped_column(Integer, default=1)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The textbook the course follows (hub.textbooks), if any: its lessons attach to its chapters.
    textbook_id: Mapped[int | None] = mapped_column(ForeignKey("textbook.id", ondelete="SET NULL"), index=True)

    school: Mapped[School] = relationship(lazy="joined")
    # Read-only here: services set textbook_id (hub.catalog.services checks the book fits).
    textbook: Mapped[Textbook | None] = relationship(viewonly=True)
    lessons: Mapped[list[Lesson]] = relationship(
        back_populates="course", order_by="Lesson.position", cascade="all, delete-orphan"
    )

    # What describes a course to a reader, in the order the exports (course ZIP and sync
    # manifests) write it.
    DESCRIPTIVE_FIELDS = (
        "title",
        "summary",
        "category",
        "subject",
        "grades",
        "edition",
        "volume",
        "language",
        "license",
        "teacher",
    )

    def description(self) -> dict[str, Any]:
        """The descriptive fields as plain data."""
        return {name: getattr(self, name) for name in self.DESCRIPTIVE_FIELDS}

    @property
    def grades(self) -> list[int]:
        return [g for g in range(1, 10) if self.grades_mask & (1 << g)]

    @grades.setter
    def grades(self, grades: list[int]) -> None:
        self.grades_mask = grades_to_mask(grades)


class CourseEvent(Base):
    """One change of a course's status, with who made it and when: the course's history.

    The actor's email is kept beside the link so the history still says who when the
    account is gone. A return carries the reviewer's note to the uploader.
    """

    __tablename__ = "course_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(_enum(COURSE_EVENTS, "course_event_action"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    actor_email: Mapped[str] = mapped_column(String(254), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    actor: Mapped[User | None] = relationship(lazy="joined")


def grades_to_mask(grades: list[int]) -> int:
    mask = 0
    for grade in grades:
        mask |= 1 << grade
    return mask


class Lesson(Timestamped, Base):
    __tablename__ = "lesson"
    # Which lessons of these courses changed: read by every sync manifest (hub.sync.manifest).
    __table_args__ = (Index("ix_lesson_course_id_changed_at", "course_id", "changed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    unit: Mapped[str] = mapped_column(String(100), default="")
    # The textbook node (a 课时 or a whole section) the lesson teaches, if aligned.
    textbook_node_id: Mapped[int | None] = mapped_column(
        ForeignKey("textbook_node.id", ondelete="SET NULL"), index=True
    )
    # When the lesson or anything in it (its materials, their renditions) last changed;
    # stamped on every ORM write by _stamp_changed_lessons below. A sync upstream
    # rebuilds and re-sends only the lessons whose stamp moved.
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)

    course: Mapped[Course] = relationship(back_populates="lessons")
    # Read-only here: services set textbook_node_id (a node of the course's textbook).
    textbook_node: Mapped[TextbookNode | None] = relationship(viewonly=True)
    materials: Mapped[list[Material]] = relationship(
        back_populates="lesson", order_by="Material.id", cascade="all, delete-orphan"
    )


class Material(Timestamped, Base):
    __tablename__ = "material"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lesson.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(_enum(MATERIAL_KINDS, "material_kind"))
    title: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255), default="")
    original_sha256: Mapped[str] = mapped_column(ForeignKey("blob.sha256"), index=True)
    status: Mapped[str] = mapped_column(_enum(MATERIAL_STATUSES, "material_status"))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    # Start times (s) of the chapters found at slide changes (hub.media.chapters), ascending,
    # the first at 0; NULL until looked for (and for materials that get none: not slides).
    chapters: Mapped[list[float] | None] = mapped_column(JSON)

    lesson: Mapped[Lesson] = relationship(back_populates="materials")
    original: Mapped[Blob] = relationship(lazy="joined")
    renditions: Mapped[list[Rendition]] = relationship(
        back_populates="material", order_by="Rendition.id", cascade="all, delete-orphan"
    )
    subtitles: Mapped[list[Subtitle]] = relationship(
        back_populates="material", order_by="Subtitle.language", cascade="all, delete-orphan"
    )


# Registers the hook that keeps harvest records (OAI-PMH) in step with every catalog write.
import hub.harvest.models  # noqa: E402, F401
from hub.media.models import Blob, Rendition  # noqa: E402  (mutual relationship)
from hub.subtitles.models import Subtitle  # noqa: E402  (mutual relationship)
from hub.textbooks.models import Textbook, TextbookNode  # noqa: E402  (alignment relationships)

# Columns whose writes do not change what a lesson is: a running transcode writes its
# progress and renews its lease every few seconds, and that must not re-send the lesson.
_NOT_CONTENT = frozenset({"progress", "error", "created_at", "updated_at", "changed_at"})


def _content_changed(obj: object) -> bool:
    state = inspect(obj)
    return any(
        state.attrs[column.key].history.has_changes()
        for column in state.mapper.column_attrs
        if column.key not in _NOT_CONTENT
    )


@event.listens_for(Session, "after_flush")
def _stamp_changed_lessons(session: Session, _context: object) -> None:
    """Stamp `Lesson.changed_at` of every lesson whose row, materials, renditions or subtitles this flush changed.

    One place for every writer (catalog services, the media pipeline, admin
    tools), so the sync manifest can trust the stamp. In after_flush the new,
    dirty and deleted sets and their attribute histories still show what the
    flush wrote, and new rows have their ids. Writes that bypass the ORM (bulk
    UPDATEs) must stamp the lesson themselves; the pipeline's bulk UPDATEs only
    move renditions between pending and processing, which no manifest lists.
    """
    lessons: set[int] = set()
    materials: set[int] = set()
    for obj in (*session.dirty, *session.deleted, *session.new):
        if not isinstance(obj, Lesson | Material | Rendition | Subtitle) or (
            obj in session.dirty and not _content_changed(obj)
        ):
            continue
        if isinstance(obj, Lesson) and obj in session.dirty:
            lessons.add(obj.id)  # a new lesson has its stamp already; a deleted one needs none
        elif isinstance(obj, Material) and obj.lesson_id is not None:
            lessons.add(obj.lesson_id)
        elif isinstance(obj, Rendition | Subtitle) and obj.material_id is not None:
            materials.add(obj.material_id)
    if not lessons and not materials:
        return
    which: ColumnElement[bool] = Lesson.id.in_(lessons)
    if materials:
        which = or_(which, Lesson.id.in_(select(Material.lesson_id).where(Material.id.in_(materials))))
    # On the connection, not the session: a flush is under way, and the ORM must not track this row.
    session.connection().execute(update(Lesson).where(which).values(changed_at=utcnow()))
