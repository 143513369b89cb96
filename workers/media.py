"""Media tasks: probe an original, build each rendition. Each is one service call."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from hub import jobs
from hub.db import get_database
from hub.media import ffmpeg, pipeline
from hub.media import services as media_services

# Only transient failures reach Celery (disk full, storage unreachable): they retry
# with backoff. The pipeline turns bad input into a readable `failed` status instead;
# it never raises for it.
_RETRY = {
    "autoretry_for": (ffmpeg.MediaError, OSError),
    "retry_backoff": 10,
    "retry_backoff_max": 600,
    "max_retries": 5,
}


@shared_task(name=jobs.PROCESS_MATERIAL, **_RETRY)
def process_material(material_id: int) -> list[int]:
    return _process_material(material_id)


@shared_task(name=jobs.BUILD_RENDITION, **_RETRY)
def build_rendition(rendition_id: int) -> str:
    return _build_rendition(rendition_id)


# Documents and images: the same services, another queue (see hub.jobs.QUEUES).
@shared_task(name=jobs.PROCESS_DOCUMENT, **_RETRY)
def process_document(material_id: int) -> list[int]:
    return _process_material(material_id)


@shared_task(name=jobs.BUILD_DOCUMENT_RENDITION, **_RETRY)
def build_document_rendition(rendition_id: int) -> str:
    return _build_rendition(rendition_id)


def _process_material(material_id: int) -> list[int]:
    with get_database().session() as session:
        return pipeline.process_material(session, current_app.extensions["hub.storage"], material_id, ffmpeg_limits())


def _build_rendition(rendition_id: int) -> str:
    return pipeline.build_rendition(
        get_database(),
        current_app.extensions["hub.storage"],
        rendition_id,
        ffmpeg_limits(),
        lease=current_app.extensions["hub.settings"].media_lease,
    )


@shared_task(name=jobs.REMOVE_UNUSED_BLOBS, autoretry_for=(OSError,), retry_backoff=10, max_retries=5)
def remove_unused_blobs(shas: list[str]) -> int:
    """The bytes of deleted or replaced materials that nothing else uses (safe to run twice)."""
    storage = current_app.extensions["hub.storage"]
    return len(media_services.remove_unused_blobs(get_database(), storage, shas))


@shared_task(name=jobs.REQUEUE_STALLED)
def requeue_stalled() -> int:
    """Hand work of dead workers and lost messages to the broker again."""
    with get_database().session() as session:
        return pipeline.requeue_stalled(session, current_app.extensions["hub.settings"].media_lease)


def ffmpeg_limits() -> ffmpeg.MediaLimits:
    limits: ffmpeg.MediaLimits = current_app.extensions["hub.media_limits"]
    return limits
