"""The demo catalog follows the shipped textbooks: courses name their book, lessons their node."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson
from hub.demo import COURSES, seed_demo
from hub.textbooks.cli import shipped_files
from hub.textbooks.models import Textbook, TextbookNode


def test_the_demo_catalog_is_aligned_to_the_shipped_textbooks(app: Flask, db: Session) -> None:
    with app.app_context():
        report = seed_demo(db, app.extensions["hub.storage"], media=False)
    assert report.textbooks == len(shipped_files())
    rows = db.execute(
        select(Course.title, Textbook.key, Lesson.title, TextbookNode.key)
        .join(Textbook, Course.textbook_id == Textbook.id)
        .join(Lesson, Lesson.course_id == Course.id)
        .join(TextbookNode, Lesson.textbook_node_id == TextbookNode.id)
    ).all()
    aligned = {(course, lesson): (book, node) for course, book, lesson, node in rows}
    assert aligned[("九年级数学上册（人教版）", "一元二次方程的解法：配方法")] == ("renjiao-math-9-1", "21.2.1")
    assert aligned[("一年级语文上册（统编版）", "江南")] == ("tongbian-chinese-1-1", "4.3")
    assert aligned[("三年级数学上册（人教版）", "分数的初步认识")] == ("renjiao-math-3-1", "8.1.1")
    # Two schools teach 几分之一: "other lessons for this 课时" has another school's lesson to show.
    schools = db.execute(
        select(Course.school_id).join(Lesson).join(TextbookNode, Lesson.textbook_node_id == TextbookNode.id)
        .join(Textbook).where(Textbook.key == "renjiao-math-3-1", TextbookNode.key == "8.1.1")
    ).scalars().all()  # fmt: skip
    assert len(set(schools)) == 2
    expected = sum(1 for c in COURSES if c.textbook for lesson in c.lessons if lesson.node)
    assert len(rows) == expected
    # Every aligned course's edition, subject, grade and volume are its textbook's.
    for course in db.scalars(select(Course).where(Course.textbook_id.is_not(None))):
        book = db.get(Textbook, course.textbook_id)
        assert book is not None
        assert (course.subject, course.edition, course.volume, [book.grade]) == (
            book.subject, book.edition, book.volume, course.grades,
        )  # fmt: skip

    versions = dict(db.execute(select(Course.id, Course.version)).all())
    with app.app_context():
        again = seed_demo(db, app.extensions["hub.storage"], media=False)
    assert again.courses_created == 0
    assert dict(db.execute(select(Course.id, Course.version)).all()) == versions  # nothing new to send


def test_a_demo_hub_seeded_before_the_textbooks_is_aligned_as_an_uploader_would(app: Flask, db: Session) -> None:
    """The re-seed goes through update_course and update_lesson: a published course gets new versions."""
    from hub.sync.models import Change

    with app.app_context():
        seed_demo(db, app.extensions["hub.storage"], media=False)
    course = db.scalars(select(Course).where(Course.title == "九年级数学上册（人教版）")).one()
    assert course.status == "published"
    # As a hub seeded before issue 18 left it: no book, no nodes.
    for lesson in course.lessons:
        lesson.textbook_node_id = None
    course.textbook_id = None
    db.commit()
    version = course.version
    changes = db.scalar(select(func.count()).select_from(Change).where(Change.course_id == course.id))
    with app.app_context():
        seed_demo(db, app.extensions["hub.storage"], media=False)
    db.expire_all()
    assert course.textbook is not None and course.textbook.key == "renjiao-math-9-1"
    nodes = {lesson.title: lesson.textbook_node.key for lesson in course.lessons if lesson.textbook_node}
    assert nodes["一元二次方程的解法：配方法"] == "21.2.1"
    assert course.version > version  # school servers fetch the aligned course again
    assert db.scalar(select(func.count()).select_from(Change).where(Change.course_id == course.id)) > changes
