"""An uploader's pages: courses, lessons, materials, uploads and their processing status.

Every page works without JavaScript: a plain multipart form uploads small files.
With JavaScript, hub/static/tus-upload.js sends files of any size through the tus
API (progress, pause/resume, automatic retry) and posts the finished upload's URL
to the same form endpoint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.accounts.models import User
from hub.api import PREFIX
from hub.catalog import history, textbooks
from hub.catalog import services as catalog
from hub.catalog.licences import LICENCES, attribution
from hub.catalog.schemas import CourseCreate, CourseQuery, LessonCreate
from hub.db import request_session
from hub.errors import HubError, Invalid, PermissionDenied, invalid_from_pydantic
from hub.i18n import N_, gettext
from hub.inputs import parse_int
from hub.media.api import material_out
from hub.media.storage import Storage
from hub.subtitles import services as subtitles
from hub.subtitles.api import read_upload
from hub.uploads import get_uploads, services
from hub.uploads.messages import script_messages
from hub.vocab import VOLUMES

blueprint = Blueprint("uploads", __name__, url_prefix="/upload")

# The most bytes per PATCH from the page; the script sizes pieces to the link's speed
# (about 4 s each) below this. waitress reads a whole body before the app sees it, so
# a piece cut off is sent again: this bounds that cost on a fast link.
BROWSER_CHUNK_BYTES = 5 * 1024 * 1024


def _uploader() -> User | Response:
    user = current_user()
    if user is None:
        return redirect(url_for("accounts.login", next=request.path))
    if user.role not in ("admin", "uploader"):
        raise PermissionDenied(N_("Only a school's uploaders and admins can upload lessons."))
    return user


def _storage() -> Storage:
    storage: Storage = current_app.extensions["hub.storage"]
    return storage


def _course_form() -> dict[str, Any]:
    form = request.form
    grades: list[Any] = []
    for value in form.getlist("grades"):
        # Anything but a plain number ("²", "١") stays text, for the schema to refuse.
        number = parse_int(value)
        grades.append(value if number is None else number)
    return {
        "title": form.get("title", ""),
        "summary": form.get("summary", ""),
        "category": form.get("category", "curriculum"),
        "subject": form.get("subject", ""),
        "grades": grades,
        "edition": form.get("edition", ""),
        "edition_other": form.get("edition_other", ""),
        "volume": form.get("volume", ""),
        "language": form.get("language", "zh"),
        "license": form.get("license", ""),
        "teacher": form.get("teacher", ""),
    }


def course_form_context(form: dict[str, Any], school_name: str) -> dict[str, Any]:
    """What templates/uploads/_course_fields.html needs besides ``form``: lists, the edition chosen, the preview.

    ``form`` holds a form as sent, or a course's stored values (the edit form): an edition
    that is not listed (typed as "other", or saved before the list) shows as "other" with its text.
    """
    edition = (form.get("edition") or "").strip()
    other = (form.get("edition_other") or "").strip()
    listed = textbooks.find(edition) if edition and edition != textbooks.OTHER else None
    if listed is not None:
        choice = listed.name
    elif edition and edition != textbooks.OTHER:
        choice, other = textbooks.OTHER, other or edition
    else:
        choice = edition
    return {
        "EDITIONS": textbooks.editions(),
        "edition_choice": choice,
        "edition_other": other,
        "OTHER": textbooks.OTHER,
        "VOLUMES": VOLUMES,
        "LICENCES": LICENCES,
        "attribution": attribution,
        # The course has no address yet: the preview names the page it will have.
        "attribution_source": gettext("its page on this hub"),
        "school_name": school_name,
    }


def _dashboard(user: User, form: dict[str, Any], error: HubError | None = None) -> tuple[str, int]:
    session = request_session()
    page = catalog.list_courses(session, user, CourseQuery(status="all", school=user.school_id, per_page=100), 100)
    return render_template(
        "uploads/dashboard.html",
        page=page,
        uploads=services.list_uploads(session, user),
        form=form,
        error=error,
        **course_form_context(form, user.school.name),
    ), error.status if error else 200


@blueprint.get("/")
def dashboard() -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    return _dashboard(user, {"grades": [], "category": "curriculum", "language": "zh"})


@blueprint.post("/courses")
def create_course() -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    form = _course_form()
    try:
        data = CourseCreate.model_validate(form)
    except ValidationError as exc:
        return _dashboard(user, form, invalid_from_pydantic(exc))
    try:
        course = catalog.create_course(request_session(), user, data)
    except Invalid as exc:
        request_session().rollback()
        return _dashboard(user, form, exc)
    request_session().commit()
    return redirect(url_for("uploads.course_page", course_id=course.id), code=303)


@blueprint.get("/courses/<int:course_id>")
def course_page(course_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    return _course(user, course_id)


def _course(
    user: User, course_id: int, error: HubError | None = None, form: dict[str, str] | None = None
) -> tuple[str, int]:
    session = request_session()
    course = catalog.get_course(session, user, course_id)
    if not catalog.can_edit(user, course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    lessons = catalog.list_lessons(session, user, course_id)
    return render_template(
        "uploads/course.html",
        course=course,
        lessons=lessons,
        error=error,
        form=form or {},
        events=history.events(session, course.id),
        returned=history.last_return(session, course),
        review_required=history.review_required(session),
    ), 200 if error is None else error.status


@blueprint.post("/courses/<int:course_id>/lessons")
def create_lesson(course_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    form = {k: request.form.get(k, "") for k in ("title", "unit", "summary")}
    try:
        data = LessonCreate.model_validate(form)
    except ValidationError as exc:
        return _course(user, course_id, invalid_from_pydantic(exc), form)
    lesson = catalog.create_lesson(request_session(), user, course_id, data)
    request_session().commit()
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson.id), code=303)


@blueprint.post("/courses/<int:course_id>/publish")
def publish_course(course_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    try:
        catalog.publish_course(request_session(), user, course_id)
    except HubError as exc:
        return _course(user, course_id, exc)
    request_session().commit()
    return redirect(url_for("uploads.course_page", course_id=course_id), code=303)


@blueprint.get("/lessons/<int:lesson_id>")
def lesson_page(lesson_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    return _lesson(user, lesson_id)


def _lesson(user: User, lesson_id: int, error: HubError | None = None) -> tuple[str, int]:
    lesson = catalog.get_lesson(request_session(), user, lesson_id)
    if not catalog.can_edit(user, lesson.course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    uploads = get_uploads(current_app)
    return render_template(
        "uploads/lesson.html",
        lesson=lesson,
        course=lesson.course,
        error=error,
        max_plain=current_app.config["MAX_CONTENT_LENGTH"],
        max_upload=uploads.settings.max_bytes,
        chunk_bytes=BROWSER_CHUNK_BYTES,
        api_prefix=PREFIX,
        script_messages=script_messages(uploads.settings.max_bytes),
    ), 200 if error is None else error.status


@blueprint.post("/lessons/<int:lesson_id>/materials")
def add_material(lesson_id: int) -> Any:
    """A material from a plain form upload (no JavaScript) or from a finished tus upload."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    wants_json = request.accept_mimetypes.best == "application/json"
    session = request_session()
    title = request.form.get("title", "")
    try:
        if request.form.get("upload"):
            material = services.create_material(
                session, get_uploads(current_app), _storage(), user, lesson_id, request.form["upload"], title
            )
        else:
            file = request.files.get("file")
            if file is None or not file.filename:
                raise Invalid(N_("Choose a file to upload."), {"file": N_("This field is required")})
            material = catalog.add_material(
                session, _storage(), user, lesson_id, file.stream, filename=file.filename, title=title
            )
    except HubError as exc:
        if wants_json:
            raise
        session.rollback()
        return _lesson(user, lesson_id, exc)
    session.commit()
    if wants_json:
        return jsonify(material_out(material).model_dump(mode="json")), 201
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson_id), code=303)


@blueprint.post("/materials/<int:material_id>/subtitles")
def attach_subtitle(material_id: int) -> Any:
    """A subtitle file from the lesson page's plain form (no JavaScript needed)."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    lesson_id = catalog.get_material(session, user, material_id).lesson_id
    try:
        file = request.files.get("file")
        if file is None or not file.filename:
            raise Invalid(N_("Choose a subtitle file to upload."), {"file": N_("This field is required")})
        subtitles.attach_subtitle(
            session,
            _storage(),
            user,
            material_id,
            read_upload(file.stream),
            language=request.form.get("language", ""),
            label=request.form.get("label", ""),
        )
    except HubError as exc:
        session.rollback()
        return _lesson(user, lesson_id, exc)
    session.commit()
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson_id) + f"#material-{material_id}", code=303)


@blueprint.post("/materials/<int:material_id>/subtitles/<language>/delete")
def delete_subtitle(material_id: int, language: str) -> Any:
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    lesson_id = catalog.get_material(session, user, material_id).lesson_id
    try:
        subtitles.delete_subtitle(session, user, material_id, language)
    except HubError as exc:
        session.rollback()
        return _lesson(user, lesson_id, exc)
    session.commit()
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson_id) + f"#material-{material_id}", code=303)
