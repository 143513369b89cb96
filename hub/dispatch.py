"""Handing committed outbox rows to the broker, never in the thread that committed them.

A change and its outbox rows commit together (:func:`hub.jobs.enqueue`). The
after-commit hook only tells this process's :class:`Dispatcher` which rows are
new; a daemon thread hands them over, each attempt bounded by
``HUB_BROKER_TIMEOUT``, and while the broker is away it tries again after a
pause that doubles each time. A write request so costs the same whether the
broker is up, slow or gone (it used to wait five seconds per task on a locked
SQLite broker, and held a web server thread all that time).

Who sends what:

- a row's own process, for ``HUB_OUTBOX_RESEND_AFTER`` seconds after its commit;
- after that, the sweeper (:func:`sweep_outbox`, run by the worker's beat every
  ``HUB_OUTBOX_RESEND_AFTER`` seconds), which also takes the rows of processes
  that exited or died first.

A command that queues work (``hub media reprocess``, ``hub upload``, ``hub sync
pull``) waits at exit for one more attempt, at most ``HUB_BROKER_TIMEOUT`` and a
second, then leaves what is left to the sweeper and says so in its log.

Several processes or machines may share one outbox (PostgreSQL): rows are read
``FOR UPDATE SKIP LOCKED`` and stay locked while they are published, so two
dispatchers never send the same row, and a dead process's locks go with its
transaction. SQLite has no row locks, but the split above keeps a row's own
process and the sweeper apart; a row sent twice costs a little work, never a
wrong result (tasks are idempotent).

Each hand-off opens its own broker connection and closes it: a connection that
failed is never used again.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, delete, select, update

from hub.db import Database, get_database, utcnow
from hub.jobs import DEFAULT_QUEUE, QUEUES, Outbox, get_celery

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

    from hub.config import Settings

log = logging.getLogger(__name__)

BATCH = 500  # rows per hand-off: one broker connection, two UPDATEs
FIRST_PAUSE = 0.5  # seconds before the first retry; the pause doubles up to HUB_OUTBOX_RESEND_AFTER


@dataclass(frozen=True)
class HandOff:
    """What one hand-off did."""

    tried: list[int] = field(default_factory=list)  # rows read and published, or refused
    sent: list[int] = field(default_factory=list)  # the broker took these
    error: str = ""  # why it refused the rest; empty when it took every row tried


def hand_over(celery: Celery, database: Database, where: Sequence[ColumnElement[bool]], limit: int = BATCH) -> HandOff:
    """Publish the unsent outbox rows matching ``where`` over one fresh connection; mark what the broker took."""
    with database.session() as session:
        rows = list(
            session.scalars(
                select(Outbox)
                .where(Outbox.sent_at.is_(None), *where)
                .order_by(Outbox.id)
                .limit(limit)
                # PostgreSQL: rows another dispatcher is publishing are skipped, and ours stay
                # locked until they are marked. SQLite renders no locking clause.
                .with_for_update(skip_locked=True)
            )
        )
        if not rows:
            session.commit()
            return HandOff()
        sent, error = _publish(celery, rows)
        if sent:
            session.execute(
                update(Outbox).where(Outbox.id.in_(sent)).values(sent_at=utcnow(), attempts=Outbox.attempts + 1)
            )
        refused = [row.id for row in rows[len(sent) :]]
        if refused:
            session.execute(
                update(Outbox)
                .where(Outbox.id.in_(refused))
                .values(attempts=Outbox.attempts + 1, last_error=error[:1000])
            )
        session.commit()
    return HandOff([row.id for row in rows], sent, error)


def _publish(celery: Celery, rows: list[Outbox]) -> tuple[list[int], str]:
    """Send ``rows`` in order until the broker refuses one: the ids it took, and its error."""
    sent: list[int] = []
    try:
        with celery.connection_for_write() as connection:
            # One try, bounded by HUB_BROKER_TIMEOUT: kombu would otherwise retry, sleeping 2 s, then 4 s.
            connection.ensure_connection(max_retries=0)
            producer = celery.amqp.Producer(connection, auto_declare=False)
            for row in rows:
                # No kombu retries: the dispatcher and the sweeper are the retry, with a pause
                # between attempts instead of a loop that would hold this connection.
                queue = QUEUES.get(row.task, DEFAULT_QUEUE)
                celery.send_task(row.task, args=row.args, queue=queue, producer=producer, retry=False)
                sent.append(row.id)
    except Exception as exc:  # noqa: BLE001 - any broker failure means "try later"
        return sent, describe(exc)
    return sent, ""


def describe(exc: BaseException) -> str:
    """One line for the log and ``Outbox.last_error``: SQLAlchemy's errors go on with the statement."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def sweep_outbox(celery: Celery, database: Database, settings: Settings) -> int:
    """Send rows their own process left unsent for a while; forget rows sent a week ago."""
    now = utcnow()
    with database.session() as session:
        session.execute(delete(Outbox).where(Outbox.sent_at < now - timedelta(days=7)))
        session.commit()
    older = Outbox.created_at < now - timedelta(seconds=settings.outbox_resend_after)
    sent = 0
    while True:
        handed = hand_over(celery, database, [older])
        sent += len(handed.sent)
        if handed.error:
            log.warning(
                "the broker refused %d queued tasks (%s); the next sweep tries again",
                len(handed.tried) - len(handed.sent),
                handed.error,
            )
        if handed.error or len(handed.tried) < BATCH:
            return sent


class Dispatcher:
    """One app's hand-off thread in this process: started by a commit, gone when there is nothing to send."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._reset()
        _DISPATCHERS.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._retry_now = threading.Event()
        self._pending: dict[int, float] = {}  # row id -> monotonic time after which the sweeper owns it
        self._thread: threading.Thread | None = None
        self._started = self._finished = 0  # hand-offs begun and ended, for flush()
        self._closed = False
        self.last_error = ""

    def wake(self, ids: Iterable[int]) -> None:
        """Hand these committed rows over soon; returns at once."""
        owned_until = time.monotonic() + self._settings.outbox_resend_after
        with self._lock:
            if self._closed:
                return  # the sweeper's
            for row_id in ids:
                self._pending.setdefault(row_id, owned_until)
            if self._thread is None and self._pending:
                self._thread = threading.Thread(target=self._run, name="hub-outbox-dispatcher", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self, timeout: float) -> int:
        """Try now and wait, at most ``timeout`` seconds, for that try; the number of rows still not handed over."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._started + 1  # a hand-off that begins after this call
            self._retry_now.set()
            while self._pending and self._thread is not None and self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return len(self._pending)

    def close(self) -> None:
        """Stop after the current hand-off; rows not handed over are left to the sweeper."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._retry_now.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self._settings.broker_timeout + 5)

    @property
    def _settings(self) -> Settings:
        settings: Settings = self._app.extensions["hub.settings"]
        return settings

    def _run(self) -> None:
        pause = 0.0
        while True:
            now = time.monotonic()
            with self._lock:
                for row_id in [i for i, until in self._pending.items() if until <= now]:
                    del self._pending[row_id]  # the sweeper's now (see the module docstring)
                batch = sorted(self._pending)[:BATCH]
                if not batch:
                    self._thread = None
                    self._changed.notify_all()
                    return
                self._started += 1
                self._retry_now.clear()
            try:
                handed = hand_over(get_celery(self._app), get_database(self._app), [Outbox.id.in_(batch)])
                # Rows not read were sent by someone else, are being sent, or are gone.
                done, error = set(batch) - set(handed.tried) | set(handed.sent), handed.error
            except Exception as exc:  # the hub's own database failed: pause and retry too
                log.warning("outbox hand-off failed", exc_info=True)
                done, error = set(), describe(exc)
            with self._lock:
                for row_id in done:
                    self._pending.pop(row_id, None)
                self._finished += 1
                self.last_error = error
                self._changed.notify_all()
            if not error:
                pause = 0.0
                continue
            pause = min(max(pause * 2, FIRST_PAUSE), float(self._settings.outbox_resend_after))
            log.warning("the broker refused queued tasks (%s); trying again in %.1f s", error, pause)
            self._retry_now.wait(pause)


_DISPATCHERS: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


def get_dispatcher(app: Flask) -> Dispatcher:
    dispatcher: Dispatcher = app.extensions["hub.dispatcher"]
    return dispatcher


def _flush_at_exit() -> None:
    """A command's last act: give every dispatcher with work one more bounded try, all at once."""
    busy = [d for d in list(_DISPATCHERS) if d.pending()]
    if not busy:
        return
    deadline = time.monotonic() + max(d._settings.broker_timeout for d in busy) + 1.0
    for dispatcher in busy:
        dispatcher._retry_now.set()
    for dispatcher in busy:
        left = dispatcher.flush(max(0.0, deadline - time.monotonic()))
        if left:
            log.warning(
                "%d queued tasks were not handed to the broker (%s); the worker's sweeper sends them once it can",
                left,
                dispatcher.last_error or "no answer in time",
            )


def _forget_after_fork() -> None:
    # A forked child (a Celery pool process) has none of its parent's threads, and its
    # parent's rows are the parent's to send: start clean.
    for dispatcher in list(_DISPATCHERS):
        dispatcher._reset()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_forget_after_fork)
