"""schema.org ``LearningResource`` descriptions of the course and lesson pages (JSON-LD).

Search engines and regional platforms read these instead of the page's layout. They
are built from objects the pages already loaded (the course page's lessons with
their materials and renditions; the lesson page's lesson), so they cost no query.
Only public (published) courses and their lessons are described: a draft seen by
its own school is nobody else's business.

The template writes the result with Flask's ``tojson``, which escapes ``<``, ``>``,
``&`` and ``'``: a title holding ``</script>`` cannot end the data block early.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hub.catalog.models import Course, Lesson
from hub.harvest.metadata import LICENSE_URLS, absolute_url
from hub.vocab import CATEGORIES, GRADE_NAMES, SUBJECTS

CONTEXT = "https://schema.org"


def _organization(course: Course) -> dict[str, Any]:
    return {"@type": "Organization", "name": course.school.name}


def _textbook(course: Course) -> str:
    """The textbook a curriculum course follows, as a teacher names it: 人教版 数学 九年级上册."""
    grades = "".join(GRADE_NAMES[g] for g in course.grades[:1]) if len(course.grades) == 1 else ""
    return " ".join(p for p in (course.edition, SUBJECTS[course.subject][0], f"{grades}{course.volume}") if p)


def _common(course: Course) -> dict[str, Any]:
    return {
        "inLanguage": course.language,
        "license": LICENSE_URLS[course.license],
        "educationalLevel": [GRADE_NAMES[g] for g in course.grades],
        "author": _organization(course),
        "publisher": _organization(course),
        "about": {"@type": "Thing", "name": SUBJECTS[course.subject][0]},
    }


def _subject_alignment(course: Course) -> dict[str, Any]:
    subject = SUBJECTS[course.subject][0]
    return {"@type": "AlignmentObject", "alignmentType": "educationalSubject", "targetName": subject}


def _encodings(lesson: Lesson) -> list[dict[str, Any]]:
    """One MediaObject per ready rendition of the lesson's materials."""
    out = []
    for material in lesson.materials:
        for r in material.renditions:
            if r.status != "ready" or not r.blob_sha256 or r.blob is None:
                continue
            media: dict[str, Any] = {
                "@type": "MediaObject",
                "name": f"{material.title} ({r.profile})",
                "contentUrl": absolute_url("media_api.download_blob", sha256=r.blob_sha256),
                "encodingFormat": r.blob.media_type,
                "contentSize": f"{r.bytes if r.bytes is not None else r.blob.size} B",
            }
            if r.width and r.height:
                media["width"] = f"{r.width} px"
                media["height"] = f"{r.height} px"
            if r.duration:
                media["duration"] = f"PT{round(r.duration)}S"
            if r.kbps:
                media["bitrate"] = f"{round(r.kbps)} kbit/s"
            out.append(media)
    return out


def course_resource(course: Course, lessons: Iterable[Lesson]) -> dict[str, Any] | None:
    """The course page's description; None for a course that is not public."""
    if course.status != "published":
        return None
    url = absolute_url("catalog.course_page", course_id=course.id)
    resource: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "LearningResource",
        "@id": url,
        "url": url,
        "name": course.title,
        "description": course.summary,
        "learningResourceType": "Course",
        "genre": CATEGORIES[course.category][0],
        **_common(course),
        "educationalAlignment": [_subject_alignment(course)],
        "hasPart": [
            {
                "@type": "LearningResource",
                "@id": absolute_url("catalog.lesson_page", lesson_id=lesson.id),
                "name": lesson.title,
                "learningResourceType": "Lesson",
            }
            for lesson in lessons
        ],
    }
    if course.teacher:
        resource["creator"] = {"@type": "Person", "name": course.teacher}
    if course.published_at is not None:
        resource["datePublished"] = course.published_at.date().isoformat()
    return resource


def lesson_resource(lesson: Lesson) -> dict[str, Any] | None:
    """The lesson page's description: part of its course, aligned to its unit when it names one."""
    course = lesson.course
    if course.status != "published":
        return None
    url = absolute_url("catalog.lesson_page", lesson_id=lesson.id)
    alignments = [_subject_alignment(course)]
    if lesson.unit:
        unit: dict[str, Any] = {"@type": "AlignmentObject", "alignmentType": "teaches", "targetName": lesson.unit}
        if course.edition:
            unit["educationalFramework"] = _textbook(course)
        alignments.append(unit)
    resource: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "LearningResource",
        "@id": url,
        "url": url,
        "name": lesson.title,
        "description": lesson.summary,
        "learningResourceType": "Lesson",
        "position": lesson.position,
        **_common(course),
        "educationalAlignment": alignments,
        "isPartOf": {
            "@type": "LearningResource",
            "@id": absolute_url("catalog.course_page", course_id=course.id),
            "name": course.title,
            "learningResourceType": "Course",
        },
        "encoding": _encodings(lesson),
    }
    if lesson.unit:
        resource["teaches"] = lesson.unit
    if course.teacher:
        resource["creator"] = {"@type": "Person", "name": course.teacher}
    return resource
