"""Copies of the index following the change log: cursors with gaps, catch-up, agreement."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.search import SearchEngine, services
from hub.search.changes import SearchChange
from hub.search.query import SearchParams
from hub.search.replica import GAP_WAIT, Cursor, poll, read_cursor
from tests.conftest import Accounts


def _changes(db: Session, *course_ids: int) -> list[int]:
    rows = [SearchChange(course_id=course_id) for course_id in course_ids]
    db.add_all(rows)
    db.commit()
    return [row.id for row in rows]


def test_a_cursor_waits_for_ids_committed_out_of_order(db: Session) -> None:
    ids = _changes(db, 1, 2, 3)
    db.execute(SearchChange.__table__.delete().where(SearchChange.id == ids[1]))  # still being written elsewhere
    db.commit()
    first = poll(db, Cursor(), now=1000.0)
    assert first.courses == {1, 3} and first.cursor.high == ids[2] and set(first.cursor.gaps) == {ids[1]}
    assert first.cursor.low == ids[0]  # a restart re-applies from below the gap
    db.add(SearchChange(id=ids[1], course_id=2))  # ... and commits now
    db.commit()
    second = poll(db, first.cursor, now=1001.0)
    assert second.courses == {2} and not second.cursor.gaps and second.cursor.low == ids[2]
    nothing = poll(db, second.cursor, now=1002.0)
    assert not nothing.courses and nothing.cursor.high == ids[2]
    # A gap that never fills (a rolled-back transaction) is given up after GAP_WAIT.
    db.execute(SearchChange.__table__.delete().where(SearchChange.id == ids[1]))
    gapped = Cursor(ids[2], {ids[1]: 1000.0})
    assert poll(db, gapped, now=1000.0 + GAP_WAIT - 1).cursor.gaps
    assert not poll(db, gapped, now=1000.0 + GAP_WAIT + 1).cursor.gaps
    # From the beginning of a pruned log: what went before its first change is not a gap.
    db.execute(SearchChange.__table__.delete().where(SearchChange.id == ids[0]))
    db.commit()
    assert poll(db, Cursor(), now=1000.0).cursor == Cursor(ids[2], {}, 1000.0)


def test_two_copies_follow_the_log_and_agree(
    app: Flask, client: FlaskClient, db: Session, make: Accounts, course_body: dict[str, object], tmp_path: Path
) -> None:
    auth = make.bearer(make.user("up@x.cn", make.school(), "uploader"))
    copies = [SearchEngine(tmp_path / name) for name in ("node-a", "node-b")]
    for engine in copies:
        services.rebuild(db, engine)
    created = client.post("/api/v1/courses", json={**course_body, "title": "勾股定理专题"}, headers=auth)
    course_id = created.get_json()["id"]
    client.post(f"/api/v1/courses/{course_id}/lessons", json={"title": "勾股定理的证明"}, headers=auth)
    assert client.post(f"/api/v1/courses/{course_id}/publish", headers=auth).status_code == 200
    assert db.scalars(select(SearchChange.course_id)).all().count(course_id) >= 1  # logged with the change
    for engine in copies:
        db.expire_all()
        services.catch_up(db, engine)
        assert engine.query.run(SearchParams(q="勾股定理")).total == 2
        cursor = read_cursor(engine.index, engine.index.current_generation())
        assert cursor.low == db.scalar(select(SearchChange.id).order_by(SearchChange.id.desc()).limit(1))
    reports = [services.check(db, engine) for engine in copies]
    assert all(report.ok for report in reports)
    assert reports[0].digest == reports[1].digest and reports[0].name != reports[1].name
    assert {row.name for row in reports[1].replicas} == {reports[0].name, reports[1].name}
    assert client.post(f"/api/v1/courses/{course_id}/withdraw", headers=auth).status_code == 200
    services.catch_up(db, copies[0])  # the other copy is behind: its check says so
    assert copies[0].query.run(SearchParams(q="勾股定理")).total == 0
    assert copies[1].query.run(SearchParams(q="勾股定理")).total == 2
    assert not services.check(db, copies[1]).ok
    for engine in copies:
        engine.index.close()
