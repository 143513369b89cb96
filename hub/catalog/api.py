"""JSON API for courses, lessons and materials: parse, call one service, serialise."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from hub.accounts.auth import current_user, require_user
from hub.api import PREFIX, no_content, operation, parse_json
from hub.catalog import editions, services
from hub.catalog.models import Course, Lesson
from hub.catalog.schemas import (
    CourseCreate,
    CourseOut,
    CoursePage,
    CourseQuery,
    CourseUpdate,
    EditionList,
    EditionOut,
    EditionQuery,
    LessonCreate,
    LessonList,
    LessonOrder,
    LessonOut,
    LessonUpdate,
    MaterialOut,
    NodeRef,
    SchoolRef,
    TextbookRef,
)
from hub.db import request_session
from hub.errors import HubError, Invalid
from hub.i18n import N_
from hub.media.api import material_out
from hub.media.storage import Storage
from hub.uploads.api import MaterialFromUpload, create_material_from_upload, replace_material_from_upload

blueprint = Blueprint("catalog_api", __name__, url_prefix=PREFIX)


def course_out(course: Course, lessons: int | None = None) -> CourseOut:
    return CourseOut(
        id=course.id,
        title=course.title,
        summary=course.summary,
        category=course.category,
        subject=course.subject,
        grades=course.grades,
        edition=course.edition,
        volume=course.volume,
        language=course.language,
        license=course.license,
        teacher=course.teacher,
        status=course.status,
        version=course.version,
        school=SchoolRef(id=course.school.id, name=course.school.name),
        textbook=textbook_ref(course),
        lessons=len(course.lessons) if lessons is None else lessons,
        created_at=course.created_at,
        updated_at=course.updated_at,
        published_at=course.published_at,
    )


def lesson_out(lesson: Lesson) -> LessonOut:
    return LessonOut(
        id=lesson.id,
        course=lesson.course_id,
        position=lesson.position,
        title=lesson.title,
        summary=lesson.summary,
        unit=lesson.unit,
        node=node_ref(lesson),
        materials=[material_out(m) for m in lesson.materials],
    )


def textbook_ref(course: Course) -> TextbookRef | None:
    book = course.textbook
    return None if book is None else TextbookRef(id=book.id, key=book.key, title=f"{book.edition} {book.title}")


def node_ref(lesson: Lesson) -> NodeRef | None:
    node = lesson.textbook_node
    if node is None:
        return None
    return NodeRef(id=node.id, key=node.key, kind=node.kind, title=node.title, textbook=node.textbook.key)


def _commit_course(course: Course) -> CourseOut:
    request_session().commit()
    return course_out(course)


@operation(blueprint, "/courses", "GET", summary="List courses", query=CourseQuery, response=CoursePage)
def list_courses(query: CourseQuery) -> CoursePage:
    settings = current_app.extensions["hub.settings"]
    page = services.list_courses(request_session(), current_user(), query, settings.page_size)
    return CoursePage(
        items=[course_out(c, n) for c, n in page.items],
        total=page.total,
        page=page.page,
        per_page=page.per_page,
    )


@operation(
    blueprint,
    "/courses",
    "POST",
    summary="Create a draft course",
    body=CourseCreate,
    response=CourseOut,
    status=201,
    auth=True,
)
def create_course(body: CourseCreate) -> CourseOut:
    return _commit_course(services.create_course(request_session(), require_user(), body))


@operation(blueprint, "/courses/<int:course_id>", "GET", summary="Get a course", response=CourseOut)
def get_course(course_id: int) -> CourseOut:
    return course_out(services.get_course(request_session(), current_user(), course_id))


@operation(
    blueprint,
    "/courses/<int:course_id>",
    "PATCH",
    summary="Change a course",
    body=CourseUpdate,
    response=CourseOut,
    auth=True,
)
def update_course(course_id: int, body: CourseUpdate) -> CourseOut:
    return _commit_course(services.update_course(request_session(), require_user(), course_id, body))


@operation(
    blueprint, "/courses/<int:course_id>", "DELETE", summary="Delete a draft or withdrawn course", status=204, auth=True
)
def delete_course(course_id: int) -> Response:
    services.delete_course(request_session(), require_user(), course_id)
    request_session().commit()
    return no_content()


@operation(
    blueprint, "/courses/<int:course_id>/publish", "POST", summary="Publish a course", response=CourseOut, auth=True
)
def publish_course(course_id: int) -> CourseOut:
    return _commit_course(services.publish_course(request_session(), require_user(), course_id))


@operation(
    blueprint, "/courses/<int:course_id>/withdraw", "POST", summary="Withdraw a course", response=CourseOut, auth=True
)
def withdraw_course(course_id: int) -> CourseOut:
    return _commit_course(services.withdraw_course(request_session(), require_user(), course_id))


@operation(
    blueprint,
    "/editions",
    "GET",
    summary="The textbook editions a curriculum course may name (hub/catalog/data/editions.json)",
    query=EditionQuery,
    response=EditionList,
)
def list_editions(query: EditionQuery) -> EditionList:
    return EditionList(
        items=[
            EditionOut(name=e.name, en=e.en, subjects=list(e.subjects), aliases=list(e.aliases))
            for e in editions.for_subject(query.subject)
        ]
    )


@operation(blueprint, "/courses/<int:course_id>/lessons", "GET", summary="List a course's lessons", response=LessonList)
def list_lessons(course_id: int) -> LessonList:
    lessons = services.list_lessons(request_session(), current_user(), course_id)
    return LessonList(items=[lesson_out(lesson) for lesson in lessons])


@operation(
    blueprint,
    "/courses/<int:course_id>/lessons",
    "POST",
    summary="Add a lesson",
    body=LessonCreate,
    response=LessonOut,
    status=201,
    auth=True,
)
def create_lesson(course_id: int, body: LessonCreate) -> LessonOut:
    lesson = services.create_lesson(request_session(), require_user(), course_id, body)
    request_session().commit()
    return lesson_out(lesson)


@operation(blueprint, "/lessons/<int:lesson_id>", "GET", summary="Get a lesson with its materials", response=LessonOut)
def get_lesson(lesson_id: int) -> LessonOut:
    return lesson_out(services.get_lesson(request_session(), current_user(), lesson_id))


@operation(
    blueprint,
    "/lessons/<int:lesson_id>",
    "PATCH",
    summary="Change a lesson: title, unit, summary; position moves it (the others close up)",
    body=LessonUpdate,
    response=LessonOut,
    auth=True,
)
def update_lesson(lesson_id: int, body: LessonUpdate) -> LessonOut:
    lesson = services.update_lesson(request_session(), require_user(), lesson_id, body)
    request_session().commit()
    return lesson_out(lesson)


@operation(
    blueprint,
    "/lessons/<int:lesson_id>",
    "DELETE",
    summary="Delete a lesson and its materials (also from school servers, on their next pull)",
    status=204,
    auth=True,
)
def delete_lesson(lesson_id: int) -> Response:
    services.delete_lesson(request_session(), require_user(), lesson_id)
    request_session().commit()
    return no_content()


@operation(
    blueprint,
    "/courses/<int:course_id>/lesson-order",
    "PUT",
    summary="Reorder a course's lessons: every lesson id, once each, first to last",
    body=LessonOrder,
    response=LessonList,
    auth=True,
)
def reorder_lessons(course_id: int, body: LessonOrder) -> LessonList:
    session = request_session()
    services.reorder_lessons(session, require_user(), course_id, body.lessons)
    session.commit()
    return LessonList(
        items=[lesson_out(lesson) for lesson in services.list_lessons(session, current_user(), course_id)]
    )


@operation(
    blueprint,
    "/lessons/<int:lesson_id>/materials",
    "POST",
    summary="Add a material: multipart (fields file, title) or JSON {upload: <tus URL>, title}",
    response=MaterialOut,
    status=201,
    auth=True,
)
def create_material(lesson_id: int) -> MaterialOut:
    actor = require_user()
    if request.is_json:  # {"upload": "<tus upload URL>", "title": ...}: a finished resumable upload
        return create_material_from_upload(lesson_id, parse_json(MaterialFromUpload))
    if request.mimetype != "multipart/form-data":
        raise HubError(N_("Send the file as multipart/form-data with fields 'file' and 'title'."))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid(N_("Choose a file to upload."), {"file": "This field is required"})
    storage: Storage = current_app.extensions["hub.storage"]
    material = services.add_material(
        request_session(),
        storage,
        actor,
        lesson_id,
        upload.stream,
        filename=upload.filename,
        title=request.form.get("title", ""),
    )
    request_session().commit()
    return material_out(material)


@operation(
    blueprint,
    "/materials/<int:material_id>",
    "GET",
    summary="Get a material with its processing status and renditions",
    response=MaterialOut,
)
def get_material(material_id: int) -> MaterialOut:
    return material_out(services.get_material(request_session(), current_user(), material_id))


@operation(
    blueprint,
    "/materials/<int:material_id>",
    "DELETE",
    summary="Delete a material; its files go when no other material uses them",
    status=204,
    auth=True,
)
def delete_material(material_id: int) -> Response:
    services.delete_material(request_session(), require_user(), material_id)
    request_session().commit()
    return no_content()


@operation(
    blueprint,
    "/materials/<int:material_id>/original",
    "PUT",
    summary="Replace a material's file: multipart (fields file, title) or JSON {upload: <tus URL>, title}; "
    "an empty title keeps the old one",
    response=MaterialOut,
    auth=True,
)
def replace_material(material_id: int) -> MaterialOut:
    actor = require_user()
    if request.is_json:
        return replace_material_from_upload(material_id, parse_json(MaterialFromUpload))
    if request.mimetype != "multipart/form-data":
        raise HubError(N_("Send the file as multipart/form-data with fields 'file' and 'title'."))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid(N_("Choose a file to upload."), {"file": N_("This field is required")})
    storage: Storage = current_app.extensions["hub.storage"]
    material = services.replace_material(
        request_session(),
        storage,
        actor,
        material_id,
        upload.stream,
        filename=upload.filename,
        title=request.form.get("title", ""),
    )
    request_session().commit()
    return material_out(material)
