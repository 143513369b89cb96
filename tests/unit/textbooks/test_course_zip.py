"""The course ZIP names the textbook (file format, tree and all) and each file's chapter node."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson
from hub.textbooks import services as textbooks
from hub.textbooks.files import parse_data
from tests.conftest import Accounts
from tests.support.courses import seed_course
from tests.unit.media.test_course_download import fetch
from tests.unit.textbooks.test_services import book


def test_the_zip_carries_the_textbook_and_the_chapter_of_each_lesson(
    app: Flask, client: FlaskClient, db: Session, make: Accounts
) -> None:
    seeded = seed_course(app.extensions["hub.storage"], db, make.school().id)
    nine = textbooks.import_textbook(db, book())
    course = db.get(Course, seeded.course_id)
    assert course is not None
    course.textbook_id = nine.id  # set as the services would (they check the book fits; this is about the ZIP)
    lesson = db.scalars(select(Lesson).where(Lesson.course_id == course.id).order_by(Lesson.position)).first()
    assert lesson is not None
    lesson.textbook_node_id = next(n.id for n in nine.nodes if n.key == "21.2.1")
    db.commit()

    archive, manifest, _ = fetch(client, seeded)
    shipped = manifest["course"]["textbook"]
    assert shipped["key"] == "renjiao-math-9-1"
    assert parse_data(shipped).walk()[3][0].title == "21.2.1 配方法"  # another hub can import it as it is
    nodes = {f["lesson"]["id"]: f["lesson"].get("node") for f in manifest["files"] if "lesson" in f}
    expected = {"textbook": "renjiao-math-9-1", "key": "21.2.1", "kind": "lesson", "title": "21.2.1 配方法"}
    assert nodes[lesson.id] == expected
    assert all(node is None for lesson_id, node in nodes.items() if lesson_id != lesson.id)
    index = archive.read("index.html").decode()
    assert "人教版 数学 九年级 上册" in index and "21.2.1 配方法" in index
