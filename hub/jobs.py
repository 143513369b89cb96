"""Celery wiring and the outbox: work is enqueued after the database commit.

A service that needs background work calls :func:`enqueue` inside its
transaction. The outbox row commits (or rolls back) with the change itself; an
``after_commit`` hook then tells :mod:`hub.dispatch` about the new rows, which a
background thread hands to the broker: the committing thread (a web request)
never talks to the broker. If the broker is down the row stays unsent; the
dispatcher retries for a while and the periodic :data:`SWEEP_OUTBOX` task
(scheduled by the beat that ``hub worker`` runs unless ``--no-beat``, every
``HUB_OUTBOX_RESEND_AFTER`` seconds) sends it later. Tasks are written to be
safe to run twice, so a row sent twice costs a little work, never a wrong
result.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Integer, String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, Database, UTCDateTime, get_database, utcnow

if TYPE_CHECKING:  # Celery loads when a task is sent or a worker starts (see get_celery), not with every app
    from celery import Celery
    from flask import Flask

    from hub.config import Settings

# Task names: the contract between the app, which sends, and workers/, which
# registers. tests/unit/test_jobs.py checks that every one of them is registered.
PROCESS_MATERIAL = "hub.media.process_material"
BUILD_RENDITION = "hub.media.build_rendition"
# The same two steps for documents and images (hub.media.services.process_task/build_task).
PROCESS_DOCUMENT = "hub.media.process_document"
BUILD_DOCUMENT_RENDITION = "hub.media.build_document_rendition"
SWEEP_OUTBOX = "hub.jobs.sweep_outbox"
REQUEUE_STALLED = "hub.media.requeue_stalled"
INDEX_COURSE = "hub.search.index_course"
INDEX_COURSES = "hub.search.index_courses"  # many at once: a sync pull applies courses by the dozen
EXPIRE_UPLOADS = "hub.uploads.expire"
# Bytes a deleted or replaced material left behind, unless something else uses them.
REMOVE_UNUSED_BLOBS = "hub.media.remove_unused_blobs"
# Re-roll the reach dashboard's tables for the days whose raw counts changed (hub.reach.rollup).
ROLL_UP_REACH = "hub.reach.roll_up"
# The same with the safety check over the recent days, from the beat.
CHECK_REACH = "hub.reach.check"
TASK_NAMES = frozenset(
    {
        PROCESS_MATERIAL,
        BUILD_RENDITION,
        PROCESS_DOCUMENT,
        BUILD_DOCUMENT_RENDITION,
        SWEEP_OUTBOX,
        REQUEUE_STALLED,
        INDEX_COURSE,
        INDEX_COURSES,
        EXPIRE_UPLOADS,
        REMOVE_UNUSED_BLOBS,
        ROLL_UP_REACH,
        CHECK_REACH,
    }
)

# Transcodes are long and CPU-bound; keeping them on their own queue means a
# backlog of videos never delays quick jobs. Documents and images take seconds: on a
# queue of their own (`documents`), a 64 KB PDF uploaded behind a 45-minute lesson is
# not queued behind its four renditions (a worker takes from its queues in turn).
# Whoosh has one writer at a time: index updates go through their own queue.
QUEUES = {
    PROCESS_MATERIAL: "media",
    BUILD_RENDITION: "media",
    PROCESS_DOCUMENT: "documents",
    BUILD_DOCUMENT_RENDITION: "documents",
    INDEX_COURSE: "search",
    INDEX_COURSES: "search",
}
DEFAULT_QUEUE = "celery"
ALL_QUEUES = (DEFAULT_QUEUE, "documents", "media", "search")

# Seconds a worker waits before it polls the SQLite broker's empty queues again: kombu's
# 1 s capped a worker process at about one task a second. An idle poll is one indexed read
# per queue (hub.broker), so ten a second cost little.
SQL_POLLING_INTERVAL = 0.1

_PENDING = "hub.outbox.pending"
_CELERY_LOCK = threading.Lock()


class Outbox(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")


def enqueue(session: Session, task: str, *args: Any) -> Outbox:
    """Record ``task(*args)`` to run once the session's transaction commits."""
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}")
    row = Outbox(task=task, args=list(args))
    session.add(row)
    session.info.setdefault(_PENDING, []).append(row)
    return row


def init_app(app: Flask, settings: Settings, database: Database) -> None:
    event.listen(database.sessionmaker, "after_commit", _after_commit)
    event.listen(database.sessionmaker, "after_rollback", _after_rollback)
    from hub.dispatch import Dispatcher

    app.extensions["hub.dispatcher"] = Dispatcher(app)
    # Each session copies this dict: the after-commit hook finds its app (and so its broker) there.
    database.sessionmaker.configure(info={"hub.app": app, "hub.database": database})


def get_celery(app: Flask) -> Celery:
    """The app's Celery, made on first use: a command that sends no task (a no-change pull) never loads it."""
    with _CELERY_LOCK:
        celery = app.extensions.get("celery")
        if celery is None:
            celery = make_celery(app, app.extensions["hub.settings"])
        return celery


def make_celery(app: Flask, settings: Settings) -> Celery:
    from celery import Celery, Task

    class FlaskTask(Task):  # type: ignore[misc]
        # Every task runs inside the app context, so services find settings,
        # the database and storage exactly as a web request does.
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.conf.update(
        **_broker_settings(settings),
        task_ignore_result=True,
        # Acknowledge after the work is done: a worker killed mid-task leaves
        # the message to be redelivered to another worker.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: long transcodes must not sit
        # prefetched behind another long transcode.
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in QUEUES.items()},
        broker_connection_retry_on_startup=True,
        # Celery's default gives up after 100 tries (about 45 minutes) and the worker exits:
        # a broker away for a night must find the worker waiting for it in the morning.
        broker_connection_max_retries=None,
        broker_connection_timeout=settings.broker_timeout,
        # A tick whose send fails is retried by the next tick, not by kombu holding the
        # beat for several timeouts; hub.broker.Scheduler then connects afresh.
        beat_scheduler="hub.broker:Scheduler",
        beat_schedule={
            "sweep-outbox": {
                "task": SWEEP_OUTBOX,
                "schedule": float(settings.outbox_resend_after),
                "options": {"retry": False},
            },
            "requeue-stalled-media": {
                "task": REQUEUE_STALLED,
                "schedule": float(settings.media_lease),
                "options": {"retry": False},
            },
            "expire-uploads": {"task": EXPIRE_UPLOADS, "schedule": 3600.0, "options": {"retry": False}},
            "check-reach": {
                "task": CHECK_REACH,
                "schedule": float(settings.reach_rollup_every),
                "options": {"retry": False},
            },
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        include=["workers.media", "workers.jobs", "workers.reach", "workers.search", "workers.uploads"],
    )

    from celery.signals import worker_process_init

    def _own_connections(**_: Any) -> None:
        # A pool process is forked from the worker, which has used the database by then:
        # two processes talking over one inherited PostgreSQL connection corrupt each
        # other's sessions ("can't change 'autocommit' now", "unexpected result"; seen
        # with --concurrency 2, the default). The child drops the inherited pool without
        # closing the parent's sockets and opens its own.
        get_database(app).engine.dispose(close=False)

    worker_process_init.connect(_own_connections, weak=False)
    app.extensions["celery"] = celery
    return celery


def _broker_settings(settings: Settings) -> dict[str, Any]:
    """Celery's broker settings: every wait bounded by HUB_BROKER_TIMEOUT."""
    url, timeout = settings.broker_url, settings.broker_timeout
    scheme = url.split("://", 1)[0]
    if scheme.startswith(("sqla+", "sqlalchemy+")):
        # The embedded broker is kombu's SQLAlchemy transport with hub.broker's fixes; kombu
        # takes a transport named in the URL over a transport setting, so the prefix goes.
        return {
            "broker_url": url.split("+", 1)[1],
            "broker_transport": "hub.broker:Transport",
            "broker_transport_options": {"busy_timeout": timeout, "polling_interval": SQL_POLLING_INTERVAL},
        }
    if scheme in ("redis", "rediss"):
        options = {
            # Redis redelivers an unacknowledged message after this; it must
            # outlast the longest transcode or a running job gets a twin.
            "visibility_timeout": 6 * 3600,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        }
        return {"broker_url": url, "broker_transport_options": options}
    return {"broker_url": url}


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _after_commit(session: Session) -> None:
    rows: list[Outbox] = session.info.pop(_PENDING, [])
    if rows:
        from hub.dispatch import get_dispatcher

        get_dispatcher(session.info["hub.app"]).wake(row.id for row in rows)
