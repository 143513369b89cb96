"""HTML pages of the catalog: parse the request, call one service, render.

The pages work without JavaScript and stay small, for old phones on 2G links.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from pydantic import ValidationError

from hub.accounts.auth import current_user
from hub.catalog import services
from hub.catalog.schemas import CourseQuery
from hub.db import request_session
from hub.errors import invalid_from_pydantic
from hub.vocab import CATEGORIES, GRADE_NAMES, LANGUAGES, SUBJECTS

blueprint = Blueprint("catalog", __name__)


@blueprint.app_context_processor
def _vocabularies() -> dict[str, object]:
    return {"SUBJECTS": SUBJECTS, "GRADE_NAMES": GRADE_NAMES, "CATEGORIES": CATEGORIES, "LANGUAGES": LANGUAGES}


@blueprint.app_template_filter("filesize")
def filesize(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""  # unreachable: the loop returns at MB


@blueprint.app_template_filter("download_time")
def download_time(size: int | None, kbit_per_s: int) -> str:
    """How long a download takes at a given link speed: what a rural teacher pays in waiting."""
    if not size:
        return ""
    seconds = size * 8 / (kbit_per_s * 1000)
    if seconds < 60:
        return f"{max(1, round(seconds))} 秒 s"
    if seconds < 3600:
        return f"{round(seconds / 60)} 分钟 min"
    return f"{seconds / 3600:.1f} 小时 h"


@blueprint.get("/")
def home() -> str:
    counts = services.grade_subject_counts(request_session())
    return render_template("catalog/home.html", counts=counts)


@blueprint.get("/courses")
def course_list() -> str:
    # Empty form fields (?subject=&grade=) mean "any", as a browser sends them.
    args = {k: v for k, v in request.args.items() if v != ""}
    try:
        query = CourseQuery.model_validate(args)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    settings = current_app.extensions["hub.settings"]
    page = services.list_courses(request_session(), current_user(), query, settings.page_size)
    pages = max(1, -(-page.total // page.per_page))
    return render_template("catalog/courses.html", page=page, query=query, pages=pages, args=args)


@blueprint.get("/courses/<int:course_id>")
def course_page(course_id: int) -> str:
    session = request_session()
    actor = current_user()
    course = services.get_course(session, actor, course_id)
    lessons = services.list_lessons(session, actor, course_id)
    return render_template(
        "catalog/course.html", course=course, lessons=lessons, can_edit=services.can_edit(actor, course)
    )


@blueprint.get("/lessons/<int:lesson_id>")
def lesson_page(lesson_id: int) -> str:
    lesson = services.get_lesson(request_session(), current_user(), lesson_id)
    return render_template("catalog/lesson.html", lesson=lesson, course=lesson.course)
