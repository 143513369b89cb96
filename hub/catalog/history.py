"""A course's history (who changed its status, when) and the regions reviewers answer for.

Used by the catalog services (publish, withdraw) and by the review step
(hub.catalog.review) alike, so every transition is logged whether review is
required or not.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from hub.accounts.models import School, User
from hub.catalog.models import Course, CourseEvent


def review_required(session: Session) -> bool:
    """HUB_REVIEW_REQUIRED of the hub whose session this is.

    Read here, not passed in by each adapter, so that no way of publishing (API, page,
    command, a future one) can skip the review by forgetting to ask. Every session the
    app makes carries the app (hub.jobs); one made without it (a bare script) publishes
    as before.
    """
    app = session.info.get("hub.app")
    return bool(app is not None and app.extensions["hub.settings"].review_required)


def log_event(session: Session, course: Course, action: str, actor: User | None, note: str = "") -> CourseEvent:
    event = CourseEvent(
        course_id=course.id,
        action=action,
        actor_id=actor.id if actor else None,
        actor_email=actor.email if actor else "",
        note=note,
    )
    session.add(event)
    return event


def events(session: Session, course_id: int) -> list[CourseEvent]:
    """The course's history, oldest first."""
    return list(session.scalars(select(CourseEvent).where(CourseEvent.course_id == course_id).order_by(CourseEvent.id)))


def last_return(session: Session, course: Course) -> CourseEvent | None:
    """The reviewer's return the uploader still has to act on: the last event, while the course is a draft."""
    if course.status != "draft":
        return None
    last = session.scalar(
        select(CourseEvent).where(CourseEvent.course_id == course.id).order_by(CourseEvent.id.desc()).limit(1)
    )
    return last if last is not None and last.action == "returned" else None


def in_region(region: str) -> ColumnElement[bool]:
    """Courses of the schools in ``region`` or in a place inside it ("四川省" covers "四川省 成都市")."""
    return Course.school_id.in_(
        select(School.id).where(or_(School.region == region, School.region.startswith(region + " ", autoescape=True)))
    )


def region_covers(region: str, school_region: str) -> bool:
    return bool(region) and (school_region == region or school_region.startswith(region + " "))
