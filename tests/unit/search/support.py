"""Helpers shared by the search tests (unit and functional)."""

from __future__ import annotations

from hub.search.documents import CourseSource, LessonSource


def source(
    course_id: int,
    title: str,
    lessons: list[tuple[str, str]] | None = None,
    *,
    summary: str = "",
    subject: str = "math",
    grades: tuple[int, ...] = (5,),
    edition: str = "人教版",
    language: str = "zh",
    category: str = "curriculum",
    school_id: int = 1,
    license: str = "CC-BY-4.0",
    materials: list[tuple[str, str]] | None = None,
) -> CourseSource:
    """A course as the index sees it, without a database."""
    course = CourseSource(
        id=course_id,
        title=title,
        summary=summary,
        category=category,
        subject=subject,
        grades=list(grades),
        edition=edition,
        volume="上册" if edition else "",
        language=language,
        license=license,
        teacher="王老师",
        school_id=school_id,
        school_name=f"学校{school_id}",
    )
    for i, (lesson_title, lesson_summary) in enumerate(lessons or [], start=1):
        course.lessons.append(
            LessonSource(course_id * 100 + i, i, lesson_title, lesson_summary, f"第{i}单元", list(materials or []))
        )
    return course
