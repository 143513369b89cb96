"""The outbox: enqueue after commit, nothing lost while the broker is down."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from kombu import Connection
from kombu.utils.imports import symbol_by_name
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import workers.jobs
import workers.media
from hub import create_app, dispatch, jobs
from hub.catalog import services as catalog
from hub.catalog.models import Material
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.db import get_database
from hub.dispatch import get_dispatcher
from hub.jobs import Outbox
from tests.conftest import COURSE, DATABASE_URL, Accounts, hub_settings
from tests.support.broker_outage import BrokerOutage
from tests.support.media import lesson_video


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
    _wait_until_sent(db, row)
    assert row.attempts == 1


def _wait_until_sent(db: Session, row: Outbox, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.refresh(row)
        if row.sent_at is not None:
            return
        time.sleep(0.05)
    pytest.fail(f"outbox row {row.id} not handed to the broker in {timeout:.0f} s: {row.last_error}")


def test_the_committing_thread_never_talks_to_the_broker(app: Flask, db: Session) -> None:
    # A request that commits work must cost the same whether the broker is up, slow or gone:
    # the hand-off happens in another thread (it used to wait 5 s per task on a locked broker).
    celery = jobs.get_celery(app)
    callers: list[int] = []
    for name in ("send_task", "connection_for_write"):
        real = getattr(celery, name)

        def spy(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            callers.append(threading.get_ident())
            return _real(*args, **kwargs)

        setattr(celery, name, spy)
    row = jobs.enqueue(db, jobs.SWEEP_OUTBOX)
    db.commit()
    _wait_until_sent(db, row)
    assert callers and threading.get_ident() not in callers


def test_broker_down_loses_nothing(hub_env: dict[str, str], tmp_path: Path) -> None:
    # Nothing listens on port 9 of loopback: every send fails at once.
    down = create_app({**hub_settings(hub_env), "HUB_BROKER_URL": "redis://127.0.0.1:9/0"})
    with get_database(down).session() as session:
        row = jobs.enqueue(session, jobs.SWEEP_OUTBOX)
        session.commit()  # succeeds although the broker is unreachable
        assert get_dispatcher(down).flush(30) == 1
        get_dispatcher(down).close()
        session.refresh(row)
        assert row.sent_at is None
        assert row.attempts >= 1
        assert "Error" in row.last_error

    # The broker is back (the same database, a working broker): the sweeper sends it.
    up = create_app({**hub_settings(hub_env), "HUB_OUTBOX_RESEND_AFTER": "1"})
    with get_database(up).session() as session:
        session.execute(Outbox.__table__.update().values(created_at=row.created_at.replace(year=2000)))
        session.commit()
    settings = up.extensions["hub.settings"]
    assert dispatch.sweep_outbox(jobs.get_celery(up), get_database(up), settings) == 1
    with get_database(up).session() as session:
        again = session.get(Outbox, row.id)
        assert again is not None and again.sent_at is not None and again.attempts == row.attempts + 1
    get_database(down).engine.dispose()
    get_database(up).engine.dispose()


def test_the_sweeper_leaves_fresh_rows_to_their_own_process(app: Flask, db: Session) -> None:
    dispatcher = get_dispatcher(app)
    dispatcher.close()  # this process "died" before handing the row over
    row = jobs.enqueue(db, jobs.SWEEP_OUTBOX)
    db.commit()
    settings = app.extensions["hub.settings"]
    assert dispatch.sweep_outbox(jobs.get_celery(app), get_database(app), settings) == 0  # still its process's
    db.execute(Outbox.__table__.update().values(created_at=row.created_at - timedelta(hours=1)))
    db.commit()
    assert dispatch.sweep_outbox(jobs.get_celery(app), get_database(app), settings) == 1
    db.refresh(row)
    assert row.sent_at is not None


@pytest.mark.skipif(not DATABASE_URL, reason="row locks: PostgreSQL (the service run)")
def test_two_dispatchers_never_send_the_same_row_at_once(
    app: Flask, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_dispatcher(app).close()
    rows = [jobs.enqueue(db, jobs.SWEEP_OUTBOX) for _ in range(3)]
    db.commit()
    ids = [row.id for row in rows]
    publishing, release = threading.Event(), threading.Event()
    real_publish = dispatch._publish

    def slow_publish(celery: Any, batch: list[Outbox]) -> tuple[list[int], str]:
        publishing.set()
        release.wait(20)
        return real_publish(celery, batch)

    monkeypatch.setattr(dispatch, "_publish", slow_publish)
    celery, database = jobs.get_celery(app), get_database(app)
    first: list[dispatch.HandOff] = []
    worker = threading.Thread(target=lambda: first.append(dispatch.hand_over(celery, database, [Outbox.id.in_(ids)])))
    worker.start()
    assert publishing.wait(20)
    monkeypatch.setattr(dispatch, "_publish", real_publish)
    second = dispatch.hand_over(celery, database, [Outbox.id.in_(ids)])  # another node, at the same moment
    release.set()
    worker.join(20)
    assert second.tried == [] and sorted(first[0].sent) == sorted(ids)


def test_the_sqlite_broker_keeps_no_delivered_message(app: Flask, db: Session) -> None:
    if not app.extensions["hub.settings"].broker_url.startswith("sqla+sqlite"):
        pytest.skip("the embedded broker only")
    rows = [jobs.enqueue(db, jobs.SWEEP_OUTBOX) for _ in range(3)]
    db.commit()
    for row in rows:
        _wait_until_sent(db, row)
    celery = jobs.get_celery(app)
    with celery.connection_for_read() as connection, connection.SimpleQueue(jobs.DEFAULT_QUEUE) as queue:
        for _ in rows:
            queue.get(timeout=10).ack()
    broker = app.extensions["hub.settings"].data_dir / "broker.db"
    with sqlite3.connect(broker) as plain:
        assert plain.execute("SELECT count(*) FROM kombu_message").fetchone() == (0,)


def test_the_sqlite_broker_drops_messages_older_hubs_delivered(hub_env: dict[str, str]) -> None:
    settings = hub_settings(hub_env)
    if "HUB_BROKER_URL" in settings:
        pytest.skip("the embedded broker only")
    broker = Path(settings["HUB_DATA_DIR"]) / "broker.db"
    # kombu's own transport, as hubs before this one used it: delivered messages stay, invisible.
    with Connection(f"sqla+sqlite:///{broker}") as stock, stock.SimpleQueue("celery") as queue:
        for body in ("delivered", "delivered too", "waiting"):
            queue.put(body)
        for _ in range(2):
            queue.get(timeout=5).ack()
    app = create_app(settings)
    with jobs.get_celery(app).connection_for_write() as connection:
        connection.default_channel.session  # noqa: B018 - opening the broker is the point
    with sqlite3.connect(broker) as plain:
        assert plain.execute("SELECT visible FROM kombu_message").fetchall() == [(1,)]
    get_database(app).engine.dispose()


def test_the_beat_reconnects_after_a_broker_outage(hub_env: dict[str, str], tmp_path: Path) -> None:
    # Celery's scheduler keeps the producer it made at start; a send that failed past
    # kombu's retries left it on a closed channel, and every later tick failed with
    # "channel disconnected" until the worker was restarted.
    outage = BrokerOutage(hub_env)
    app = create_app({**hub_settings(outage.env), "HUB_BROKER_TIMEOUT": "1"})
    celery = jobs.get_celery(app)
    celery.loader.import_default_modules()
    with celery.connection_for_write() as connection:
        connection.default_channel.queue_declare(jobs.DEFAULT_QUEUE)  # the broker exists
    scheduler_cls = symbol_by_name(celery.conf.beat_scheduler)
    scheduler = scheduler_cls(app=celery, schedule_filename=str(tmp_path / "beat"))
    try:
        entry = scheduler.schedule["sweep-outbox"]
        scheduler.apply_entry(entry, producer=scheduler.producer)  # as Beat.tick does
        outage.cut()
        try:
            for _ in range(2):  # fails (the broker is away), then connects afresh to an absent broker
                scheduler.apply_entry(entry, producer=scheduler.producer)
        finally:
            outage.restore()
        with celery.connection_for_read() as connection, connection.SimpleQueue(jobs.DEFAULT_QUEUE) as queue:
            queue.get(timeout=10).ack()  # the tick before the outage
            scheduler.apply_entry(entry, producer=scheduler.producer)
            scheduler.apply_entry(entry, producer=scheduler.producer)
            for _ in range(2):
                message = queue.get(timeout=10)
                assert message.headers["task"] == jobs.SWEEP_OUTBOX
                message.ack()
    finally:
        scheduler.close()
        outage.close()
        get_database(app).engine.dispose()


def test_a_command_hands_its_queued_work_over_before_it_exits(
    app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path
) -> None:
    # A command has no thread that outlives it: it waits, boundedly, for its dispatcher.
    user = make.user("up@x.cn", make.school(), "uploader")
    course = catalog.create_course(db, user, CourseCreate(**COURSE))
    lesson = catalog.create_lesson(db, user, course.id, LessonCreate(title="配方法"))
    video = lesson_video(tmp_path / "v.mp4", seconds=1, size="160x120").read_bytes()
    storage = app.extensions["hub.storage"]
    material = catalog.add_material(db, storage, user, lesson.id, io.BytesIO(video), filename="v.mp4", title="v")
    db.commit()
    assert get_dispatcher(app).flush(30) == 0
    db.execute(update(Material).where(Material.id == material.id).values(status="failed"))  # lacks video-240p
    db.commit()

    def reprocess(**env: str) -> tuple[subprocess.CompletedProcess[str], list[Outbox]]:
        before = db.scalar(select(func.max(Outbox.id)))
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", "media", "reprocess", "--profile", "video-240p"],
            env={**os.environ, **hub_env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        db.expire_all()
        return done, list(db.scalars(select(Outbox).where(Outbox.id > before)))

    _, queued = reprocess()
    assert [row.task for row in queued] == [jobs.PROCESS_MATERIAL] and queued[0].sent_at is not None

    db.execute(update(Material).where(Material.id == material.id).values(status="failed"))
    db.commit()
    away, queued = reprocess(HUB_BROKER_URL="redis://127.0.0.1:9/0", HUB_BROKER_TIMEOUT="1")
    assert [row.sent_at for row in queued] == [None]  # the sweeper's, once the broker is back
    assert "1 queued tasks were not handed to the broker" in away.stderr, away.stderr
