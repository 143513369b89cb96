"""HTML pages of the catalog: parse the request, call one service, render.

The pages work without JavaScript and stay small, for old phones on 2G links.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for
from pydantic import ValidationError

from hub.accounts.auth import current_user
from hub.catalog import editions, licences, review, services
from hub.catalog.models import Course
from hub.catalog.schemas import CourseQuery
from hub.db import request_session
from hub.errors import invalid_from_pydantic
from hub.media.chapters import chapter_list
from hub.media.course_download import plan_course_download
from hub.media.profiles import original_stands_in
from hub.media.views import data_saver_on, default_quality
from hub.textbooks import browse
from hub.textbooks.browse_views import remembered_textbook
from hub.vocab import CATEGORIES, GRADE_NAMES, LANGUAGES, SUBJECTS, VOLUMES

blueprint = Blueprint("catalog", __name__)


@blueprint.app_context_processor
def _vocabularies() -> dict[str, object]:
    return {"SUBJECTS": SUBJECTS, "GRADE_NAMES": GRADE_NAMES, "CATEGORIES": CATEGORIES, "LANGUAGES": LANGUAGES}


@blueprint.get("/")
def home() -> str:
    counts = services.grade_subject_counts(request_session())
    return render_template(
        "catalog/home.html", counts=counts, my_textbook=remembered_textbook(), textbook_label=browse.label
    )


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
    # The edition list offers the subject's editions, and an unlisted one the reader asked for.
    edition_names = [e.name for e in editions.for_subject(query.subject)]
    if query.edition and (wanted := services.edition_filter(query.edition)) not in edition_names:
        edition_names.append(wanted)
    return render_template(
        "catalog/courses.html",
        page=page,
        query=query,
        pages=pages,
        args=args,
        edition_names=edition_names,
        edition=services.edition_filter(query.edition) if query.edition else "",
        volumes=VOLUMES,
    )


@blueprint.get("/courses/<int:course_id>")
def course_page(course_id: int) -> str:
    session = request_session()
    actor = current_user()
    course = services.get_course(session, actor, course_id)
    lessons = services.list_lessons(session, actor, course_id)
    storage = current_app.extensions["hub.storage"]
    course_zip = plan_course_download(session, actor, storage, course_id, default_quality())
    return render_template(
        "catalog/course.html",
        course=course,
        lessons=lessons,
        can_edit=services.can_edit(actor, course),
        can_review=course.status == "submitted" and review.can_review(actor, course),
        course_zip=course_zip,
        licence=licences.licence(course.license),
        attribution_line=course_attribution(course),
    )


def course_attribution(course: Course) -> str:
    """The course's attribution line (TASL), its source the course page's full address."""
    source = url_for("catalog.course_page", course_id=course.id, _external=True)
    return licences.attribution(course.title, course.teacher, course.school.name, source, course.license)


# ?quality= on a lesson page: which rendition the players start with.
PLAYER_QUALITIES = {"240p": "video-240p", "360p": "video-360p", "audio": "audio"}


@blueprint.get("/lessons/<int:lesson_id>")
def lesson_page(lesson_id: int) -> str:
    page = services.get_lesson_page(request_session(), current_user(), lesson_id)
    lesson = page.lesson
    # The player's first rendition: ?quality= when the reader chose one, else what data
    # saver says (on unless turned off: the smallest video).
    quality = request.args.get("quality")
    if quality not in PLAYER_QUALITIES:
        quality = "240p" if data_saver_on() else "360p"
    upstream_url = current_app.extensions["hub.settings"].upstream_url.rstrip("/")
    # A school server holds an original only where no rendition stands in for it
    # (hub.media.profiles.original_stands_in): the others are linked on the upstream
    # hub, for when the internet is up, not as a download that answers 404 on the LAN.
    remote = (
        {
            m.id
            for m in lesson.materials
            if not original_stands_in(m.status, [r.profile for r in m.renditions if r.status == "ready"])
        }
        if upstream_url
        else set()
    )
    return render_template(
        "catalog/lesson.html",
        lesson=lesson,
        course=lesson.course,
        upstream_url=upstream_url,
        remote_originals=remote,
        previous=page.previous,
        next=page.next,
        node=page.node,
        textbook=page.textbook,
        others=page.others,
        textbook_label=browse.label,
        quality=quality,
        qualities=PLAYER_QUALITIES,
        chapter_list=chapter_list,
    )
