"""Locking, expiry, completion after a crash, and materials made from uploads."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub.catalog.models import Material
from hub.db import get_database, utcnow
from hub.jobs import INDEX_COURSE, PROCESS_MATERIAL, Outbox
from hub.media.storage import Storage
from hub.uploads import Uploads, services
from hub.uploads.models import Upload
from hub.uploads.storage import PartialLost, Sha256State
from tests.unit.uploads.conftest import TUS, MiB, School, Tus, metadata, mp4_bytes


def _id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _row(db: Session, url: str) -> Upload:
    db.expire_all()
    upload = db.get(Upload, _id(url))
    assert upload is not None
    return upload


def test_a_locked_upload_answers_423(
    app: Flask, tus: Tus, db: Session, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tus.new(1000)
    monkeypatch.setattr(services, "LOCK_WAIT_SECONDS", 0.3)
    with get_database(app).session() as holder, services.upload_lock(holder, uploads, _id(url)):
        locked = tus.patch(url, 0, mp4_bytes(100))
        assert locked.status_code == 423
        assert locked.headers["Retry-After"] == "5"
        holder.rollback()
    assert tus.patch(url, 0, mp4_bytes(100)).status_code == 204


def test_concurrent_patches_are_serialised(app: Flask, tus: Tus) -> None:
    data = mp4_bytes(16 * MiB, seed=11)
    url = tus.new(len(data))
    start = threading.Barrier(3)
    statuses: list[int] = []

    def send(part: bytes) -> None:
        client = app.test_client()
        start.wait()
        statuses.append(tus.__class__(client, tus.auth).patch(url, 0, part).status_code)

    threads = [threading.Thread(target=send, args=(data[: 8 * MiB],)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [204, 409, 409]
    assert tus.offset(url) == 8 * MiB
    assert tus.patch(url, 8 * MiB, data[8 * MiB :]).status_code == 204
    storage: Storage = app.extensions["hub.storage"]
    assert b"".join(storage.open_range(hashlib.sha256(data).hexdigest())) == data


def test_expiry_removes_bytes_and_rows(app: Flask, tus: Tus, db: Session, uploads: Uploads) -> None:
    stale, fresh, done = tus.new(5000), tus.new(5000), tus.upload(mp4_bytes(3000))
    assert tus.patch(stale, 0, mp4_bytes(4096)).status_code == 204
    stale_row = _row(db, stale)
    state = dict(stale_row.backend_state)
    db.execute(update(Upload).where(Upload.id.in_([_id(stale), _id(done)])).values(expires_at=utcnow()))
    db.commit()
    orphan = "o" * 32
    uploads.partials.create(orphan, 10)

    report = services.expire_uploads(get_database(app), uploads, utcnow() + timedelta(days=2))
    assert (report.expired, report.orphans) == (2, 1)
    assert _row(db, stale).status == "expired" and _row(db, done).status == "expired"
    assert _row(db, fresh).status == "uploading"
    with pytest.raises(PartialLost):
        uploads.partials.open(_id(stale), state)
    assert tus.head(stale).status_code == 410
    assert tus.offset(fresh) == 0
    # A finished upload's blob stays: materials may use it.
    storage: Storage = app.extensions["hub.storage"]
    assert storage.exists(hashlib.sha256(mp4_bytes(3000)).hexdigest())

    later = services.expire_uploads(get_database(app), uploads, utcnow() + timedelta(days=40))
    assert (later.expired, later.purged) == (1, 3)  # "fresh" has long expired by then: all three go
    assert tus.head(stale).status_code == 404
    assert services.expire_uploads(get_database(app), uploads, utcnow() + timedelta(days=40)).expired == 0


def test_expiry_skips_an_upload_being_written(app: Flask, tus: Tus, db: Session, uploads: Uploads) -> None:
    url = tus.new(100)
    db.execute(update(Upload).values(expires_at=utcnow()))
    db.commit()
    with get_database(app).session() as holder, services.upload_lock(holder, uploads, _id(url)):
        report = services.expire_uploads(get_database(app), uploads, utcnow() + timedelta(seconds=1))
        holder.rollback()
    assert report.expired == 0 and report.skipped == [_id(url)]


def test_without_a_saved_hash_state_the_file_is_hashed_at_the_end(
    app: Flask, tus: Tus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Sha256State, "available", staticmethod(lambda: False))
    data = mp4_bytes(2 * MiB + 1, seed=5)
    url = tus.upload(data)
    assert tus.client.get(url, headers=tus.auth).json["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_stalled_completion_is_finished_by_the_next_head(
    app: Flask, tus: Tus, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = mp4_bytes(2 * MiB, seed=6)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[:MiB]).status_code == 204
    original_open = uploads.partials.open

    def crashing_open(upload_id: str, state: dict[str, Any]) -> Any:
        partial = original_open(upload_id, state)

        def finish(sha256: str | None, declared: str | None = None) -> Any:
            raise OSError("storage went away")

        partial.finish = finish  # type: ignore[method-assign]
        return partial

    monkeypatch.setattr(uploads.partials, "open", crashing_open)
    with pytest.raises(OSError, match="went away"):
        tus.patch(url, MiB, data[MiB:])
    monkeypatch.undo()
    head = tus.head(url)
    assert head.headers["Upload-Offset"] == str(len(data))
    state = tus.client.get(url, headers=tus.auth).json
    assert state["status"] == "complete" and state["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_stalled_completion_of_the_wrong_file_is_discarded_by_the_next_head(
    app: Flask, tus: Tus, db: Session, uploads: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server died after the last PATCH's bytes were safe, before it compared the declared sha256.
    data = mp4_bytes(2 * MiB, seed=8)
    url = tus.new(len(data), meta=metadata(sha256="1" * 64))
    assert tus.patch(url, 0, data[:MiB]).status_code == 204

    def killed(*args: Any) -> None:
        raise OSError("killed")

    monkeypatch.setattr(services, "_finish", killed)
    with pytest.raises(OSError, match="killed"):
        tus.patch(url, MiB, data[MiB:])
    monkeypatch.undo()
    head = tus.head(url)
    assert head.status_code == 410
    described = tus.client.get(url, headers=tus.auth)
    assert described.status_code == 410 and "did not match the sha256" in described.json["error"]["message"]
    assert _row(db, url).status == "expired"
    storage: Storage = app.extensions["hub.storage"]
    assert not storage.exists(hashlib.sha256(data).hexdigest())


def _attach(client: FlaskClient, school: School, url: str, lesson_id: int | None = None, **body: Any) -> Any:
    return client.post(
        f"/api/v1/lessons/{lesson_id or school.lesson_id}/materials",
        json={"upload": url, **body},
        headers=school.uploader,
    )


def test_a_finished_upload_becomes_a_material(
    app: Flask, tus: Tus, school: School, client: FlaskClient, db: Session
) -> None:
    data = mp4_bytes(MiB + 1, seed=7)
    url = tus.upload(data, meta=metadata("第一课 配方法.mp4", "video/mp4"))
    created = _attach(client, school, url)
    assert created.status_code == 201, created.json
    material = created.json
    assert material["kind"] == "video" and material["status"] == "pending"
    assert material["title"] == "第一课 配方法.mp4" and material["filename"] == "第一课 配方法.mp4"
    assert material["original"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert material["original"]["bytes"] == len(data)
    tasks = [row.task for row in db.scalars(select(Outbox))]
    assert PROCESS_MATERIAL in tasks and INDEX_COURSE in tasks

    retry = _attach(client, school, "http://anyhost" + url, title="ignored on a retry")
    assert retry.json["id"] == material["id"]  # a retry, not a duplicate
    assert db.scalar(select(func.count()).select_from(Material)) == 1
    assert client.get(url, headers=school.uploader).json["material"] == material["id"]

    second_lesson = client.post(
        f"/api/v1/courses/{school.course_id}/lessons", json={"title": "公式法"}, headers=school.uploader
    ).json["id"]
    reused = _attach(client, school, url, lesson_id=second_lesson)
    assert reused.status_code == 409


def test_materials_only_from_finished_uploads_of_ones_school(tus: Tus, school: School, client: FlaskClient) -> None:
    unfinished = tus.new(5000)
    refused = _attach(client, school, unfinished, title="半成品")
    assert refused.status_code == 409
    assert "not finished" in refused.json["error"]["message"]
    assert _attach(client, school, "/api/v1/courses/1").status_code == 422
    assert _attach(client, school, "/api/v1/uploads/../../etc/passwd").status_code == 422
    theirs = Tus(client, school.other).upload(mp4_bytes(3000))
    assert _attach(client, school, theirs).status_code == 404
    mine = tus.upload(mp4_bytes(3000, seed=1))
    by_teacher = client.post(
        f"/api/v1/lessons/{school.lesson_id}/materials", json={"upload": mine}, headers=school.teacher
    )
    assert by_teacher.status_code == 404  # same school, but an upload is only its owner's (test_roles.py)


def test_the_materials_endpoint_keeps_taking_multipart(tus: Tus, school: School, client: FlaskClient) -> None:
    import io

    response = client.post(
        f"/api/v1/lessons/{school.lesson_id}/materials",
        data={"title": "小文件", "file": (io.BytesIO(mp4_bytes(2000)), "small.mp4")},
        headers=school.uploader,
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    assert client.options("/api/v1/uploads/", headers=TUS).status_code == 204


def test_the_periodic_task_calls_the_expiry(app: Flask, tus: Tus, db: Session) -> None:
    import workers.uploads

    url = tus.new(100)
    db.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    with app.app_context():
        assert workers.uploads.expire_uploads.run() == {"expired": 1, "purged": 0, "orphans": 0}
    assert tus.head(url).status_code == 410
