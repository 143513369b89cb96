"""The optional review step (HUB_REVIEW_REQUIRED): submit, approve, return, the reviewers' queue.

A bureau may require that a course is looked at before every school can see it.
Then an uploader's "publish" submits the course (hub.catalog.services.publish_course);
a reviewer — a user with the reviewer role, answering for a region — previews it
(the catalog's read rules let them see submitted courses of their region, lessons
and materials included), then approves it (it is published as an uploader's
publish would: new version, search index, school servers) or returns it to a
draft with a note the uploader reads on the course page. Admins may review any
course. Every step is in the course's history (hub.catalog.history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from hub.accounts.models import User
from hub.catalog import history, services
from hub.catalog.models import Course, CourseEvent, Lesson, Material
from hub.errors import Conflict, Invalid, NotFound, PermissionDenied, Unauthorized
from hub.i18n import N_

NOTE_MAX = 2000


def can_review(actor: User | None, course: Course) -> bool:
    if actor is None:
        return False
    return actor.is_admin or history.region_covers(actor.review_region, course.school.region)


def _reviewable(session: Session, actor: User | None, course_id: int) -> Course:
    """The course, when ``actor`` may review it and it waits for review; 403 for a reviewer of another region."""
    course = _for_reviewer(session, actor, course_id)
    if course.status != "submitted":
        raise Conflict(N_("This course is not waiting for review."))
    return course


def _for_reviewer(session: Session, actor: User | None, course_id: int) -> Course:
    if actor is None:
        raise Unauthorized(N_("Sign in to review courses."))
    if not (actor.is_admin or actor.role == "reviewer"):
        raise PermissionDenied(N_("Only reviewers and admins review courses."))
    course = session.get(Course, course_id)
    if course is None:
        raise NotFound(N_("There is no course %(id)s."), id=course_id)
    if not can_review(actor, course):
        raise PermissionDenied(N_("This course is from a school outside the region you review."))
    return course


@dataclass(frozen=True)
class Preview:
    """What a reviewer looks at: the course, every lesson and material (published or not), its history."""

    course: Course
    lessons: list[Lesson]
    events: list[CourseEvent]


def preview_course(session: Session, actor: User | None, course_id: int) -> Preview:
    course = _for_reviewer(session, actor, course_id)
    lessons = session.scalars(
        select(Lesson)
        .where(Lesson.course_id == course.id)
        .order_by(Lesson.position, Lesson.id)
        .options(selectinload(Lesson.materials).selectinload(Material.renditions))
    )
    return Preview(course, list(lessons), history.events(session, course.id))


def submit_course(session: Session, actor: User | None, course_id: int) -> Course:
    """Ask for a review, whether or not HUB_REVIEW_REQUIRED makes it the only way to publish."""
    course = services.get_course(session, actor, course_id)
    if actor is None:
        raise Unauthorized(N_("Sign in to change courses."))
    if not services.can_edit(actor, course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    if course.status == "submitted":
        return course
    if course.status == "published":
        raise Conflict(N_("The course is published already."))
    if not course.lessons:
        raise Conflict(N_("Add at least one lesson before publishing the course."))
    course.status = "submitted"
    history.log_event(session, course, "submitted", actor)
    session.flush()
    return course


def approve_course(session: Session, actor: User | None, course_id: int) -> Course:
    course = _reviewable(session, actor, course_id)
    services.make_published(session, course, actor, "approved")
    return course


def return_course(session: Session, actor: User | None, course_id: int, note: str) -> Course:
    course = _reviewable(session, actor, course_id)
    note = note.strip()
    if not note or len(note) > NOTE_MAX:
        raise Invalid(
            N_("Say what the uploader should change, in at most 2000 characters."),
            {"note": N_("1 to 2000 characters")},
        )
    course.status = "draft"
    history.log_event(session, course, "returned", actor, note)
    session.flush()
    return course


@dataclass(frozen=True)
class QueueItem:
    course: Course
    lessons: int
    submitted_at: datetime | None
    submitted_by: str


def review_queue(session: Session, actor: User | None) -> list[QueueItem]:
    """Courses waiting for ``actor``'s review, the longest-waiting first."""
    if actor is None:
        raise Unauthorized(N_("Sign in to review courses."))
    if not (actor.is_admin or actor.role == "reviewer"):
        raise PermissionDenied(N_("Only reviewers and admins review courses."))
    conditions = [Course.status == "submitted"]
    if not actor.is_admin:
        if not actor.review_region:
            return []
        conditions.append(history.in_region(actor.review_region))
    lessons = select(func.count(Lesson.id)).where(Lesson.course_id == Course.id).scalar_subquery()
    rows = session.execute(select(Course, lessons).where(*conditions)).all()
    # The submission each course waits on: its last "submitted" event.
    last: dict[int, CourseEvent] = {}
    for event in session.scalars(
        select(CourseEvent)
        .where(CourseEvent.course_id.in_([c.id for c, _ in rows]), CourseEvent.action == "submitted")
        .order_by(CourseEvent.id)
    ):
        last[event.course_id] = event
    items = [
        QueueItem(
            course,
            n,
            last[course.id].at if course.id in last else None,
            last[course.id].actor_email if course.id in last else "",
        )
        for course, n in rows
    ]
    return sorted(items, key=lambda i: (i.submitted_at is not None, i.submitted_at or 0, i.course.id))


def course_history(session: Session, actor: User | None, course_id: int) -> list[CourseEvent]:
    """Who changed the course's status, and when: for its school's uploaders, admins and its reviewers."""
    course = services.get_course(session, actor, course_id)
    if not (services.can_edit(actor, course) or can_review(actor, course)):
        raise PermissionDenied(N_("Only the school's uploaders and the course's reviewers can see its history."))
    return history.events(session, course_id)
