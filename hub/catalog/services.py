"""Catalog use cases: one function each, shared by the API, the pages, the CLI and workers.

Visibility rules live here and nowhere else:

- a published course is readable by everyone, anonymous included;
- a draft or withdrawn course exists only for its own school and admins
  (others get ``NotFound``, so a draft's existence does not leak);
- only admins and the owning school's uploaders may change a course
  (others who can see it get ``PermissionDenied``);
- a course submitted for review (HUB_REVIEW_REQUIRED, hub.catalog.review) is also
  readable by the reviewers of its school's region, to preview it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, true, update
from sqlalchemy.orm import Session, selectinload

from hub import jobs
from hub.accounts.models import School, User
from hub.catalog import editions, history
from hub.catalog.models import Course, Lesson, Material, grades_to_mask
from hub.catalog.schemas import (
    TEXTBOOK_ONLY_FOR_CURRICULUM,
    CourseCreate,
    CourseQuery,
    CourseUpdate,
    LessonCreate,
    LessonUpdate,
    check_textbook,
)
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound, PermissionDenied, Text, Unauthorized
from hub.i18n import N_
from hub.media import services as media_services
from hub.media.models import Blob
from hub.media.storage import Storage
from hub.search import changes as search_changes
from hub.sync.models import Change
from hub.textbooks.models import Textbook, TextbookNode
from hub.textbooks.services import node_path
from hub.uploads.models import Upload


def visible_clause(actor: User | None) -> ColumnElement[bool]:
    if actor is not None and actor.is_admin:
        return true()
    if actor is None:
        return Course.status == "published"
    if actor.review_region:
        return or_(
            Course.status == "published",
            Course.school_id == actor.school_id,
            and_(Course.status == "submitted", history.in_region(actor.review_region)),
        )
    return or_(Course.status == "published", Course.school_id == actor.school_id)


def course_is_public(session: Session, course_id: int) -> bool:
    """Whether anyone, anonymous included, may read the course: only then may shared caches keep it."""
    return session.scalar(select(Course.id).where(Course.id == course_id, visible_clause(None))) is not None


def can_edit(actor: User | None, course: Course) -> bool:
    if actor is None:
        return False
    return actor.is_admin or (actor.role == "uploader" and actor.school_id == course.school_id)


def _require_edit(actor: User | None, course: Course) -> None:
    if actor is None:
        raise Unauthorized(N_("Sign in to change courses."))
    if not can_edit(actor, course):
        raise PermissionDenied(N_("Only the school's uploaders can change this course."))


@dataclass(frozen=True)
class CoursePage:
    items: list[tuple[Course, int]]  # (course, number of lessons)
    total: int
    page: int
    per_page: int


def list_courses(session: Session, actor: User | None, query: CourseQuery, per_page: int) -> CoursePage:
    per_page = query.per_page or per_page
    conditions = [visible_clause(actor)]
    if query.status != "all":
        conditions.append(Course.status == query.status)
    if query.category:
        conditions.append(Course.category == query.category)
    if query.subject:
        conditions.append(Course.subject == query.subject)
    if query.grade:
        conditions.append(Course.grades_mask.op("&")(1 << query.grade) != 0)
    if query.edition:
        conditions.append(Course.edition == edition_filter(query.edition))
    if query.volume:
        conditions.append(Course.volume == query.volume)
    if query.language:
        conditions.append(Course.language == query.language)
    if query.school:
        conditions.append(Course.school_id == query.school)
    if query.mine:
        if actor is None:
            raise Unauthorized(N_("Sign in to list your school's courses."))
        conditions.append(Course.school_id == actor.school_id)
    total = session.scalar(select(func.count()).select_from(Course).where(*conditions)) or 0
    lesson_count = select(func.count(Lesson.id)).where(Lesson.course_id == Course.id).scalar_subquery()
    rows = session.execute(
        select(Course, lesson_count)
        .where(*conditions)
        .order_by(Course.published_at.desc().nulls_last(), Course.id.desc())
        .limit(per_page)
        .offset((query.page - 1) * per_page)
    ).all()
    return CoursePage([(c, n) for c, n in rows], total, query.page, per_page)


def edition_filter(edition: str) -> str:
    """What a course list's ``edition`` filter compares with: a listed edition's one spelling.

    Courses store a listed edition under its name (an alias typed in a form is stored as
    the name), so 部编版 must find the 统编版 courses. A name that is not listed is compared
    as typed: courses saved with "other" keep their free text and stay findable by it.
    """
    listed = editions.find(edition)
    return listed.name if listed else edition.strip()


def famous_first() -> ColumnElement[int]:
    """An ORDER BY key that puts famous schools' courses first (0) and the rest after (1).

    Where many schools teach the same chapter, a teacher starts from the famous schools'
    lessons (the reason the hub exists); the query must join School.
    """
    return case((School.kind == "famous", 0), else_=1)


def grade_subject_counts(session: Session) -> dict[tuple[str, int], int]:
    """Published courses per (subject, grade): the home page's grid."""
    counts: dict[tuple[str, int], int] = {}
    for subject, mask, n in session.execute(
        select(Course.subject, Course.grades_mask, func.count())
        .where(Course.status == "published")
        .group_by(Course.subject, Course.grades_mask)
    ):
        for grade in range(1, 10):
            if mask & (1 << grade):
                counts[(subject, grade)] = counts.get((subject, grade), 0) + n
    return counts


def get_course(session: Session, actor: User | None, course_id: int) -> Course:
    course = session.scalar(select(Course).where(Course.id == course_id, visible_clause(actor)))
    if course is None:
        raise NotFound(N_("There is no course %(id)s."), id=course_id)
    return course


def create_course(session: Session, actor: User | None, data: CourseCreate) -> Course:
    if actor is None:
        raise Unauthorized(N_("Sign in to create courses."))
    if actor.role not in ("admin", "uploader"):
        raise PermissionDenied(N_("Only uploaders and admins create courses."))
    school_id = actor.school_id
    if data.school is not None and data.school != actor.school_id:
        if not actor.is_admin:
            raise PermissionDenied(N_("Uploaders create courses for their own school only."))
        if session.get(School, data.school) is None:
            raise Invalid(N_("There is no school %(id)s."), {"school": N_("Unknown school")}, id=data.school)
        school_id = data.school
    course = Course(
        school_id=school_id,
        status="draft",
        version=1,
        **data.model_dump(exclude={"school", "grades", "edition", "edition_other", "textbook"}),
        edition=_edition(data.edition, data.edition_other, data.subject),
        grades_mask=grades_to_mask(data.grades),
    )
    if data.textbook is not None:
        follow_textbook(session, course, data.textbook)
    session.add(course)
    session.flush()
    _reindex(session, course.id)
    return course


def _edition(edition: str, other: str, subject: str) -> str:
    """The edition a course stores (hub.catalog.editions), or Invalid with the reason."""
    try:
        return editions.resolve(edition, other, subject)
    except editions.EditionError as exc:
        raise _invalid_edition(exc) from None


def _invalid_edition(exc: editions.EditionError) -> Invalid:
    # A field message is shown without parameters: the one with the edition's name goes on top.
    field = exc.template if not exc.params else N_("Choose an edition the list offers for this subject, or “other”.")
    return Invalid(exc.template, {"edition": field}, **exc.params)


def _reindex(session: Session, course_id: int) -> None:
    """Every change a reader could see reaches the search index, after commit."""
    search_changes.reindex(session, [course_id])


def update_course(session: Session, actor: User | None, course_id: int, data: CourseUpdate) -> Course:
    course = get_course(session, actor, course_id)
    _require_edit(actor, course)
    changes = data.model_dump(exclude_unset=True)
    subject = changes.get("subject", course.subject)
    if changes.get("edition") == course.edition and not changes.get("edition_other"):
        changes.pop("edition")  # sent back as read (a client PATCHing the whole course): nothing chosen
        changes.pop("edition_other", None)
    if "edition" in changes or "edition_other" in changes:
        changes["edition"] = _edition(changes.get("edition", ""), changes.pop("edition_other", ""), subject)
    elif "subject" in changes:
        try:  # the edition stays: it must publish the new subject (unless typed as "other" or saved before the list)
            editions.check_subject(course.edition, subject)
        except editions.EditionError as exc:
            raise _invalid_edition(exc) from None
    category = changes.get("category", course.category)
    edition = changes.get("edition", course.edition)
    volume = changes.get("volume", course.volume)
    try:
        check_textbook(category, edition, volume)
    except ValueError:
        raise Invalid(TEXTBOOK_ONLY_FOR_CURRICULUM, {"edition": Text(TEXTBOOK_ONLY_FOR_CURRICULUM)}) from None
    if "grades" in changes:
        course.grades_mask = grades_to_mask(changes.pop("grades"))
    textbook_changed = "textbook" in changes
    textbook_id = changes.pop("textbook", course.textbook_id)
    for name, value in changes.items():
        setattr(course, name, value)
    if textbook_changed or textbook_id is not None:
        # Chosen now, or kept while the subject, grades, edition or volume may have moved away from it.
        follow_textbook(session, course, textbook_id)
    if course.status == "published" and session.is_modified(course):
        course.version += 1
        session.add(Change(course_id=course.id, action="updated", version=course.version))
    session.flush()
    _reindex(session, course.id)
    return course


def publish_course(session: Session, actor: User | None, course_id: int) -> Course:
    """Publish the course; or, when HUB_REVIEW_REQUIRED is on, submit it to its region's reviewers.

    Admins publish directly either way. The answer's status says which happened.
    """
    course = get_course(session, actor, course_id)
    _require_edit(actor, course)
    if course.status == "published":
        return course  # publishing twice is harmless: nothing changes
    if not course.lessons:
        raise Conflict(N_("Add at least one lesson before publishing the course."))
    assert actor is not None  # _require_edit
    if history.review_required(session) and not actor.is_admin:
        if course.status != "submitted":
            course.status = "submitted"
            history.log_event(session, course, "submitted", actor)
            session.flush()
        return course
    make_published(session, course, actor, "published")
    return course


def make_published(session: Session, course: Course, actor: User | None, action: str) -> None:
    """The course becomes public: a new version for school servers, the index, the history."""
    if course.published_at is not None:
        course.version += 1  # a re-publication after withdrawal is a new version
    course.status = "published"
    course.published_at = utcnow()
    session.add(Change(course_id=course.id, action="published", version=course.version))
    history.log_event(session, course, action, actor)
    session.flush()
    _reindex(session, course.id)


def withdraw_course(session: Session, actor: User | None, course_id: int) -> Course:
    course = get_course(session, actor, course_id)
    _require_edit(actor, course)
    if course.status == "withdrawn":
        return course
    if course.status != "published":
        raise Conflict(N_("Only a published course can be withdrawn; this one is a draft."))
    course.status = "withdrawn"
    course.version += 1
    session.add(Change(course_id=course.id, action="withdrawn", version=course.version))
    history.log_event(session, course, "withdrawn", actor)
    session.flush()
    _reindex(session, course.id)
    return course


def delete_course(session: Session, actor: User | None, course_id: int) -> None:
    """Delete a draft or withdrawn course; a published one must be withdrawn first.

    The blobs stay: they are shared by content and may serve other materials.
    """
    course = get_course(session, actor, course_id)
    _require_edit(actor, course)
    if course.status == "published":
        raise Conflict(N_("Withdraw the course before deleting it: school servers may be mirroring it."))
    session.delete(course)
    session.flush()
    _reindex(session, course_id)


# -- following a textbook ---------------------------------------------------------------
#
# A course may follow one textbook (hub.textbooks) and its lessons attach to that book's
# nodes. The book must be the course's: same subject, one of its grades, and the course's
# edition and volume (filled in from the book when the course left them empty). Sync,
# bundles and the course ZIP carry the alignment by the book's and the nodes' keys.


def follow_textbook(session: Session, course: Course, textbook_id: int | None) -> None:
    """Make ``course`` follow the textbook ``textbook_id`` (None: no textbook), or Invalid saying why not.

    Lessons attached to nodes of another book (the one followed before) are detached:
    a lesson's node is always in its course's textbook.
    """
    if textbook_id is None:
        book = None
    else:
        book = session.get(Textbook, textbook_id)
        if book is None:
            raise _invalid_textbook(N_("There is no textbook %(id)s."), id=textbook_id)
        if course.category != "curriculum":
            raise _invalid_textbook(N_("Only a curriculum course follows a textbook."))
        if book.subject != course.subject:
            raise _invalid_textbook(N_("%(book)s is not a textbook of this course's subject."), book=_book_name(book))
        if book.grade not in course.grades:
            raise _invalid_textbook(
                N_("%(book)s is for grade %(grade)s, which this course does not cover."),
                book=_book_name(book),
                grade=book.grade,
            )
        if course.edition and course.edition != book.edition:
            raise _invalid_textbook(
                N_("%(book)s is not of this course's edition (%(edition)s)."), book=_book_name(book),
                edition=course.edition,
            )  # fmt: skip
        if course.volume and course.volume != book.volume:
            raise _invalid_textbook(
                N_("%(book)s is not this course's volume (%(volume)s)."), book=_book_name(book), volume=course.volume
            )
        course.edition = course.edition or book.edition
        course.volume = course.volume or book.volume
    if course.textbook_id != textbook_id and course.id is not None:
        for lesson in course.lessons:
            if lesson.textbook_node_id is not None:
                lesson.textbook_node_id = None
    course.textbook_id = textbook_id


def _book_name(book: Textbook) -> str:
    return f"{book.edition} {book.title}"


def _invalid_textbook(template: str, **params: object) -> Invalid:
    return Invalid(template, {"textbook": Text(template, **params)}, **params)


def _attach(session: Session, lesson: Lesson, course: Course, node_id: int | None) -> None:
    """Attach ``lesson`` to the node ``node_id`` of its course's textbook (None: to none), or Invalid.

    A lesson with no unit takes its chapter's title as its unit, which search and pages show.
    """
    if node_id is None:
        lesson.textbook_node_id = None
        return
    node = session.get(TextbookNode, node_id)
    if node is None:
        raise _invalid_node(N_("There is no textbook chapter %(id)s."), id=node_id)
    if course.textbook_id is None:
        raise _invalid_node(
            N_("Choose the course's textbook first: a lesson attaches to a chapter of the textbook its course follows.")
        )
    if node.textbook_id != course.textbook_id:
        raise _invalid_node(
            N_("%(node)s is in %(other)s, not in %(book)s, the textbook this course follows."),
            node=f"{node.key} {node.title}",
            other=_book_name(node.textbook),
            book=_book_name(session.get(Textbook, course.textbook_id)),  # type: ignore[arg-type]
        )
    lesson.textbook_node_id = node.id
    if not lesson.unit:
        chapter = node_path(node)[0]
        lesson.unit = chapter.title[:100]


def _invalid_node(template: str, **params: object) -> Invalid:
    return Invalid(template, {"node": Text(template, **params)}, **params)


def create_lesson(session: Session, actor: User | None, course_id: int, data: LessonCreate) -> Lesson:
    course = get_course(session, actor, course_id)
    _require_edit(actor, course)
    position = data.position
    if position is None:
        last = session.scalar(select(func.max(Lesson.position)).where(Lesson.course_id == course.id))
        position = (last or 0) + 1
    lesson = Lesson(course=course, position=position, **data.model_dump(exclude={"position", "node"}))
    session.add(lesson)
    if data.node is not None:
        _attach(session, lesson, course, data.node)
    session.flush()
    _content_changed(session, course)
    return lesson


def list_lessons(session: Session, actor: User | None, course_id: int) -> list[Lesson]:
    course = get_course(session, actor, course_id)
    return list(
        session.scalars(
            select(Lesson)
            .where(Lesson.course_id == course.id)
            .order_by(Lesson.position, Lesson.id)
            .options(
                selectinload(Lesson.materials).selectinload(Material.renditions),
                selectinload(Lesson.materials).selectinload(Material.subtitles),
            )
        )
    )


def get_lesson(session: Session, actor: User | None, lesson_id: int) -> Lesson:
    lesson = session.scalar(
        select(Lesson)
        .join(Course)
        .where(Lesson.id == lesson_id, visible_clause(actor))
        .options(
            selectinload(Lesson.materials).selectinload(Material.renditions),
            selectinload(Lesson.materials).selectinload(Material.subtitles),
        )
    )
    if lesson is None:
        raise NotFound(N_("There is no lesson %(id)s."), id=lesson_id)
    return lesson


@dataclass(frozen=True)
class LessonLink:
    id: int
    title: str


@dataclass(frozen=True)
class NodeLesson:
    """A lesson of another course attached to the same textbook node: what a lesson page offers besides its own."""

    id: int
    title: str
    course_title: str
    school: str
    famous: bool


@dataclass(frozen=True)
class LessonPage:
    """A lesson with the lessons before and after it in its course (the page's previous/next links),
    the textbook node it teaches and the other courses' lessons for that node."""

    lesson: Lesson
    previous: LessonLink | None
    next: LessonLink | None
    node: TextbookNode | None  # the 课时 or section the lesson teaches, if aligned
    textbook: Textbook | None
    others: list[NodeLesson]


# How many other courses' lessons a lesson page lists for its 课时: a short list to choose from, not a catalog.
OTHER_LESSONS_SHOWN = 10


def get_lesson_page(session: Session, actor: User | None, lesson_id: int) -> LessonPage:
    lesson = get_lesson(session, actor, lesson_id)
    # The course's order: position, then id for lessons that share a position.
    siblings = [
        LessonLink(row.id, row.title)
        for row in session.execute(
            select(Lesson.id, Lesson.title)
            .where(Lesson.course_id == lesson.course_id)
            .order_by(Lesson.position, Lesson.id)
        )
    ]
    here = next(i for i, link in enumerate(siblings) if link.id == lesson.id)
    node = session.get(TextbookNode, lesson.textbook_node_id) if lesson.textbook_node_id else None
    return LessonPage(
        lesson,
        siblings[here - 1] if here > 0 else None,
        siblings[here + 1] if here + 1 < len(siblings) else None,
        node,
        node.textbook if node else None,
        node_lessons(session, node.id, exclude_course=lesson.course_id, limit=OTHER_LESSONS_SHOWN) if node else [],
    )


def node_lessons(
    session: Session, node_id: int, exclude_course: int | None = None, limit: int | None = None
) -> list[NodeLesson]:
    """The published lessons attached to one textbook node, famous schools first (see lessons_by_node)."""
    query = _node_lessons_query().where(Lesson.textbook_node_id == node_id).limit(limit)
    if exclude_course is not None:
        query = query.where(Lesson.course_id != exclude_course)
    return [NodeLesson(i, t, c, s, k == "famous") for _, i, t, c, s, k in session.execute(query)]


def lessons_by_node(session: Session, textbook_id: int) -> dict[int, list[NodeLesson]]:
    """Every published lesson attached to a node of the textbook, by node id, famous schools first."""
    nodes = select(TextbookNode.id).where(TextbookNode.textbook_id == textbook_id)
    found: dict[int, list[NodeLesson]] = {}
    for node, i, t, c, s, k in session.execute(_node_lessons_query().where(Lesson.textbook_node_id.in_(nodes))):
        found.setdefault(node or 0, []).append(NodeLesson(i, t, c, s, k == "famous"))
    return found


def _node_lessons_query() -> Select[int | None, int, str, str, str, str]:
    # Only published courses: the lists are public (a lesson page, the browse-by-textbook
    # page), whoever reads them. Within a kind of school, the most recently published
    # course first, then each course's own order.
    return (
        select(Lesson.textbook_node_id, Lesson.id, Lesson.title, Course.title, School.name, School.kind)
        .join(Course, Lesson.course_id == Course.id)
        .join(School, Course.school_id == School.id)
        .where(visible_clause(None))
        .order_by(famous_first(), Course.published_at.desc().nulls_last(), Course.id, Lesson.position, Lesson.id)
    )


def get_material(session: Session, actor: User | None, material_id: int) -> Material:
    material = session.scalar(
        select(Material)
        .join(Lesson)
        .join(Course)
        .where(Material.id == material_id, visible_clause(actor))
        .options(selectinload(Material.renditions))
    )
    if material is None:
        raise NotFound(N_("There is no material %(id)s."), id=material_id)
    return material


def add_material(
    session: Session,
    storage: Storage,
    actor: User | None,
    lesson_id: int,
    fileobj: IO[bytes],
    *,
    filename: str,
    title: str,
) -> Material:
    """Store an uploaded original and queue its processing after commit."""
    lesson = get_lesson(session, actor, lesson_id)
    _require_edit(actor, lesson.course)
    title = title.strip() or filename
    if not title or len(title) > 200:
        raise Invalid(N_("A material needs a title of at most 200 characters."), {"title": "1 to 200 characters"})
    blob, kind = media_services.store_original(session, storage, fileobj, filename)
    material = Material(
        lesson=lesson,
        kind=kind,
        title=title,
        filename=media_services.safe_filename(filename),
        original=blob,
        status="pending",
    )
    session.add(material)
    session.flush()
    jobs.enqueue(session, media_services.process_task(material.kind), material.id)
    _reindex(session, lesson.course_id)
    return material


# -- editing a course's content --------------------------------------------------------
#
# Each change below reaches readers three ways, all from the same transaction: the search
# index (a task after commit), the change feed (a published course gets a new version),
# and school servers, whose next pull sees the lessons' changed_at stamps move
# (hub.catalog.models stamps them on every write) and fetches only those lessons as a
# patch; a lesson deleted here is missing from the course's lesson list, so it is deleted
# there too.


def _content_changed(session: Session, course: Course) -> None:
    """A course's lessons or materials changed: a new version if published, and the index follows."""
    if course.status == "published":
        course.version += 1
        session.add(Change(course_id=course.id, action="updated", version=course.version))
    session.flush()
    _reindex(session, course.id)


def _editable_lesson(session: Session, actor: User | None, lesson_id: int) -> Lesson:
    lesson = get_lesson(session, actor, lesson_id)
    _require_edit(actor, lesson.course)
    return lesson


def _editable_material(session: Session, actor: User | None, material_id: int) -> Material:
    material = get_material(session, actor, material_id)
    _require_edit(actor, material.lesson.course)
    return material


def _course_order(session: Session, course_id: int) -> list[Lesson]:
    """The course's lessons first to last (position, then id for lessons that share one)."""
    return list(
        session.scalars(select(Lesson).where(Lesson.course_id == course_id).order_by(Lesson.position, Lesson.id))
    )


def _renumber(lessons: list[Lesson]) -> bool:
    """Positions 1..n in this order, writing only the lessons whose position changes; whether any did.

    Only those get a new changed_at stamp, so a school server's next pull fetches
    them alone: moving a lesson up one place re-sends two lessons, not the course.
    """
    changed = False
    for number, lesson in enumerate(lessons, start=1):
        if lesson.position != number:
            lesson.position = number
            changed = True
    return changed


def update_lesson(session: Session, actor: User | None, lesson_id: int, data: LessonUpdate) -> Lesson:
    """Change a lesson's title, unit or summary, and move it when ``position`` is given."""
    lesson = _editable_lesson(session, actor, lesson_id)
    changes = data.model_dump(exclude_unset=True)
    position = changes.pop("position", None)
    attach = "node" in changes
    node = changes.pop("node", None)
    for name, value in changes.items():
        setattr(lesson, name, value)
    if attach:
        _attach(session, lesson, lesson.course, node)
    moved = position is not None and _place(session, lesson, position)
    if moved or session.is_modified(lesson):
        _content_changed(session, lesson.course)
    return lesson


def move_lesson(session: Session, actor: User | None, lesson_id: int, position: int) -> Lesson:
    """Put a lesson at ``position`` (1 is first; past the end means last); the others close up."""
    lesson = _editable_lesson(session, actor, lesson_id)
    if _place(session, lesson, position):
        _content_changed(session, lesson.course)
    return lesson


def _place(session: Session, lesson: Lesson, position: int) -> bool:
    """Move the lesson to `position` in its course; whether any lesson's position changed."""
    order = _course_order(session, lesson.course_id)
    order.remove(lesson)
    order.insert(max(0, min(position, len(order) + 1) - 1), lesson)
    return _renumber(order)


def reorder_lessons(session: Session, actor: User | None, course_id: int, lesson_ids: list[int]) -> list[Lesson]:
    """Put every lesson of the course in the order given; returns them in that order."""
    course = get_course(session, actor, course_id)
    _require_edit(actor, course)
    order = _course_order(session, course.id)
    by_id = {lesson.id: lesson for lesson in order}
    if len(lesson_ids) != len(set(lesson_ids)):
        raise Invalid(N_("The new order names a lesson twice."), {"lessons": N_("Each lesson once")})
    if set(lesson_ids) != set(by_id):
        missing = sorted(set(by_id) - set(lesson_ids))
        unknown = sorted(set(lesson_ids) - set(by_id))
        raise Invalid(
            N_("The new order must name every lesson of the course once: missing %(missing)s, not in it %(unknown)s."),
            {"lessons": N_("Every lesson of the course, once each")},
            missing=", ".join(map(str, missing)) or "-",
            unknown=", ".join(map(str, unknown)) or "-",
        )
    wanted = [by_id[lesson_id] for lesson_id in lesson_ids]
    if _renumber(wanted):
        _content_changed(session, course)
    return wanted


def delete_lesson(session: Session, actor: User | None, lesson_id: int) -> Course:
    """Delete a lesson with its materials; their bytes go once nothing else uses them. Returns its course."""
    lesson = _editable_lesson(session, actor, lesson_id)
    course = lesson.course
    blobs = [sha for material in lesson.materials for sha in _material_blobs(session, material)]
    session.delete(lesson)
    session.flush()
    media_services.forget_blobs_later(session, blobs)
    _content_changed(session, course)
    return course


def delete_material(session: Session, actor: User | None, material_id: int) -> Lesson:
    """Delete a material; its original's and renditions' bytes go once nothing else uses them. Returns its lesson."""
    material = _editable_material(session, actor, material_id)
    lesson = material.lesson
    blobs = _material_blobs(session, material)
    lesson.materials.remove(material)  # delete-orphan: the material, its renditions and subtitles go
    # Stamped here, not left to the flush hook: the orphan may have lost its lesson_id by then,
    # and a school server's patch must carry this lesson without the material.
    lesson.changed_at = utcnow()
    session.flush()
    media_services.forget_blobs_later(session, blobs)
    _content_changed(session, lesson.course)
    return lesson


def _material_blobs(session: Session, material: Material) -> list[str]:
    """Every blob a material holds, and the uploads that made it let go of it.

    An upload keeps its blob's name (a retried request finds its material by it);
    once the material goes, the upload is spent: it expires, so its blob can go too.
    """
    session.execute(
        update(Upload)
        .where(Upload.material_id == material.id)
        .values(status="expired", blob_sha256=None)
        .execution_options(synchronize_session=False)
    )
    shas = [material.original_sha256]
    shas += [r.blob_sha256 for r in material.renditions if r.blob_sha256]
    shas += [t.blob_sha256 for t in material.subtitles]
    return shas


def replace_material(
    session: Session,
    storage: Storage,
    actor: User | None,
    material_id: int,
    fileobj: IO[bytes],
    *,
    filename: str,
    title: str = "",
) -> Material:
    """Replace a material's file with an uploaded one (multipart); see :func:`replace_original`."""
    _editable_material(session, actor, material_id)  # refuse before reading a byte
    blob, kind = media_services.store_original(session, storage, fileobj, filename)
    return replace_original(session, actor, material_id, blob, kind, filename=filename, title=title)


def replace_original(
    session: Session, actor: User | None, material_id: int, blob: Blob, kind: str, *, filename: str, title: str = ""
) -> Material:
    """Give a material a new original: same id and place in its lesson, processed afresh.

    Its renditions and chapters go (made from the old file); subtitles stay for a
    recording (a re-cut lecture keeps its words), not for a file that is no longer
    video or audio. The old bytes go once nothing else uses them. An empty ``title``
    keeps the material's title.
    """
    material = _editable_material(session, actor, material_id)
    title = title.strip()
    if len(title) > 200:
        raise Invalid(N_("A material needs a title of at most 200 characters."), {"title": N_("1 to 200 characters")})
    old = _material_blobs(session, material)
    material.renditions.clear()
    if kind in ("video", "audio"):
        kept = {track.blob_sha256 for track in material.subtitles}
        old = [sha for sha in old if sha not in kept]
    else:
        material.subtitles.clear()
    material.original = blob
    material.kind = kind
    material.filename = media_services.safe_filename(filename)
    if title:
        material.title = title
    material.status = "pending"
    material.progress = 0
    material.error = ""
    material.chapters = None
    session.flush()
    media_services.forget_blobs_later(session, [sha for sha in old if sha != blob.sha256])
    jobs.enqueue(session, media_services.process_task(material.kind), material.id)
    _content_changed(session, material.lesson.course)
    return material
