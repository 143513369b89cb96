"""Search index tasks, on their own `search` queue (Whoosh has one writer)."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from hub import jobs
from hub.db import get_database
from hub.search import services


@shared_task(name=jobs.INDEX_COURSE, autoretry_for=(services.IndexBusy,), retry_backoff=2, max_retries=10)
def index_course(course_id: int) -> None:
    """Bring the index in line with the course as it is now (or remove it), and with the change log."""
    if current_app.extensions["hub.settings"].search_replica:
        return  # each web node follows the change log itself; a worker keeps no index
    with get_database().session() as session:
        services.index_course(session, current_app.extensions["hub.search"], course_id)


@shared_task(name=jobs.INDEX_COURSES, autoretry_for=(services.IndexBusy,), retry_backoff=2, max_retries=10)
def index_courses(course_ids: list[int]) -> None:
    """index_course for each of `course_ids` (a retry redoes them all: each is idempotent)."""
    if current_app.extensions["hub.settings"].search_replica:
        return
    with get_database().session() as session:
        services.index_courses(session, current_app.extensions["hub.search"], course_ids)
