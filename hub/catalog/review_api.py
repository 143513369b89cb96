"""JSON API of the review step and of a course's history: parse, call one service, serialise."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from flask import Blueprint
from pydantic import BaseModel, Field

from hub.accounts.auth import require_user
from hub.api import PREFIX, Strict, operation
from hub.catalog import review
from hub.catalog.api import course_out
from hub.catalog.models import Course, CourseEvent
from hub.catalog.schemas import CourseOut
from hub.db import request_session

blueprint = Blueprint("review_api", __name__, url_prefix=PREFIX)


class ReturnIn(Strict):
    note: Annotated[str, Field(min_length=1, max_length=review.NOTE_MAX, description="What the uploader should change")]


class EventOut(BaseModel):
    action: str = Field(description="submitted, approved, returned, published or withdrawn")
    at: datetime
    by: str = Field(description="The email of who did it; empty when unknown")
    note: str = Field(description="A return's note to the uploader; empty otherwise")


class HistoryOut(BaseModel):
    items: list[EventOut]


class QueueItemOut(BaseModel):
    course: CourseOut
    submitted_at: datetime | None
    submitted_by: str


class QueueOut(BaseModel):
    items: list[QueueItemOut]


def _event_out(event: CourseEvent) -> EventOut:
    return EventOut(action=event.action, at=event.at, by=event.actor_email, note=event.note)


def _commit(course: Course) -> CourseOut:
    request_session().commit()
    return course_out(course)


@operation(
    blueprint,
    "/courses/<int:course_id>/submit",
    "POST",
    summary="Submit a course for review (publish does this when HUB_REVIEW_REQUIRED is on)",
    response=CourseOut,
    auth=True,
)
def submit_course(course_id: int) -> CourseOut:
    return _commit(review.submit_course(request_session(), require_user(), course_id))


@operation(
    blueprint,
    "/courses/<int:course_id>/approve",
    "POST",
    summary="Approve a submitted course: it is published (reviewers of its school's region, admins)",
    response=CourseOut,
    auth=True,
)
def approve_course(course_id: int) -> CourseOut:
    return _commit(review.approve_course(request_session(), require_user(), course_id))


@operation(
    blueprint,
    "/courses/<int:course_id>/return",
    "POST",
    summary="Return a submitted course to its uploaders as a draft, with a note",
    body=ReturnIn,
    response=CourseOut,
    auth=True,
)
def return_course(course_id: int, body: ReturnIn) -> CourseOut:
    return _commit(review.return_course(request_session(), require_user(), course_id, body.note))


@operation(
    blueprint,
    "/courses/<int:course_id>/history",
    "GET",
    summary="Who changed the course's status, and when (its school's uploaders, admins, its reviewers)",
    response=HistoryOut,
    auth=True,
)
def course_history(course_id: int) -> HistoryOut:
    events = review.course_history(request_session(), require_user(), course_id)
    return HistoryOut(items=[_event_out(e) for e in events])


@operation(
    blueprint,
    "/review/queue",
    "GET",
    summary="Courses waiting for the caller's review, the longest-waiting first",
    response=QueueOut,
    auth=True,
)
def review_queue() -> QueueOut:
    items = review.review_queue(request_session(), require_user())
    return QueueOut(
        items=[
            QueueItemOut(
                course=course_out(i.course, i.lessons), submitted_at=i.submitted_at, submitted_by=i.submitted_by
            )
            for i in items
        ]
    )
