"""Housekeeping tasks of the job system itself."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from hub import dispatch, jobs
from hub.db import get_database


@shared_task(name=jobs.SWEEP_OUTBOX)
def sweep_outbox() -> int:
    """Send outbox rows their own process could not hand to the broker."""
    return dispatch.sweep_outbox(jobs.get_celery(current_app), get_database(), current_app.extensions["hub.settings"])
