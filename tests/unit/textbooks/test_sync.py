"""Sync carries the alignment by keys: a school server ends with the textbook, the course on it, lessons on nodes."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app
from hub.catalog import services as catalog
from hub.catalog.models import Course, Lesson
from hub.catalog.schemas import CourseCreate, LessonCreate, LessonUpdate
from hub.db import get_database
from hub.media.storage import Storage
from hub.sync import manifest as mf
from hub.sync import services
from hub.textbooks import services as textbooks
from hub.textbooks.models import Textbook, TextbookNode
from tests.conftest import COURSE, Accounts
from tests.unit.textbooks.test_services import book

WITH = (*mf.DEFAULT_VIDEO_PROFILES, *mf.EXTRAS)


def _entries(db: Session, school: object, key: mf.Ed25519PrivateKey, profiles: tuple[str, ...]) -> mf.Manifest:
    envelope = services.issue_manifest(db, school, private_key=key, lifetime=3600, profiles=profiles)  # type: ignore[arg-type]
    db.commit()
    index = mf.verify(envelope, key.public_key(), not_older_than=None, now=services.utcnow())
    bodies = {}
    for line in services.course_entries(db, school, [c.id for c in index.courses], profiles=profiles):  # type: ignore[arg-type]
        data = json.loads(line)
        bodies[data["id"]] = mf.canonical_json(data["entry"])
    courses = [mf.entry_from_bytes(bodies[c.id], c) for c in index.courses]
    return mf.Manifest(index=index, courses=courses, bodies=bodies)


def test_a_pulled_course_brings_its_textbook_and_keeps_its_lessons_on_their_nodes(
    app: Flask, db: Session, make: Accounts, sqlite_template: Path, tmp_path: Path
) -> None:
    uploader = make.user("up@famous.example", make.school("海淀实验小学", "famous"), "uploader")
    rural = make.school("山村小学", "rural")
    nine = textbooks.import_textbook(db, book())
    db.commit()
    course = catalog.create_course(db, uploader, CourseCreate(**{**COURSE, "textbook": nine.id}))
    nodes = {n.key: n.id for n in nine.nodes}
    first = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="配方法", node=nodes["21.2.1"]))
    catalog.create_lesson(db, uploader, course.id, LessonCreate(title="复习"))
    storage: Storage = app.extensions["hub.storage"]
    catalog.add_material(db, storage, uploader, first.id, io.BytesIO(os.urandom(300)), filename="a.pdf", title="讲义")
    catalog.publish_course(db, uploader, course.id)
    services.subscribe(db, rural, course_id=course.id)
    db.commit()
    key = mf.generate_private_key()

    # An older school server (no ?with=textbooks) gets entries without the alignment: it would refuse unknown keys.
    plain = _entries(db, rural, key, mf.DEFAULT_VIDEO_PROFILES).bodies[course.id]
    assert b"textbook" not in plain and b'"node"' not in plain

    manifest = _entries(db, rural, key, WITH)
    entry = manifest.courses[0]
    assert entry.textbook is not None and entry.textbook.key == "renjiao-math-9-1"
    alignment = [(lesson.textbook, lesson.node) for lesson in entry.lessons]
    assert alignment == [("renjiao-math-9-1", "21.2.1"), ("", "")]

    data_dir = tmp_path / "mirror"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "hub.db")
    mirror_app = create_app({"HUB_DATA_DIR": str(data_dir)})
    mirror_storage: Storage = mirror_app.extensions["hub.storage"]
    for sha in entry.files():
        mirror_storage.store(io.BytesIO(b"".join(storage.open_range(sha, 0, None))))
    with get_database(mirror_app).session() as session:
        local = services.apply_course(
            session, mirror_storage, entry, body=manifest.bodies[entry.id], issued_at=manifest.issued_at
        )
        session.commit()
        book_here = session.scalar(select(Textbook).where(Textbook.key == "renjiao-math-9-1"))
        assert book_here is not None and local.textbook_id == book_here.id
        assert [(n.key, n.title, n.week) for n in book_here.nodes] == [(n.key, n.title, n.week) for n in nine.nodes]
        aligned = session.execute(
            select(Lesson.title, TextbookNode.key)
            .outerjoin(TextbookNode, TextbookNode.id == Lesson.textbook_node_id)
            .where(Lesson.course_id == local.id)
            .order_by(Lesson.position)
        ).all()
        assert [tuple(row) for row in aligned] == [("配方法", "21.2.1"), ("复习", None)]

        # The upstream moves the lesson to another 课时: the next pull moves it here too, the book stays one.
        catalog.update_lesson(db, uploader, first.id, LessonUpdate(node=nodes["21.1"]))
        db.commit()
        again = _entries(db, rural, key, WITH)
        newer = again.courses[0]
        services.apply_course(session, mirror_storage, newer, body=again.bodies[newer.id], issued_at=again.issued_at)
        session.commit()
        moved = session.scalar(
            select(TextbookNode.key)
            .join(Lesson, Lesson.textbook_node_id == TextbookNode.id)
            .where(Lesson.title == "配方法")
        )
        assert moved == "21.1"
        assert len(session.scalars(select(Textbook)).all()) == 1

        # A new edition of the book's file upstream reaches the school server with the course's next entry.
        renamed = book()
        renamed["nodes"][0]["title"] = "第二十一章 一元二次方程（修订）"
        textbooks.import_textbook(db, renamed)
        db.commit()
        third = _entries(db, rural, key, WITH)
        assert third.courses[0].revision != newer.revision
        services.apply_course(
            session, mirror_storage, third.courses[0], body=third.bodies[course.id], issued_at=third.issued_at
        )
        session.commit()
        chapter = session.scalar(select(TextbookNode.title).where(TextbookNode.key == "21"))
        assert chapter == "第二十一章 一元二次方程（修订）"
        assert session.scalar(select(Course.textbook_id).where(Course.id == local.id)) == book_here.id
    get_database(mirror_app).engine.dispose()
