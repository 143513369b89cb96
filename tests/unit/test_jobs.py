"""The outbox: enqueue after commit, nothing lost while the broker is down."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

import workers.jobs
import workers.media
from hub import create_app, jobs
from hub.db import get_database
from hub.jobs import Outbox
from tests.conftest import hub_settings


def test_every_task_the_app_sends_is_registered(app: Flask) -> None:
    celery = jobs.get_celery(app)
    celery.loader.import_default_modules()
    assert workers.media and workers.jobs
    missing = jobs.TASK_NAMES - set(celery.tasks)
    assert not missing, f"sent but registered by no worker module: {missing}"
    assert set(jobs.QUEUES) <= jobs.TASK_NAMES


def test_the_beat_sends_only_registered_tasks_to_queues_workers_consume(app: Flask) -> None:
    celery = jobs.get_celery(app)
    celery.loader.import_default_modules()
    scheduled = {entry["task"] for entry in celery.conf.beat_schedule.values()}
    assert scheduled <= jobs.TASK_NAMES and scheduled <= set(celery.tasks)
    # `hub worker` listens on ALL_QUEUES: a task routed anywhere else would wait forever.
    assert set(jobs.QUEUES.values()) | {jobs.DEFAULT_QUEUE} <= set(jobs.ALL_QUEUES)
    ours = {name for name in celery.tasks if name.startswith("hub.")}
    assert ours == jobs.TASK_NAMES, "a registered hub task is missing from jobs.TASK_NAMES (enqueue would refuse it)"


def test_unknown_task_names_are_refused(db: Session) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        jobs.enqueue(db, "hub.nope")


def test_rows_are_sent_after_commit_only(app: Flask, db: Session) -> None:
    jobs.enqueue(db, jobs.SWEEP_OUTBOX)
    db.rollback()
    assert db.scalars(select(Outbox)).all() == []

    row = jobs.enqueue(db, jobs.SWEEP_OUTBOX)
    db.flush()
    assert row.sent_at is None
    db.commit()
    db.refresh(row)
    assert row.sent_at is not None
    assert row.attempts == 1


def test_broker_down_loses_nothing(hub_env: dict[str, str], tmp_path: Path) -> None:
    # Nothing listens on port 9 of loopback: every send fails at once.
    down = create_app({**hub_settings(hub_env), "HUB_BROKER_URL": "redis://127.0.0.1:9/0"})
    with get_database(down).session() as session:
        row = jobs.enqueue(session, jobs.SWEEP_OUTBOX)
        session.commit()  # succeeds although the broker is unreachable
        session.refresh(row)
        assert row.sent_at is None
        assert row.attempts == 1
        assert "Error" in row.last_error

    # The broker is back (the same database, a working broker): the sweeper sends it.
    up = create_app({**hub_settings(hub_env), "HUB_OUTBOX_RESEND_AFTER": "1"})
    with get_database(up).session() as session:
        session.execute(Outbox.__table__.update().values(created_at=row.created_at.replace(year=2000)))
        session.commit()
    settings = up.extensions["hub.settings"]
    assert jobs.sweep_outbox(jobs.get_celery(up), get_database(up), settings) == 1
    with get_database(up).session() as session:
        again = session.get(Outbox, row.id)
        assert again is not None and again.sent_at is not None and again.attempts == 2
    get_database(down).engine.dispose()
    get_database(up).engine.dispose()
