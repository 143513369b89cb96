"""Housekeeping tasks of the job system itself."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from hub import jobs
from hub.db import get_database


@shared_task(name=jobs.SWEEP_OUTBOX)
def sweep_outbox() -> int:
    """Re-send outbox rows the broker did not take when their change committed."""
    return jobs.sweep_outbox(jobs.get_celery(current_app), get_database(), current_app.extensions["hub.settings"])
