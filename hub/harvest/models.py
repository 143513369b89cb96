"""One harvest record per course that is or was public, and the hook that keeps it current.

OAI-PMH asks two things the catalog tables cannot answer cheaply: *when did this
course last change*, counting its lessons and their media (a lesson edit does not
touch the course row), and *which courses went away* (a deleted course leaves no
row). :class:`HarvestRecord` answers both: its ``datestamp`` moves whenever the
course, one of its lessons, materials, renditions or subtitles, or its school's
name changes; a course that stops being public (withdrawn, deleted, or any status
but ``published``) keeps its record, marked ``deleted``. That is what lets
``Identify`` declare ``deletedRecord=persistent`` honestly.

A course that was never published never gets a record: drafts do not exist for
harvesters, not even as deletions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class HarvestRecord(Base):
    __tablename__ = "harvest_record"
    # Harvests page through records in (datestamp, course_id) order, from/until on datestamp.
    __table_args__ = (Index("ix_harvest_record_datestamp_course_id", "datestamp", "course_id"),)

    # No foreign key: the record outlives a deleted course, as its tombstone.
    course_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The sets a record belongs to, kept for deleted records too (a harvester following
    # one school's set must hear that its course went). NULL only for tombstones of
    # courses deleted before records were kept (migration 0012).
    school_id: Mapped[int | None] = mapped_column(Integer, index=True)
    subject: Mapped[str | None] = mapped_column(String(32), index=True)
    datestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


def _upsert(session: Session, course_id: int, school_id: int, subject: str, now: datetime) -> None:
    """Insert or refresh a public course's record (one statement: no race between two writers)."""
    values = {"course_id": course_id, "school_id": school_id, "subject": subject, "datestamp": now, "deleted": False}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(HarvestRecord).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[HarvestRecord.course_id],
        set_={k: v for k, v in values.items() if k != "course_id"},
    )
    session.connection().execute(statement)


@event.listens_for(Session, "after_flush")
def _stamp_harvest_records(session: Session, _context: object) -> None:
    """Move the datestamp of every course record this flush changed; mark those no longer public deleted.

    Runs beside ``hub.catalog.models._stamp_changed_lessons`` and judges "changed" the
    same way (a transcode's progress and lease writes are not changes). Writes go
    through the connection: a flush is under way and the ORM must not track them.
    """
    from hub.accounts.models import School
    from hub.catalog.models import Course, Lesson, Material, _content_changed
    from hub.media.models import Rendition
    from hub.subtitles.models import Subtitle

    courses: set[int] = set()  # something below the course changed
    lessons: set[int] = set()
    materials: set[int] = set()
    schools: set[int] = set()
    now = utcnow()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if not isinstance(obj, Course | Lesson | Material | Rendition | Subtitle | School):
            continue
        if obj in session.dirty and not _content_changed(obj):
            continue
        if isinstance(obj, Course):
            if obj in session.deleted or obj.status != "published":
                # Once: a withdrawn course edited again is still the same deletion.
                session.connection().execute(
                    update(HarvestRecord)
                    .where(HarvestRecord.course_id == obj.id, HarvestRecord.deleted.is_(False))
                    .values(deleted=True, datestamp=now)
                )
            else:
                _upsert(session, obj.id, obj.school_id, obj.subject, now)
        elif isinstance(obj, Lesson):
            if obj.course_id is not None:
                courses.add(obj.course_id)
        elif isinstance(obj, Material):
            if obj.lesson_id is not None:
                lessons.add(obj.lesson_id)
        elif isinstance(obj, Rendition | Subtitle):
            if obj.material_id is not None:
                materials.add(obj.material_id)
        elif obj in session.dirty:  # a school renamed: its courses' publisher changed
            schools.add(obj.id)
    clauses = []
    if courses:
        clauses.append(HarvestRecord.course_id.in_(courses))
    if lessons:
        clauses.append(HarvestRecord.course_id.in_(select(Lesson.course_id).where(Lesson.id.in_(lessons))))
    if materials:
        of_materials = select(Lesson.course_id).join(Material, Material.lesson_id == Lesson.id)
        clauses.append(HarvestRecord.course_id.in_(of_materials.where(Material.id.in_(materials))))
    if schools:
        clauses.append(HarvestRecord.school_id.in_(schools))
    for clause in clauses:
        session.connection().execute(
            update(HarvestRecord).where(clause, HarvestRecord.deleted.is_(False)).values(datestamp=now)
        )
