"""Lesson.changed_at: every write to a lesson, its materials or their renditions stamps it; progress does not."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.catalog import services as catalog
from hub.catalog.models import Lesson, Material
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import utcnow
from hub.media.models import Blob, Rendition
from tests.conftest import COURSE, Accounts

LONG_AGO = utcnow() - timedelta(days=1)


@pytest.fixture
def lessons(app: Flask, db: Session, make: Accounts) -> tuple[Lesson, Lesson]:
    uploader = make.user("up@famous.example", make.school("海淀实验小学", "famous"), "uploader")
    course = catalog.create_course(db, uploader, CourseCreate(**COURSE))
    first = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="配方法"))
    second = catalog.create_lesson(db, uploader, course.id, LessonCreate(title="公式法"))
    storage = app.extensions["hub.storage"]
    for lesson in (first, second):
        catalog.add_material(db, storage, uploader, lesson.id, io.BytesIO(os.urandom(100)), filename="a.mp4", title="v")
    db.commit()
    return first, second


def stamps(db: Session) -> dict[int, datetime | None]:
    db.expire_all()
    return {lid: stamp for lid, stamp in db.execute(select(Lesson.id, Lesson.changed_at))}


def age_everything(db: Session) -> None:
    db.execute(update(Lesson).values(changed_at=LONG_AGO))
    db.commit()


def stamped(db: Session) -> set[int]:
    """The lessons stamped since age_everything."""
    return {lid for lid, stamp in stamps(db).items() if stamp is not None and stamp > LONG_AGO}


def test_a_new_lesson_is_stamped(db: Session, lessons: tuple[Lesson, Lesson]) -> None:
    assert all(stamp is not None and stamp > LONG_AGO for stamp in stamps(db).values())


def test_writes_to_a_lesson_its_materials_and_renditions_stamp_only_that_lesson(
    db: Session, lessons: tuple[Lesson, Lesson]
) -> None:
    first, second = lessons
    age_everything(db)
    db.get(Lesson, first.id).title = "配方法（二）"  # type: ignore[union-attr]
    db.commit()
    assert stamped(db) == {first.id}

    age_everything(db)
    material = db.scalars(select(Material).where(Material.lesson_id == second.id)).one()
    material.title = "新标题"
    db.commit()
    assert stamped(db) == {second.id}

    age_everything(db)
    db.add(Blob(sha256="ab" * 32, size=10, media_type="video/mp4"))
    rendition = Rendition(material_id=material.id, profile="video-360p", status="ready", blob_sha256="ab" * 32)
    db.add(rendition)
    db.commit()
    assert stamped(db) == {second.id}

    # A running transcode writes its progress every few seconds: no change to what the lesson is.
    age_everything(db)
    rendition.progress = 50
    rendition.updated_at = utcnow()
    material.progress = 50
    db.commit()
    assert stamped(db) == set()

    age_everything(db)
    db.delete(rendition)
    db.commit()
    assert stamped(db) == {second.id}

    age_everything(db)
    db.delete(material)
    db.commit()
    assert stamped(db) == {second.id}
