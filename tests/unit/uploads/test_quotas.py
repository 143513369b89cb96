"""Quotas on tus uploads: unfinished uploads per user, bytes they declare per school, a free-disk reserve."""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.db import utcnow
from hub.uploads import Uploads
from hub.uploads.models import Upload
from hub.uploads.storage import part_size_for
from tests.conftest import Accounts
from tests.unit.uploads.conftest import TUS, School, Tus, mp4_bytes

GiB = 1024**3


def configure(app: Flask, **settings: Any) -> Uploads:
    uploads: Uploads = app.extensions["hub.uploads"]
    changed = replace(uploads, settings=replace(uploads.settings, **settings))
    app.extensions["hub.uploads"] = changed
    return changed


@pytest.fixture
def colleague(make: Accounts, db: Session, tus: Tus) -> Tus:
    owner = db.scalar(select(User).where(User.email == "up@haidian.cn"))
    assert owner is not None
    return Tus(tus.client, make.bearer(make.user("up2@haidian.cn", owner.school, "uploader")))


def _live(db: Session) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Upload)) or 0


def test_a_user_has_at_most_so_many_unfinished_uploads(
    app: Flask, tus: Tus, colleague: Tus, school: School, client: FlaskClient, db: Session
) -> None:
    configure(app, max_unfinished=3)
    urls = [tus.new(1000) for _ in range(3)]
    refused = tus.create(1000)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "quota_exceeded"
    assert "3 unfinished uploads" in refused.json["error"]["message"]
    assert _live(db) == 3  # and no bytes waiting for a row: checked before storage is touched
    # A per-user bound: a colleague still uploads.
    assert colleague.create(1000).status_code == 201
    # A finished upload no longer counts, nor does a cancelled one, nor an expired one.
    assert tus.patch(urls[0], 0, mp4_bytes(1000)).status_code == 204
    assert tus.create(1000).status_code == 201
    assert client.delete(urls[1], headers={**TUS, **tus.auth}).status_code == 204
    assert tus.create(1000).status_code == 201
    assert tus.create(1000).status_code == 403
    db.execute(update(Upload).where(Upload.id == urls[2].rsplit("/", 1)[-1]).values(expires_at=utcnow()))
    db.commit()
    assert tus.create(1000).status_code == 201


def test_a_schools_unfinished_uploads_declare_at_most_so_many_bytes(
    app: Flask, tus: Tus, colleague: Tus, school: School, client: FlaskClient
) -> None:
    configure(app, school_max_bytes=10_000)
    first = tus.new(6000)
    refused = colleague.create(5000)
    assert refused.status_code == 413
    assert refused.json["error"]["code"] == "quota_exceeded"
    assert "limit of 10.0 kB" in refused.json["error"]["message"]
    assert colleague.create(4000).status_code == 201
    assert Tus(client, school.other).create(9000).status_code == 201  # another school's quota is its own
    assert tus.patch(first, 0, mp4_bytes(6000)).status_code == 204  # finished: no longer unfinished
    assert colleague.create(5000).status_code == 201


def test_concurrent_creations_do_not_squeeze_past_the_quota(app: Flask, tus: Tus, db: Session) -> None:
    configure(app, max_unfinished=4)
    answers: list[int] = []

    def create() -> None:
        answers.append(Tus(app.test_client(), tus.auth).create(1000).status_code)

    threads = [threading.Thread(target=create) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201] * 4 + [403] * 8
    assert _live(db) == 4


def _needed(uploads: Uploads, length: int) -> int:
    """What an upload of `length` bytes may still write to the upload directory's disk."""
    return length if uploads.partials.kind == "local" else part_size_for(length, uploads.settings.part_bytes)


def test_an_upload_that_would_eat_into_the_disk_reserve_is_a_507(app: Flask, tus: Tus, db: Session) -> None:
    uploads = configure(app, disk_reserve=0)
    directory = uploads.settings.directory
    directory.mkdir(parents=True, exist_ok=True)
    length = 10 * GiB  # declared, never written: the check is on what is still to come
    needed = _needed(uploads, length)
    # A margin either side for whatever else writes to this disk meanwhile.
    free = shutil.disk_usage(directory).free
    configure(app, disk_reserve=max(0, free - needed - 2 * GiB))
    assert tus.create(length).status_code == 201
    free = shutil.disk_usage(directory).free
    configure(app, disk_reserve=free - needed + 2 * GiB)
    refused = tus.create(length)
    assert refused.status_code == 507
    assert refused.json["error"]["code"] == "insufficient_storage"
    assert "too full" in refused.json["error"]["message"]
    assert _live(db) == 1


def test_a_patch_that_would_eat_into_the_disk_reserve_is_a_507_and_keeps_what_arrived(
    app: Flask, tus: Tus, db: Session
) -> None:
    data = mp4_bytes(4000)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[:1000]).status_code == 204
    directory: Any = app.extensions["hub.uploads"].settings.directory
    configure(app, disk_reserve=shutil.disk_usage(directory).total)  # more than any disk has free
    refused = tus.patch(url, 1000, data[1000:2000])
    assert refused.status_code == 507
    assert "resume the upload" in refused.json["error"]["message"]
    assert tus.offset(url) == 1000
    configure(app, disk_reserve=0)  # the administrator made room
    assert tus.patch(url, 1000, data[1000:]).status_code == 204
    assert tus.client.get(url, headers=tus.auth).json["status"] == "complete"


def test_the_storage_disk_is_checked_when_finished_uploads_are_copied_there(
    app: Flask, tus: Tus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.uploads import services

    uploads = app.extensions["hub.uploads"]
    if uploads.settings.storage_dir is None:
        pytest.skip("S3 storage: finished uploads leave this machine")
    storage_dir = uploads.settings.storage_dir
    real_device, real_free = services._device, services._free
    # Local storage on another filesystem than the upload directory, with less room.
    monkeypatch.setattr(services, "_device", lambda path: -1 if path == storage_dir else real_device(path))
    monkeypatch.setattr(services, "_free", lambda path: 5 * GiB if path == storage_dir else real_free(path))
    configure(app, disk_reserve=GiB)
    assert tus.create(3 * GiB).status_code == 201  # 5 GiB free there: 3 fit above the 1 GiB reserve
    assert tus.create(int(4.5 * GiB)).status_code == 507  # the upload disk has room; the storage disk has not
    configure(app, disk_reserve=0, storage_dir=None)
    assert tus.create(int(4.5 * GiB)).status_code == 201
