"""The embedded broker and the beat scheduler, made to survive broker errors.

Celery loads this module by name (``hub.broker:Transport``, ``hub.broker:Scheduler``)
only in processes that talk to a broker, so it may import Celery and kombu at once.

**The SQLite broker.** kombu's SQLAlchemy transport keeps every message it ever
delivered (it marks them ``visible = false``; nothing reads them again), takes
SQLite's write lock for every poll of every empty queue, sleeps a whole second
between polls (about one task a second per worker process) and waits pysqlite's
default five seconds for a locked database. :class:`Channel` deletes a message as
it delivers it (and, once per process, those older hubs left), answers an idle
poll with one plain read for all the worker's queues, takes the write lock only
for a queue that has a message, runs SQLite in WAL mode so polls read while
others write, and takes its busy timeout from the transport options, which
:mod:`hub.jobs` fills (``HUB_BROKER_TIMEOUT``, ``SQL_POLLING_INTERVAL``).
Deleting on delivery loses nothing that marking did: kombu keeps an
unacknowledged message in the consumer's memory and puts it back on a clean
shutdown, and a message marked invisible by a worker killed outright was never
delivered again either (the stalled-work requeue finds such work).

**The beat.** Celery's scheduler publishes through one producer made when it
starts. When a publish fails for longer than kombu's retries (a SQLite broker
locked for 40 s did it), kombu has closed that producer's channel while
retrying, and re-raises the error as its own ``OperationalError``, which the
SQLAlchemy transport does not list as recoverable, so the producer is never
revived: every later tick failed at once with ``channel disconnected`` until the
worker was restarted. :class:`Scheduler` drops the producer and its connection
after any failed send, on any broker, and the next tick connects afresh.
"""

from __future__ import annotations

import logging
from functools import cached_property
from queue import Empty
from typing import Any

from celery.beat import PersistentScheduler
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from sqlalchemy import create_engine, delete, event, select, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# Seconds a publish or a poll waits for a locked SQLite broker before it fails.
DEFAULT_BUSY_TIMEOUT = 5.0


class Channel(kombu_sqla.Channel):
    # Per process and URL, as kombu's; our own, or kombu's cache would hand us engines it made.
    _engines: dict[str, tuple[Engine, Any]] = {}  # noqa: RUF012

    def _engine_from_config(self) -> Engine:
        options = self.connection.client.transport_options
        url = self.connection.client.hostname
        timeout = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
        engine = create_engine(url, connect_args={"timeout": timeout} if url.startswith("sqlite") else {})
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def _open(self) -> tuple[Engine, Any]:
        fresh = self.connection.client.hostname not in self._engines
        engine, session_factory = super()._open()  # type: ignore[no-untyped-call]
        if fresh:
            # Delivered messages left by kombu's own transport (hubs before this one kept them all);
            # looked for first, so a start does not wait for the write lock when there are none.
            delivered = self.message_cls.visible.is_(False)
            with engine.begin() as connection:
                if connection.execute(select(self.message_cls.id).where(delivered).limit(1)).first():
                    connection.execute(delete(self.message_cls.__table__).where(delivered))
        return engine, session_factory

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        self._queue_ids: dict[str, int] = {}  # queue rows are never deleted
        super().__init__(connection, **kwargs)  # type: ignore[no-untyped-call]

    def _queue_id(self, queue: str) -> int:
        found = self._queue_ids.get(queue)
        if found is None:
            found = self._queue_ids[queue] = int(self._get_or_create(queue).id)  # type: ignore[no-untyped-call]
        return found

    def _waiting(self, queue_ids: list[int]) -> bool:
        """Whether any of these queues holds a message: a plain indexed read, no lock, no ORM."""
        message = self.message_cls
        engine, _ = self._open()
        with engine.connect() as connection:
            query = select(message.id).where(message.queue_id.in_(queue_ids), message.visible.is_not(False)).limit(1)
            return connection.execute(query).first() is not None

    def _poll(self, cycle: Any, callback: Any, timeout: Any = None) -> Any:
        # An idle worker polls every polling_interval: one read for all its queues, and
        # kombu's fair round of the queues (a write lock each) only when one has work.
        if not self._waiting([self._queue_id(queue) for queue in self._active_queues]):
            raise Empty()
        return super()._poll(cycle, callback, timeout)  # type: ignore[no-untyped-call]

    def _get(self, queue: str, timeout: Any = None) -> Any:
        queue_id = self._queue_id(queue)
        if not self._waiting([queue_id]):
            raise Empty()
        message = self.message_cls
        if self.session.bind.name == "sqlite":
            self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            row = (
                self.session.query(message.id, message.payload)
                .with_for_update()
                .filter(message.queue_id == queue_id, message.visible.is_not(False))
                .order_by(message.sent_at, message.id)
                .limit(1)
                .first()
            )
            if row is None:
                raise Empty()
            # Deleted, not marked invisible as kombu does: nothing ever reads it again.
            self.session.execute(delete(message.__table__).where(message.id == row.id))
            return loads(bytes_to_str(row.payload))  # type: ignore[no-untyped-call]
        finally:
            self.session.commit()

    def close(self) -> None:
        # kombu leaves the session to the garbage collector, and with it a pooled
        # connection: a process that opens a connection per hand-off would run dry.
        if self._session is not None:
            self._session.close()
            self._session = None
        super().close()  # type: ignore[no-untyped-call]


class Transport(kombu_sqla.Transport):
    Channel = Channel


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: a worker's polls read while a web process writes a message.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Scheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's persistent beat scheduler, connecting afresh after a failed send."""

    @cached_property
    def producer(self) -> Any:
        # Lazy, unlike Celery's (which connects here, retrying for up to an hour): the channel
        # opens with the first send, inside apply_entry's error handling. A failure here would
        # escape tick() after it took the entry off its heap, and that entry would never run again.
        return self.Producer(self.connection, auto_declare=False)

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        log.info("beat: sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # noqa: BLE001 - the beat must keep ticking whatever the broker did
            self._drop_connection()
            # One line a tick: a broker away for an hour should not fill the log with tracebacks.
            log.error("beat: could not send %s (%s); the next tick connects afresh", entry.task, _first_line(exc))

    def _drop_connection(self) -> None:
        # Both are cached properties of the base class: dropped, they are made anew on next use.
        self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        if connection is not None:
            try:
                connection.collect()
            except Exception:  # a dead connection may fail to close; it is dropped anyway
                log.debug("beat: closing the failed broker connection failed", exc_info=True)


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy's errors go on with the statement and its parameters: a message's whole payload.
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
