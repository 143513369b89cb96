"""The outbox over real processes: a broker that is away costs requests nothing and loses no work.

- The web server's broker is unreachable while a course is made and published; every
  request still succeeds at once, and the worker's periodic sweeper (Celery beat) sends
  the unsent rows to its own broker.
- The broker goes away for several sweep ticks and comes back: the work queued meanwhile
  is done by the same worker, without a restart.
- While the broker is away, a write answers as fast as with the broker up, and a page
  read next to a burst of writes is not slowed.

Outages come from tests/support/broker_outage.py: a lock on the SQLite broker's file in
the default run, a TCP proxy in front of Redis in the service run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from hub.catalog.models import Material
from hub.db import utcnow
from hub.jobs import INDEX_COURSE, PROCESS_MATERIAL, Outbox
from tests.conftest import COURSE, Accounts
from tests.functional.conftest import LiveServer, Worker, wait_until
from tests.support.broker_outage import BrokerOutage

# Nothing listens on port 9 of loopback: every send is refused at once.
DEAD_BROKER = "redis://127.0.0.1:9/0"

pytestmark = pytest.mark.slow


class Api:
    def __init__(self, server: LiveServer, auth: dict[str, str]) -> None:
        self.server, self.auth = server, auth

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.server.api(path), headers=self.auth, timeout=60, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def upload(self, lesson: int, name: str, data: bytes) -> int:
        material = self("POST", f"/lessons/{lesson}/materials", data={"title": name}, files={"file": (name, data)})
        return int(material["id"])

    def indexed(self, course_id: int, words: str) -> bool:
        found = requests.get(self.server.api("/search"), params={"q": words}, timeout=10).json()
        return any(hit["course"]["id"] == course_id for hit in found["hits"])


def test_sweeper_resends_what_a_dead_broker_refused(
    hub_env: dict[str, str], tmp_path: Path, start_worker: Callable[..., Worker], make: Accounts, db: Session
) -> None:
    # The worker (and its beat) run on the real broker, sweeping every second; the server
    # starts meanwhile (each takes seconds to import the hub) and is used once both are up.
    server = LiveServer({**hub_env, "HUB_BROKER_URL": DEAD_BROKER}, tmp_path, wait=False)
    try:
        start_worker(beat=True, HUB_OUTBOX_RESEND_AFTER="1")
        server.wait()
        api = Api(server, make.bearer(make.user("up@x.cn", make.school(), "uploader")))
        course = api("POST", "/courses", json={**COURSE, "title": "离线时发布的课程"})
        api("POST", f"/courses/{course['id']}/lessons", json={"title": "古诗三首"})
        api("POST", f"/courses/{course['id']}/publish")

        def refused() -> bool:
            # The server's own dispatcher tried, off the request thread, and its broker refused.
            db.expire_all()
            rows = db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE)).all()
            return bool(rows) and all("Connection refused" in row.last_error for row in rows)

        wait_until(refused, 30, "the server's dispatcher to meet its dead broker")
        wait_until(
            lambda: api.indexed(course["id"], "古诗三首"),
            90,
            "the sweeper to re-send and the worker to index the course",
            interval=0.5,
        )

        def all_sent() -> bool:
            # The course can be searchable after the first re-sent row: the sweeper marks the
            # others in its next rounds, so wait for them before checking what it wrote.
            db.expire_all()
            return all(row.sent_at is not None for row in db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE)))

        wait_until(all_sent, 30, "the sweeper to re-send every refused row")
        rows = db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE)).all()
        assert all(row.args == [course["id"]] and row.sent_at is not None and row.attempts >= 2 for row in rows)
    finally:
        server.process.stop()


def test_work_queued_during_a_broker_outage_is_done_after_it_without_a_restart(
    hub_env: dict[str, str], tmp_path: Path, start_worker: Callable[..., Worker], make: Accounts, db: Session
) -> None:
    # Held for longer than Celery's own publish retries last (about 20 s on a locked SQLite
    # broker): that is what left the beat failing with "channel disconnected" for good.
    outage_seconds = 30
    outage = BrokerOutage(hub_env)
    settings = {"HUB_OUTBOX_RESEND_AFTER": "1", "HUB_MEDIA_LEASE": "1"}
    server = LiveServer({**outage.env, **settings}, tmp_path, wait=False)
    try:
        worker = start_worker(beat=True, **{**outage.env, **settings})
        server.wait()
        api = Api(server, make.bearer(make.user("up@x.cn", make.school(), "uploader")))
        course = api("POST", "/courses", json={**COURSE, "title": "停电那天的课"})
        lesson = api("POST", f"/courses/{course['id']}/lessons", json={"title": "荷塘月色"})["id"]
        wait_until(lambda: "hub.jobs.sweep_outbox" in worker.process.output(), 30, "the beat's first sweep")

        outage.cut()
        cut_at = time.monotonic()
        api("POST", f"/courses/{course['id']}/publish")
        swept = api.upload(lesson, "notes.txt", b"read me after the outage")
        requeued = api.upload(lesson, "more.txt", b"and me")
        # The web server goes with the work it could not hand over (a restart, a crash):
        # the worker's sweeper must send it.
        server.process.kill()
        server.process.stop()
        # The other material's message is lost (as a broker that crashed would lose it):
        # only the stalled-work requeue can find it, a pending material untouched for long.
        queued = db.scalars(select(Outbox).where(Outbox.task == PROCESS_MATERIAL)).all()
        db.execute(delete(Outbox).where(Outbox.id.in_([row.id for row in queued if row.args == [requeued]])))
        db.execute(update(Material).where(Material.id == requeued).values(updated_at=utcnow().replace(year=2000)))
        db.commit()
        time.sleep(max(0.0, outage_seconds - (time.monotonic() - cut_at)))
        # Back without the beat's ticks it held from before the outage: only ticks sent
        # after it can start the sweeper and the requeue.
        outage.restore(empty=True)

        def settled() -> bool:
            db.expire_all()
            statuses = db.scalars(select(Material.status).where(Material.id.in_([swept, requeued]))).all()
            return len(statuses) == 2 and "pending" not in statuses and "processing" not in statuses

        wait_until(settled, 90, "both materials to be processed after the outage", interval=0.5)
        (tmp_path / "again").mkdir()
        after = LiveServer({**outage.env, **settings}, tmp_path / "again")
        try:
            again = Api(after, api.auth)
            wait_until(lambda: again.indexed(course["id"], "荷塘月色"), 60, "the course published in the outage")
        finally:
            after.process.stop()
        assert worker.process.popen.poll() is None, "the worker was meant to live through the outage"
    finally:
        outage.close()
        server.process.stop()


def test_writes_do_not_wait_for_a_broker_that_is_away(
    hub_env: dict[str, str], tmp_path: Path, make: Accounts, db: Session
) -> None:
    outage = BrokerOutage(hub_env)
    server = LiveServer(outage.env, tmp_path)
    try:
        api = Api(server, make.bearer(make.user("up@x.cn", make.school(), "uploader")))
        course = api("POST", "/courses", json=COURSE)["id"]
        counter = iter(range(1_000_000))

        def write() -> float:
            # Each edit queues the course's re-indexing: one task for the broker.
            started = time.perf_counter()
            api("PATCH", f"/courses/{course}", json={"summary": f"第 {next(counter)} 稿"})
            return time.perf_counter() - started

        def read() -> float:
            started = time.perf_counter()
            assert requests.get(server.url + "/courses", timeout=60).status_code == 200
            return time.perf_counter() - started

        def measure() -> tuple[float, float]:
            """Median of lone writes, and median of reads made while 16 writes run at once."""
            writes = [write() for _ in range(7)]
            with ThreadPoolExecutor(16) as pool:
                burst = [pool.submit(write) for _ in range(16)]
                reads = [read() for _ in range(7)]
                for done in burst:
                    done.result()
            return statistics.median(writes), statistics.median(reads)

        write()

        def handed_over() -> bool:
            db.expire_all()
            return db.scalar(select(func.count()).select_from(Outbox).where(Outbox.sent_at.is_(None))) == 0

        # Warm: the server has loaded Celery and made the broker's file before anything is timed.
        wait_until(handed_over, 30, "the first write's task to reach the broker")
        up_write, up_read = measure()
        outage.cut()
        try:
            down_write, down_read = measure()
        finally:
            outage.restore()
        # Ratios against the same requests with the broker up, measured in this run: on a
        # locked SQLite broker each write used to wait 5 s for its one task (ratio ~100).
        assert down_write < 3 * up_write, (down_write, up_write)
        assert down_read < 3 * up_read, (down_read, up_read)
    finally:
        outage.close()
        server.process.stop()
