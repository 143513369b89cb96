"""Upload housekeeping: abandoned uploads expire and their bytes go."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from hub import jobs
from hub.db import get_database
from hub.uploads import get_uploads
from hub.uploads import services as uploads


@shared_task(name=jobs.EXPIRE_UPLOADS)
def expire_uploads() -> dict[str, int]:
    """Remove expired uploads' bytes and abort their S3 multipart uploads (safe to run twice)."""
    report = uploads.expire_uploads(get_database(), get_uploads(current_app))
    return {"expired": report.expired, "purged": report.purged, "orphans": report.orphans}
