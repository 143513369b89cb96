"""Fixtures of the sync tests: an upstream catalog seen from one rural school's subscriptions."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.catalog import services as catalog
from hub.catalog.models import Course
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.media.models import Blob, DownloadCount, Rendition
from hub.media.storage import Storage
from hub.sync import services
from tests.conftest import COURSE, Accounts


@dataclass
class Upstream:
    db: Session
    storage: Storage
    rural: School
    subscribed: list[str]  # blobs of the course the rural school subscribes to: renditions, then the original
    unsubscribed: str  # a rendition of a published course it does not subscribe to
    draft: str  # a rendition of a course still in draft

    def course(self, uploader: Any, *, publish: bool) -> tuple[Course, list[str]]:
        course = catalog.create_course(self.db, uploader, CourseCreate(**COURSE))
        lesson = catalog.create_lesson(self.db, uploader, course.id, LessonCreate(title="配方法"))
        material = catalog.add_material(
            self.db, self.storage, uploader, lesson.id, io.BytesIO(os.urandom(300)), filename="a.mp4", title="v"
        )
        shas = []
        for profile in ("video-360p", "poster"):
            stored = self.storage.store(io.BytesIO(os.urandom(200)))
            self.db.add(Blob(sha256=stored.sha256, size=stored.size, media_type="video/mp4"))
            self.db.add(Rendition(material=material, profile=profile, status="ready", blob_sha256=stored.sha256))
            shas.append(stored.sha256)
        if publish:
            catalog.publish_course(self.db, uploader, course.id)
        self.db.commit()
        assert material.original_sha256 is not None
        return course, [*shas, material.original_sha256]

    def downloads(self, sha: str | None = None) -> dict[tuple[str, date], int]:
        self.db.rollback()
        query = select(DownloadCount).where(DownloadCount.school_id == self.rural.id)
        if sha is not None:
            query = query.where(DownloadCount.blob_sha256 == sha)
        return {(r.blob_sha256, r.day): r.count for r in self.db.scalars(query)}


@pytest.fixture
def up(app: Flask, db: Session, make: Accounts) -> Upstream:
    famous = make.school("海淀实验小学", "famous")
    rural = make.school("山村小学", "rural")
    uploader = make.user("up@famous.example", famous, "uploader")
    upstream = Upstream(db, app.extensions["hub.storage"], rural, [], "", "")
    course, upstream.subscribed = upstream.course(uploader, publish=True)
    upstream.unsubscribed = upstream.course(uploader, publish=True)[1][0]
    upstream.draft = upstream.course(uploader, publish=False)[1][0]
    services.subscribe(db, rural, course_id=course.id)
    db.commit()
    return upstream
