"""The reviewers' pages: the queue of submitted courses, a course's preview, approve and return.

Plain forms, no JavaScript, like the uploader's pages.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.catalog import licences, review
from hub.catalog.views import course_attribution
from hub.db import request_session
from hub.errors import HubError

blueprint = Blueprint("review", __name__, url_prefix="/review")


def _signed_in() -> Response | None:
    if current_user() is None:
        return redirect(url_for("accounts.login", next=request.path))
    return None


@blueprint.get("/")
def queue_page() -> Response | str:
    if (login := _signed_in()) is not None:
        return login
    items = review.review_queue(request_session(), current_user())
    return render_template("review/queue.html", items=items)


@blueprint.get("/courses/<int:course_id>")
def course_page(course_id: int) -> Response | tuple[str, int]:
    if (login := _signed_in()) is not None:
        return login
    return _preview(course_id)


def _preview(course_id: int, error: HubError | None = None, note: str = "") -> tuple[str, int]:
    preview = review.preview_course(request_session(), current_user(), course_id)
    return render_template(
        "review/course.html",
        course=preview.course,
        lessons=preview.lessons,
        events=preview.events,
        licence=licences.licence(preview.course.license),
        attribution_line=course_attribution(preview.course),
        error=error,
        note=note,
    ), error.status if error else 200


@blueprint.post("/courses/<int:course_id>/approve")
def approve(course_id: int) -> Response | tuple[str, int]:
    if (login := _signed_in()) is not None:
        return login
    session = request_session()
    try:
        review.approve_course(session, current_user(), course_id)
    except HubError as exc:
        session.rollback()
        return _preview(course_id, exc)
    session.commit()
    return redirect(url_for("review.course_page", course_id=course_id), code=303)


@blueprint.post("/courses/<int:course_id>/return")
def return_to_uploader(course_id: int) -> Response | tuple[str, int]:
    if (login := _signed_in()) is not None:
        return login
    session = request_session()
    note = request.form.get("note", "")
    try:
        review.return_course(session, current_user(), course_id, note)
    except HubError as exc:
        session.rollback()
        return _preview(course_id, exc, note)
    session.commit()
    return redirect(url_for("review.course_page", course_id=course_id), code=303)
