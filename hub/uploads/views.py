"""An uploader's pages: courses, lessons, materials, uploads and their processing status.

Every page works without JavaScript: a plain multipart form uploads small files.
With JavaScript, hub/static/tus-upload.js sends files of any size through the tus
API (progress, pause/resume, automatic retry) and posts the finished upload's URL
to the same form endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.accounts.models import User
from hub.api import PREFIX
from hub.catalog import editions, history
from hub.catalog import services as catalog
from hub.catalog.licences import LICENCES, attribution
from hub.catalog.models import Course, Material
from hub.catalog.schemas import CourseCreate, CourseQuery, CourseUpdate, LessonCreate, LessonUpdate
from hub.db import request_session
from hub.errors import HubError, Invalid, PermissionDenied, invalid_from_pydantic
from hub.i18n import N_, gettext
from hub.inputs import parse_int
from hub.media.api import material_out
from hub.media.storage import Storage
from hub.subtitles import services as subtitles
from hub.subtitles.api import read_upload
from hub.textbooks import services as textbooks
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
        # Empty: none. Text that is no id stays text, for the schema to refuse.
        "textbook": _id_or_text(form.get("textbook", "")),
    }


def _id_or_text(value: str) -> int | str | None:
    if not value.strip():
        return None
    number = parse_int(value, low=1)
    return value if number is None else number


def _lesson_form() -> dict[str, Any]:
    """A lesson form's fields: title, unit, summary and the textbook node (empty: none)."""
    form: dict[str, Any] = {k: request.form.get(k, "") for k in ("title", "unit", "summary")}
    if "node" in request.form:  # the choice is offered only when the course follows a textbook
        form["node"] = _id_or_text(request.form.get("node", ""))
    return form


def course_form_context(form: dict[str, Any], school_name: str) -> dict[str, Any]:
    """What templates/uploads/_course_fields.html needs besides ``form``: lists, the edition chosen, the preview.

    ``form`` holds a form as sent, or a course's stored values (the edit form): an edition
    that is not listed (typed as "other", or saved before the list) shows as "other" with its text.
    """
    edition = (form.get("edition") or "").strip()
    other = (form.get("edition_other") or "").strip()
    listed = editions.find(edition) if edition and edition != editions.OTHER else None
    if listed is not None:
        choice = listed.name
    elif edition and edition != editions.OTHER:
        choice, other = editions.OTHER, other or edition
    else:
        choice = edition
    return {
        "EDITIONS": editions.editions(),
        "edition_choice": choice,
        "edition_other": other,
        "OTHER": editions.OTHER,
        "VOLUMES": VOLUMES,
        "LICENCES": LICENCES,
        "attribution": attribution,
        # The course has no address yet: the preview names the page it will have.
        "attribution_source": gettext("its page on this hub"),
        "school_name": school_name,
        "TEXTBOOKS": textbooks.list_textbooks(request_session()),
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
    user: User,
    course_id: int,
    error: HubError | None = None,
    form: dict[str, str] | None = None,
    course_form: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """The course page: its lessons (to reorder, open, add to) and its own fields (to edit)."""
    session = request_session()
    course = catalog.get_course(session, user, course_id)
    if not catalog.can_edit(user, course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    lessons = catalog.list_lessons(session, user, course_id)
    added = parse_int(request.args.get("added", ""))
    fields = course_form or _fields_of(course)
    return render_template(
        "uploads/course.html",
        course=course,
        lessons=lessons,
        error=error,
        form=form or {"unit": request.args.get("unit", "")},
        added=next((lesson for lesson in lessons if lesson.id == added), None),
        course_form=fields,
        editing=course_form is not None,  # the edit form comes back open, with what was typed
        **course_form_context(fields, course.school.name),
        events=history.events(session, course.id),
        returned=history.last_return(session, course),
        review_required=history.review_required(session),
    ), 200 if error is None else error.status


def _fields_of(course: Course) -> dict[str, Any]:
    """A course's fields as the course form holds them."""
    return {**course.description(), "textbook": course.textbook_id}


@blueprint.post("/courses/<int:course_id>/lessons")
def create_lesson(course_id: int) -> Response | tuple[str, int]:
    """Add a lesson and come back to the course page, its form empty for the next one."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    form = _lesson_form()
    try:
        data = LessonCreate.model_validate(form)
    except ValidationError as exc:
        return _course(user, course_id, invalid_from_pydantic(exc), form)
    try:
        lesson = catalog.create_lesson(request_session(), user, course_id, data)
    except Invalid as exc:  # a textbook node that is not the course's book's
        request_session().rollback()
        return _course(user, course_id, exc, form)
    request_session().commit()
    # The unit stays filled in: the next lesson is usually in the same one.
    return redirect(
        url_for("uploads.course_page", course_id=course_id, added=lesson.id, unit=lesson.unit or None) + "#add-lesson",
        code=303,
    )


def _course_change(course_id: int, change: Any, anchor: str = "") -> Response | tuple[str, int]:
    """Run one course-level service for the signed-in uploader; back to the course page, or its error there."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    try:
        change(session, user)
    except HubError as exc:
        session.rollback()
        return _course(user, course_id, exc)
    session.commit()
    return redirect(url_for("uploads.course_page", course_id=course_id) + anchor, code=303)


@blueprint.post("/courses/<int:course_id>/publish")
def publish_course(course_id: int) -> Response | tuple[str, int]:
    return _course_change(course_id, lambda session, user: catalog.publish_course(session, user, course_id))


@blueprint.post("/courses/<int:course_id>/withdraw")
def withdraw_course(course_id: int) -> Response | tuple[str, int]:
    return _course_change(course_id, lambda session, user: catalog.withdraw_course(session, user, course_id))


@blueprint.post("/courses/<int:course_id>/edit")
def edit_course(course_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    form = _course_form()
    try:
        data = CourseUpdate.model_validate(form)
    except ValidationError as exc:
        return _course(user, course_id, invalid_from_pydantic(exc), course_form=form)
    session = request_session()
    try:
        catalog.update_course(session, user, course_id, data)
    except HubError as exc:
        session.rollback()
        return _course(user, course_id, exc, course_form=form)
    session.commit()
    return redirect(url_for("uploads.course_page", course_id=course_id), code=303)


@blueprint.post("/courses/<int:course_id>/delete")
def delete_course(course_id: int) -> Response | tuple[str, int]:
    """Delete a draft or withdrawn course; the form's box must be ticked (no JavaScript confirm)."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    if not request.form.get("confirm"):
        error = Invalid(N_("Tick the box to confirm that the course should be deleted."), {"confirm": N_("Not ticked")})
        return _course(user, course_id, error)
    session = request_session()
    try:
        catalog.delete_course(session, user, course_id)
    except HubError as exc:
        session.rollback()
        return _course(user, course_id, exc)
    session.commit()
    return redirect(url_for("uploads.dashboard"), code=303)


@blueprint.post("/lessons/<int:lesson_id>/move")
def move_lesson(lesson_id: int) -> Response | tuple[str, int]:
    """Up or down one place (the course page's buttons send up or down), or to the position typed in."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    lesson = catalog.get_lesson(session, user, lesson_id)
    course_id = lesson.course_id
    step = -1 if request.form.get("up") else 1 if request.form.get("down") else 0
    try:
        if step:  # the up and down buttons
            order = [item.id for item in catalog.list_lessons(session, user, course_id)]
            position = max(1, order.index(lesson.id) + 1 + step)
        else:
            number = parse_int(request.form.get("position", ""))
            if number is None or not 1 <= number <= 10000:
                raise Invalid(
                    N_("Give the lesson's new place as a number from 1 to %(last)s."),
                    {"position": N_("A whole number")},
                    last=len(lesson.course.lessons),
                )
            position = number
        catalog.move_lesson(session, user, lesson_id, position)
    except HubError as exc:
        session.rollback()
        return _course(user, course_id, exc)
    session.commit()
    return redirect(url_for("uploads.course_page", course_id=course_id) + f"#lesson-{lesson_id}", code=303)


@blueprint.get("/lessons/<int:lesson_id>")
def lesson_page(lesson_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    return _lesson(user, lesson_id)


def _lesson(
    user: User, lesson_id: int, error: HubError | None = None, form: dict[str, str] | None = None
) -> tuple[str, int]:
    lesson = catalog.get_lesson(request_session(), user, lesson_id)
    if not catalog.can_edit(user, lesson.course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))
    uploads = get_uploads(current_app)
    return render_template(
        "uploads/lesson.html",
        lesson=lesson,
        course=lesson.course,
        error=error,
        lesson_form=form
        or {"title": lesson.title, "unit": lesson.unit, "summary": lesson.summary, "node": lesson.textbook_node_id},
        editing=form is not None,  # the edit form comes back open, with what was typed
        max_plain=current_app.config["MAX_CONTENT_LENGTH"],
        max_upload=uploads.settings.max_bytes,
        chunk_bytes=BROWSER_CHUNK_BYTES,
        api_prefix=PREFIX,
        script_messages=script_messages(uploads.settings.max_bytes),
    ), 200 if error is None else error.status


def _material_form(
    user: User,
    lesson_id: int,
    from_upload: Callable[[str, str], Material],
    from_file: Callable[[IO[bytes], str, str], Material],
    *,
    created: bool,
) -> Any:
    """A material from a finished tus upload (``upload``) or the plain form's file (no JavaScript):
    JSON for the upload script, else back to the lesson page (with the error, or at the material)."""
    wants_json = request.accept_mimetypes.best == "application/json"
    session = request_session()
    title = request.form.get("title", "")
    try:
        if request.form.get("upload"):
            material = from_upload(request.form["upload"], title)
        else:
            file = request.files.get("file")
            if file is None or not file.filename:
                raise Invalid(N_("Choose a file to upload."), {"file": N_("This field is required")})
            material = from_file(file.stream, file.filename, title)
    except HubError as exc:
        if wants_json:
            raise
        session.rollback()
        return _lesson(user, lesson_id, exc)
    session.commit()
    if wants_json:
        return jsonify(material_out(material).model_dump(mode="json")), 201 if created else 200
    anchor = "" if created else f"#material-{material.id}"
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson_id) + anchor, code=303)


@blueprint.post("/lessons/<int:lesson_id>/materials")
def add_material(lesson_id: int) -> Any:
    """A material from a plain form upload (no JavaScript) or from a finished tus upload."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    return _material_form(
        user,
        lesson_id,
        lambda upload, title: services.create_material(
            session, get_uploads(current_app), _storage(), user, lesson_id, upload, title
        ),
        lambda stream, filename, title: catalog.add_material(
            session, _storage(), user, lesson_id, stream, filename=filename, title=title
        ),
        created=True,
    )


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


@blueprint.post("/lessons/<int:lesson_id>/edit")
def edit_lesson(lesson_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    form = _lesson_form()
    session = request_session()
    try:
        try:
            data = LessonUpdate.model_validate(form)
        except ValidationError as exc:
            raise invalid_from_pydantic(exc) from None
        catalog.update_lesson(session, user, lesson_id, data)
    except HubError as exc:
        session.rollback()
        return _lesson(user, lesson_id, exc, form)
    session.commit()
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson_id), code=303)


@blueprint.post("/lessons/<int:lesson_id>/delete")
def delete_lesson(lesson_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    if not request.form.get("confirm"):
        error = Invalid(N_("Tick the box to confirm that the lesson should be deleted."), {"confirm": N_("Not ticked")})
        return _lesson(user, lesson_id, error)
    session = request_session()
    try:
        course = catalog.delete_lesson(session, user, lesson_id)
    except HubError as exc:
        session.rollback()
        return _lesson(user, lesson_id, exc)
    session.commit()
    return redirect(url_for("uploads.course_page", course_id=course.id) + "#lessons", code=303)


@blueprint.post("/materials/<int:material_id>/delete")
def delete_material(material_id: int) -> Response | tuple[str, int]:
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    lesson_id = catalog.get_material(session, user, material_id).lesson_id
    try:
        catalog.delete_material(session, user, material_id)
    except HubError as exc:
        session.rollback()
        return _lesson(user, lesson_id, exc)
    session.commit()
    return redirect(url_for("uploads.lesson_page", lesson_id=lesson_id) + "#materials", code=303)


@blueprint.post("/materials/<int:material_id>/replace")
def replace_material(material_id: int) -> Any:
    """A material's new file, from the plain form (no JavaScript) or a finished tus upload (``upload``)."""
    user = _uploader()
    if isinstance(user, Response):
        return user
    session = request_session()
    return _material_form(
        user,
        catalog.get_material(session, user, material_id).lesson_id,
        lambda upload, title: services.replace_material(
            session, get_uploads(current_app), _storage(), user, material_id, upload, title
        ),
        lambda stream, filename, title: catalog.replace_material(
            session, _storage(), user, material_id, stream, filename=filename, title=title
        ),
        created=False,
    )
