"""Reach roll-ups: the dashboard's tables follow the raw usage counts."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from hub import jobs
from hub.db import get_database
from hub.reach import rollup


@shared_task(name=jobs.ROLL_UP_REACH)
def roll_up_reach() -> int:
    """Re-roll the days marked changed (nothing marked: nothing to do; safe to run twice)."""
    with get_database().session() as session:
        return len(rollup.roll_up(session, check_days=None).days)


@shared_task(name=jobs.CHECK_REACH)
def check_reach() -> int:
    """The periodic safety run: marked days plus recent days whose raw counts differ from their roll-up."""
    days = current_app.extensions["hub.settings"].reach_check_days
    with get_database().session() as session:
        return len(rollup.roll_up(session, check_days=days).days)
