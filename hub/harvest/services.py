"""Harvest use cases: the queries behind OAI-PMH, the sitemap and the JSON-LD descriptions.

Every list is paginated in SQL: OAI-PMH pages by keyset on (datestamp, course id),
so a page costs the same at the start and the end of a 100,000-course harvest and
a course that changes mid-harvest moves to the end instead of being skipped; the
sitemap pages by id. Nothing loads the whole catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.catalog.models import Course, Lesson, Material
from hub.harvest.models import HarvestRecord
from hub.media.models import Blob, Rendition


@dataclass(frozen=True)
class RecordQuery:
    """Which records a harvest asks for: a datestamp range and at most one set."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    subject: str | None = None
    school_id: int | None = None
    # The parent sets `subject` and `school`: every record that has one.
    any_subject: bool = False
    any_school: bool = False
    # The last record of the previous page (datestamp, course id): the page starts after it.
    after: tuple[datetime, int] | None = None


def _conditions(query: RecordQuery, *, with_cursor: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.start is not None:
        conditions.append(HarvestRecord.datestamp >= query.start)
    if query.end is not None:
        conditions.append(HarvestRecord.datestamp < query.end)
    if query.subject is not None:
        conditions.append(HarvestRecord.subject == query.subject)
    if query.school_id is not None:
        conditions.append(HarvestRecord.school_id == query.school_id)
    if query.any_subject:
        conditions.append(HarvestRecord.subject.is_not(None))
    if query.any_school:
        conditions.append(HarvestRecord.school_id.is_not(None))
    if with_cursor and query.after is not None:
        stamp, course_id = query.after
        conditions.append(
            or_(
                HarvestRecord.datestamp > stamp,
                (HarvestRecord.datestamp == stamp) & (HarvestRecord.course_id > course_id),
            )
        )
    return conditions


def count_records(session: Session, query: RecordQuery) -> int:
    """How many records the whole list holds (OAI-PMH completeListSize), cursor aside."""
    conditions = _conditions(query, with_cursor=False)
    return session.scalar(select(func.count()).select_from(HarvestRecord).where(*conditions)) or 0


def page_records(session: Session, query: RecordQuery, limit: int) -> list[HarvestRecord]:
    """Up to ``limit`` records after the query's cursor, oldest change first."""
    return list(
        session.scalars(
            select(HarvestRecord)
            .where(*_conditions(query, with_cursor=True))
            .order_by(HarvestRecord.datestamp, HarvestRecord.course_id)
            .limit(limit)
        )
    )


def get_record(session: Session, course_id: int) -> HarvestRecord | None:
    return session.get(HarvestRecord, course_id)


def earliest_datestamp(session: Session) -> datetime | None:
    return session.scalar(select(func.min(HarvestRecord.datestamp)))


@dataclass(frozen=True)
class CourseMetadata:
    """What a record's metadata says beyond the course row: its lessons' renditions' media types."""

    course: Course
    formats: list[str]


def public_courses(session: Session, course_ids: list[int]) -> dict[int, CourseMetadata]:
    """The published courses among ``course_ids``, with their schools and media types, in two queries."""
    if not course_ids:
        return {}
    courses = session.scalars(select(Course).where(Course.id.in_(course_ids), Course.status == "published")).all()
    formats: dict[int, list[str]] = {c.id: [] for c in courses}
    for course_id, media_type in session.execute(
        select(Lesson.course_id, Blob.media_type)
        .distinct()
        .select_from(Rendition)
        .join(Material, Material.id == Rendition.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Blob, Blob.sha256 == Rendition.blob_sha256)
        .where(Lesson.course_id.in_(list(formats)), Rendition.status == "ready")
        .order_by(Lesson.course_id, Blob.media_type)
    ):
        formats[course_id].append(media_type)
    return {c.id: CourseMetadata(c, formats[c.id]) for c in courses}


@dataclass(frozen=True)
class HarvestSets:
    subjects: list[str]
    schools: list[tuple[int, str]]


def list_sets(session: Session) -> HarvestSets:
    """The subjects and schools that have at least one record (deleted ones included)."""
    subjects = session.scalars(
        select(HarvestRecord.subject)
        .distinct()
        .where(HarvestRecord.subject.is_not(None))
        .order_by(HarvestRecord.subject)
    ).all()
    schools = session.execute(
        select(School.id, School.name)
        .where(School.id.in_(select(HarvestRecord.school_id).where(HarvestRecord.school_id.is_not(None))))
        .order_by(School.id)
    ).all()
    return HarvestSets([s for s in subjects if s], [(i, n) for i, n in schools])


def school_exists(session: Session, school_id: int) -> bool:
    return session.get(School, school_id) is not None


# -- sitemap -----------------------------------------------------------------------


@dataclass(frozen=True)
class SitemapCounts:
    courses: int
    lessons: int


def sitemap_counts(session: Session) -> SitemapCounts:
    courses = session.scalar(select(func.count()).select_from(Course).where(Course.status == "published")) or 0
    lessons = (
        session.scalar(select(func.count()).select_from(Lesson).join(Course).where(Course.status == "published")) or 0
    )
    return SitemapCounts(courses, lessons)


def sitemap_courses(session: Session, offset: int, limit: int) -> list[tuple[int, datetime]]:
    """(course id, last change) of published courses, by id; the last change is the harvest datestamp."""
    rows = session.execute(
        select(Course.id, func.coalesce(HarvestRecord.datestamp, Course.updated_at))
        .outerjoin(HarvestRecord, HarvestRecord.course_id == Course.id)
        .where(Course.status == "published")
        .order_by(Course.id)
        .offset(offset)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows]


def sitemap_lessons(session: Session, offset: int, limit: int) -> list[tuple[int, datetime]]:
    """(lesson id, last change) of the lessons of published courses, by id."""
    rows = session.execute(
        select(Lesson.id, func.coalesce(Lesson.changed_at, Lesson.updated_at))
        .join(Course)
        .where(Course.status == "published")
        .order_by(Lesson.id)
        .offset(offset)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows]
