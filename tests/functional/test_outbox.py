"""The outbox over real processes: a broker that is down at commit time loses nothing.

The web server's broker is unreachable while a course is made and published; every
request still succeeds at once. The worker's periodic sweeper (Celery beat) sends the
unsent rows to its broker, and the worker indexes the course.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.jobs import INDEX_COURSE, Outbox
from tests.conftest import COURSE, Accounts
from tests.functional.conftest import LiveServer, Worker, wait_until

# Nothing listens on port 9 of loopback: every send is refused at once.
DEAD_BROKER = "redis://127.0.0.1:9/0"


@pytest.mark.slow
def test_sweeper_resends_what_a_dead_broker_refused(
    hub_env: dict[str, str], tmp_path: Path, start_worker: Callable[..., Worker], make: Accounts, db: Session
) -> None:
    # The worker (and its beat) run first, on the real broker, sweeping every second.
    start_worker(beat=True, HUB_OUTBOX_RESEND_AFTER="1")
    server = LiveServer({**hub_env, "HUB_BROKER_URL": DEAD_BROKER}, tmp_path)
    try:
        auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))

        def api(method: str, path: str, **kwargs: Any) -> Any:
            response = requests.request(method, server.api(path), headers=auth, timeout=15, **kwargs)
            assert response.status_code < 300, response.text
            return response.json()

        course = api("POST", "/courses", json={**COURSE, "title": "离线时发布的课程"})
        api("POST", f"/courses/{course['id']}/lessons", json={"title": "古诗三首"})
        api("POST", f"/courses/{course['id']}/publish")

        db.expire_all()
        rows = db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE)).all()
        assert rows and all(row.args == [course["id"]] for row in rows)
        # Refused at commit time (the sweeper, a second away, may already have re-sent them).
        assert all("Connection refused" in row.last_error for row in rows), [r.last_error for r in rows]

        def indexed() -> bool:
            found = requests.get(server.api("/search"), params={"q": "古诗三首"}, timeout=10).json()
            return any(hit["course"]["id"] == course["id"] for hit in found["hits"])

        wait_until(indexed, 90, "the sweeper to re-send and the worker to index the course", interval=0.5)
        db.expire_all()
        rows = db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE)).all()
        assert all(row.sent_at is not None and row.attempts >= 2 for row in rows)
    finally:
        server.process.stop()
