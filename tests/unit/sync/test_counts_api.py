"""Download counts through the sync API: the bound on a report, what the answer says, how it is written."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from hub.db import get_database, utcnow
from tests.conftest import Accounts
from tests.unit.sync.conftest import Upstream

TODAY = utcnow().date()
BATCH_BOUND = 250
"""Rows one transaction may write: hub.sync.counts.COUNT_BATCH (200), with room to tune it."""


def _server_token(make: Accounts, up: Upstream) -> dict[str, str]:
    return make.bearer(make.user("server@rural.example", up.rural, "teacher"), "sync")


def _body(rows: list[tuple[str, date, int]], report_id: str) -> dict[str, Any]:
    return {"id": report_id, "counts": [{"sha256": s, "day": d.isoformat(), "count": n} for s, d, n in rows]}


def test_a_report_over_the_bound_is_a_413_in_the_error_shape(
    app: Flask, client: FlaskClient, up: Upstream, make: Accounts
) -> None:
    headers = _server_token(make, up)
    # HUB_SYNC_REPORT_MAX_ROWS is 1000 by default.
    rows = [(up.subscribed[n % 3], TODAY - timedelta(days=n // 3), 1) for n in range(1001)]
    refused = client.post("/api/v1/sync/counts", json=_body(rows, "d" * 32), headers=headers)
    assert refused.status_code == 413
    assert refused.json["error"]["code"] == "too_large"
    assert "at most 1000 rows" in refused.json["error"]["message"] and "counts" in refused.json["error"]["fields"]
    assert up.downloads() == {}
    taken = client.post("/api/v1/sync/counts", json=_body(rows[:1000], "d" * 32), headers=headers)
    assert taken.json == {"added": 1000, "ignored": 0, "usage_added": 0, "usage_ignored": 0}


def test_the_answer_never_tells_an_invisible_hash_from_an_unknown_one(
    client: FlaskClient, up: Upstream, make: Accounts
) -> None:
    headers = _server_token(make, up)
    answers = []
    for n, sha in enumerate([up.draft, up.unsubscribed, "e" * 64], start=1):
        response = client.post(
            "/api/v1/sync/counts", json=_body([(sha, TODAY, 10_000_000)], f"{n:032x}"), headers=headers
        )
        answers.append((response.status_code, response.get_data()))
    assert answers == [(200, b'{"added":0,"ignored":10000000,"usage_added":0,"usage_ignored":0}\n')] * 3
    assert up.downloads() == {}


def test_a_big_report_is_written_in_short_transactions(
    app: Flask, client: FlaskClient, up: Upstream, make: Accounts
) -> None:
    """No transaction writes more than a few hundred rows, so none holds SQLite's write lock for long."""
    rows = [(up.subscribed[i % 3], TODAY - timedelta(days=i // 3), 1) for i in range(1000)]
    engine = get_database(app).engine
    written: list[int] = [0]  # download_count rows written in each transaction, the current one last

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DOWNLOAD_COUNT"):
            written[-1] += max(cursor.rowcount, 0)

    def committed(conn: Any) -> None:
        written.append(0)

    headers = _server_token(make, up)
    event.listen(engine, "after_cursor_execute", count)
    event.listen(engine, "commit", committed)
    try:
        answer = client.post("/api/v1/sync/counts", json=_body(rows, "f" * 32), headers=headers)
    finally:
        event.remove(engine, "after_cursor_execute", count)
        event.remove(engine, "commit", committed)
    assert answer.status_code == 200, answer.json
    assert answer.json["added"] == 1000
    assert sum(written) == 1000
    assert max(written) <= BATCH_BOUND
    assert sum(up.downloads().values()) == 1000
