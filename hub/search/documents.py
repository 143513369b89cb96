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
from hub.vocab import CATEGORIES, GRADE_NAMES, SUBJECTS

Document = dict[str, Any]


@dataclass
class LessonSource:
    id: int
    position: int
    title: str
    summary: str
    unit: str
    materials: list[tuple[str, str]] = field(default_factory=list)  # (kind, title)
    transcripts: list[str] = field(default_factory=list)  # of its subtitles (hub.subtitles.webvtt)


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
            )
            .join(School, School.id == Course.school_id)
            .where(Course.status == "published", Course.id > last_id)
            .order_by(Course.id)
            .limit(batch)
        )
        if course_ids is not None:
            query = query.where(Course.id.in_(list(course_ids)))
        courses = {
            row[0]: CourseSource(
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
            for row in session.execute(query)
        }
        if not courses:
            return
        lessons: dict[int, LessonSource] = {}
        for lid, cid, position, title, summary, unit in session.execute(
            select(Lesson.id, Lesson.course_id, Lesson.position, Lesson.title, Lesson.summary, Lesson.unit)
            .where(Lesson.course_id.in_(list(courses)))
            .order_by(Lesson.course_id, Lesson.position, Lesson.id)
        ):
            lesson = LessonSource(lid, position, title, summary or "", unit or "")
            lessons[lid] = lesson
            courses[cid].lessons.append(lesson)
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
    for lesson in course.lessons:
        lesson_kinds = sorted({kind for kind, _ in lesson.materials})
        kinds.update(lesson_kinds)
        material_titles = [title for _, title in lesson.materials]
        outline.extend([lesson.title, lesson.unit, *material_titles])
        body = " ".join([lesson.summary, lesson.unit, *material_titles, course.title, *context])
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
                "pinyin": analysis.pinyin_terms(lesson.title) + analysis.pinyin_terms(lesson.unit),
                "pytitle": analysis.pinyin_grams(lesson.title, unigrams=True),
                "pybody": body_pinyin,
                "spell": sorted(
                    analysis.spell_words(f"{lesson.title} {lesson.unit}")
                    | analysis.spell_words(lesson.summary, cjk_words=False)
                ),
                "kind": lesson_kinds or ["-"],
                "digest": _digest(lesson.title, body, lesson_kinds),
                **facets,
            }
        )
    body = " ".join([course.summary, course.teacher, *context, *outline])
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
            "digest": _digest(course.title, body, sorted(kinds), facets),
            **facets,
        },
    )
    # A lesson's digest must change when its course's facets do, too.
    for doc in documents[1:]:
        doc["digest"] = _digest(doc["digest"], facets)
    return documents


def digests(documents: Iterable[Document]) -> dict[str, str]:
    return {doc["key"]: doc["digest"] for doc in documents}
