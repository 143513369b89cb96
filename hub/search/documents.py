"""Search documents built from the catalog: one per published course, one per lesson.

Rows are read with plain Core selects (no ORM objects): a full rebuild reads
every published course, lesson and material, and ORM identity-map overhead
would cost more than the analysis itself. Only published courses are loaded:
drafts and withdrawn courses never reach the index, so the index cannot leak
them; :func:`hub.search.services.search` checks visibility again when it
hydrates hits, for the moments between a change and its index update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.catalog.models import Course, Lesson, Material
from hub.search import analysis
from hub.search.schema import SCHEMA_VERSION
from hub.subtitles.models import Subtitle
from hub.subtitles.webvtt import parse_transcript
from hub.textbooks.browse import label
from hub.textbooks.models import Textbook, TextbookNode
from hub.vocab import CATEGORIES, GRADE_NAMES, SUBJECTS

Document = dict[str, Any]


@dataclass(frozen=True)
class BookSource:
    key: str  # the textbook's key: the ``textbook`` facet's value and filter
    label: str  # 人教版 数学 三年级 上册: searchable, as a teacher names the book


@dataclass(frozen=True)
class NodeSource:
    """Where a lesson sits in its textbook: the book, the chapter above it, the node itself."""

    book: BookSource
    chapter_key: str  # the top node (单元/章) above the lesson's node, or the node itself
    chapter_title: str
    title: str  # the node's own title (a 课时 or a section), the chapter's when it is one

    @property
    def chapter(self) -> str:
        """The ``chapter`` facet's value: the book's key and the chapter's, e.g. renjiao-math-3-1/2."""
        return f"{self.book.key}/{self.chapter_key}"


@dataclass
class LessonSource:
    id: int
    position: int
    title: str
    summary: str
    unit: str
    materials: list[tuple[str, str]] = field(default_factory=list)  # (kind, title)
    transcripts: list[str] = field(default_factory=list)  # of its subtitles (hub.subtitles.webvtt)
    node: NodeSource | None = None  # the textbook node it teaches, if aligned


@dataclass
class CourseSource:
    id: int
    title: str
    summary: str
    category: str
    subject: str
    grades: list[int]
    edition: str
    volume: str
    language: str
    license: str
    teacher: str
    school_id: int
    school_name: str
    lessons: list[LessonSource] = field(default_factory=list)
    textbook: BookSource | None = None  # the textbook the course follows, if any


def course_key(course_id: int) -> str:
    return f"course:{course_id}"


def lesson_key(lesson_id: int) -> str:
    return f"lesson:{lesson_id}"


def load_courses(session: Session, course_ids: Sequence[int] | None = None, batch: int = 500) -> Iterator[CourseSource]:
    """Published courses with their lessons and materials, in id order, ``batch`` courses per query."""
    last_id = 0
    while True:
        query = (
            select(
                Course.id,
                Course.title,
                Course.summary,
                Course.category,
                Course.subject,
                Course.grades_mask,
                Course.edition,
                Course.volume,
                Course.language,
                Course.license,
                Course.teacher,
                Course.school_id,
                School.name,
                Course.textbook_id,
            )
            .join(School, School.id == Course.school_id)
            .where(Course.status == "published", Course.id > last_id)
            .order_by(Course.id)
            .limit(batch)
        )
        if course_ids is not None:
            query = query.where(Course.id.in_(list(course_ids)))
        courses: dict[int, CourseSource] = {}
        book_of: dict[int, int] = {}  # course id → the textbook it follows
        for row in session.execute(query):
            courses[row[0]] = CourseSource(
                id=row[0],
                title=row[1],
                summary=row[2] or "",
                category=row[3],
                subject=row[4],
                grades=[g for g in range(1, 10) if row[5] & (1 << g)],
                edition=row[6] or "",
                volume=row[7] or "",
                language=row[8],
                license=row[9],
                teacher=row[10] or "",
                school_id=row[11],
                school_name=row[12],
            )
            if row[13] is not None:
                book_of[row[0]] = row[13]
        if not courses:
            return
        lessons: dict[int, LessonSource] = {}
        node_of: dict[int, int] = {}
        for lid, cid, position, title, summary, unit, node_id in session.execute(
            select(
                Lesson.id,
                Lesson.course_id,
                Lesson.position,
                Lesson.title,
                Lesson.summary,
                Lesson.unit,
                Lesson.textbook_node_id,
            )
            .where(Lesson.course_id.in_(list(courses)))
            .order_by(Lesson.course_id, Lesson.position, Lesson.id)
        ):
            lesson = LessonSource(lid, position, title, summary or "", unit or "")
            lessons[lid] = lesson
            courses[cid].lessons.append(lesson)
            if node_id is not None:
                node_of[lid] = node_id
        if book_of or node_of:
            books, nodes = _textbooks(session, set(book_of.values()), set(node_of.values()))
            for course_id, book_id in book_of.items():
                courses[course_id].textbook = books.get(book_id)
            for lesson_id, node_id in node_of.items():
                lessons[lesson_id].node = nodes.get(node_id)
        if lessons:
            for lesson_id, kind, title in session.execute(
                select(Material.lesson_id, Material.kind, Material.title)
                .join(Lesson, Lesson.id == Material.lesson_id)
                .where(Lesson.course_id.in_(list(courses)))
                .order_by(Material.id)
            ):
                lessons[lesson_id].materials.append((kind, title))
            for lesson_id, transcript in session.execute(
                select(Material.lesson_id, Subtitle.transcript)
                .join(Material, Material.id == Subtitle.material_id)
                .join(Lesson, Lesson.id == Material.lesson_id)
                .where(Lesson.course_id.in_(list(courses)))
                .order_by(Material.id, Subtitle.language)
            ):
                lessons[lesson_id].transcripts.append(transcript)
        yield from courses.values()
        last_id = max(courses)
        if len(courses) < batch:
            return


def _textbooks(
    session: Session, book_ids: set[int], node_ids: set[int]
) -> tuple[dict[int, BookSource], dict[int, NodeSource]]:
    """The books and nodes a batch of courses names, each node with the chapter above it.

    Every node of the books involved is read (a book has ~100): walking up to the
    chapter in memory costs less than a query per level.
    """
    book_ids = book_ids | set(
        session.scalars(select(TextbookNode.textbook_id).where(TextbookNode.id.in_(list(node_ids))).distinct())
    )
    books = {
        row.id: BookSource(row.key, label(row))
        for row in session.scalars(select(Textbook).where(Textbook.id.in_(list(book_ids))))
    }
    tree = {
        row.id: row
        for row in session.execute(
            select(
                TextbookNode.id, TextbookNode.parent_id, TextbookNode.textbook_id, TextbookNode.key, TextbookNode.title
            ).where(TextbookNode.textbook_id.in_(list(books)))
        )
    }
    nodes: dict[int, NodeSource] = {}
    for node_id in node_ids:
        node = tree.get(node_id)
        if node is None:
            continue
        top = node
        for _ in range(len(tree)):  # bounded: a damaged tree with a cycle cannot loop forever
            if top.parent_id is None or top.parent_id not in tree:
                break
            top = tree[top.parent_id]
        nodes[node_id] = NodeSource(books[node.textbook_id], top.key, top.title, node.title)
    return books, nodes


def _context(course: CourseSource) -> list[str]:
    """What a teacher may type about the course around a lesson: subject, grade, textbook."""
    zh, en = SUBJECTS.get(course.subject, ("", ""))
    cat_zh, cat_en = CATEGORIES.get(course.category, ("", ""))
    parts = [zh, en, course.subject, cat_zh, cat_en, course.edition, course.volume, course.school_name]
    for grade in course.grades:
        parts.append(GRADE_NAMES[grade])
        parts.append(f"grade {grade}")
    return parts


def _transcript_terms(transcripts: list[str]) -> str:
    """The distinct terms of a lesson's subtitles, space-separated, in order of first use.

    Each term once: a transcript makes a lesson findable by any word spoken in it, but
    an hour of speech counted term by term would swamp the lesson's own words in
    BM25 (and its length would sink it below lessons without subtitles).
    """
    if not transcripts:
        return ""
    terms: dict[str, None] = {}
    for transcript in transcripts:
        for _, cue in parse_transcript(transcript):  # cue by cue: analyze() reads a bounded prefix of a text
            terms.update(dict.fromkeys(analysis.analyze(cue)))
    return " ".join(terms)


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(repr((SCHEMA_VERSION, parts)).encode(), digest_size=12).hexdigest()


def course_documents(course: CourseSource) -> list[Document]:
    """The course's own document followed by one per lesson."""
    context = _context(course)
    facets = {
        "category": course.category,
        "subject": course.subject,
        "grade": [str(g) for g in course.grades],
        "edition": course.edition or "-",
        "language": course.language,
        "school": str(course.school_id),
        "license": course.license,
    }
    course_id = str(course.id)
    documents: list[Document] = []
    kinds: set[str] = set()
    outline: list[str] = []
    books: set[str] = {course.textbook.key} if course.textbook else set()
    chapters: set[str] = set()
    for lesson in course.lessons:
        lesson_kinds = sorted({kind for kind, _ in lesson.materials})
        kinds.update(lesson_kinds)
        material_titles = [title for _, title in lesson.materials]
        aligned = _aligned(lesson.node)
        outline.extend([lesson.title, lesson.unit, *material_titles, *aligned[1:]])
        node = lesson.node
        if node is not None:
            books.add(node.book.key)
            chapters.add(node.chapter)
        placed = {
            # A lesson not aligned to a node is still in its course's book.
            "textbook": node.book.key if node else (course.textbook.key if course.textbook else "-"),
            "chapter": node.chapter if node else "-",
        }
        body = " ".join([lesson.summary, lesson.unit, *aligned, *material_titles, course.title, *context])
        # Pinyin not of the transcript: an hour of speech in pinyin would double
        # the index for words a teacher rarely searches by sound.
        body_pinyin: list[str] = []
        body_terms = analysis.analyze(body, pinyin=body_pinyin)
        spoken = _transcript_terms(lesson.transcripts)
        if spoken:
            body = f"{body} {spoken}"  # the digest sees them
            body_terms.extend(spoken.split(" "))
        documents.append(
            {
                "key": lesson_key(lesson.id),
                "course": course_id,
                "type": "lesson",
                "title": analysis.analyze(lesson.title, unigrams=True),
                "body": body_terms,
                "pinyin": analysis.pinyin_terms(lesson.title)
                + analysis.pinyin_terms(lesson.unit)
                + [term for text in aligned[1:] for term in analysis.pinyin_terms(text)],
                "pytitle": analysis.pinyin_grams(lesson.title, unigrams=True),
                "pybody": body_pinyin,
                "spell": sorted(
                    analysis.spell_words(" ".join([lesson.title, lesson.unit, *aligned[1:]]))
                    | analysis.spell_words(lesson.summary, cjk_words=False)
                ),
                "kind": lesson_kinds or ["-"],
                "digest": _digest(lesson.title, body, lesson_kinds, placed),
                **facets,
                **placed,
            }
        )
    if course.textbook:
        outline.append(course.textbook.label)
    body = " ".join([course.summary, course.teacher, *context, *outline])
    course_placed = {"textbook": sorted(books) or ["-"], "chapter": sorted(chapters) or ["-"]}
    body_pinyin = []
    body_terms = analysis.analyze(body, pinyin=body_pinyin)
    documents.insert(
        0,
        {
            "key": course_key(course.id),
            "course": course_id,
            "type": "course",
            "title": analysis.analyze(course.title, unigrams=True),
            "body": body_terms,
            "pinyin": analysis.pinyin_terms(course.title),
            "pytitle": analysis.pinyin_grams(course.title, unigrams=True),
            "pybody": body_pinyin,
            "spell": sorted(analysis.spell_words(course.title) | analysis.spell_words(course.summary, cjk_words=False)),
            "kind": sorted(kinds) or ["-"],
            "digest": _digest(course.title, body, sorted(kinds), facets, course_placed),
            **facets,
            **course_placed,
        },
    )
    # A lesson's digest must change when its course's facets do, too.
    for doc in documents[1:]:
        doc["digest"] = _digest(doc["digest"], facets)
    return documents


def _aligned(node: NodeSource | None) -> list[str]:
    """What a lesson's textbook node adds to its text: the book, the chapter, the node's own title."""
    if node is None:
        return []
    titles = [node.book.label, node.chapter_title]
    if node.title != node.chapter_title:
        titles.append(node.title)
    return titles


def digests(documents: Iterable[Document]) -> dict[str, str]:
    return {doc["key"]: doc["digest"] for doc in documents}
