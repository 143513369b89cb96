"""Who may touch a tus upload: its owner and admins; anyone else, a colleague of the same school too, sees nothing."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.uploads import services
from hub.uploads.models import Upload
from tests.conftest import Accounts
from tests.unit.uploads.conftest import TUS, School, Tus, mp4_bytes


@pytest.fixture
def people(make: Accounts, db: Session, school: School) -> dict[str, dict[str, str]]:
    owner = db.scalar(select(User).where(User.email == "up@haidian.cn"))
    assert owner is not None
    bureau = make.school("区教育局", "urban")
    return {
        "colleague uploader": make.bearer(make.user("up2@haidian.cn", owner.school, "uploader")),
        "colleague teacher": school.teacher,
        "another school's uploader": school.other,
        "admin of the same school": make.bearer(make.user("admin@haidian.cn", owner.school, "admin")),
        "admin elsewhere": make.bearer(make.user("admin@bureau.cn", bureau, "admin")),
    }


INTRUDERS = ["colleague uploader", "colleague teacher", "another school's uploader"]
ADMINS = ["admin of the same school", "admin elsewhere"]


def _every_method(client: FlaskClient, url: str, auth: dict[str, str], offset: int, data: bytes) -> dict[str, Any]:
    """Each tus method on `url` (and the JSON GET, and making a material of it) as `auth`: their status codes."""
    patch_headers = {**TUS, **auth, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    return {
        "HEAD": client.head(url, headers={**TUS, **auth}).status_code,
        "GET": client.get(url, headers=auth).status_code,
        "PATCH": client.patch(url, headers=patch_headers, data=data[offset : offset + 500]).status_code,
        "DELETE": client.delete(url, headers={**TUS, **auth}).status_code,
    }


def test_only_the_owner_and_admins_touch_an_upload(
    client: FlaskClient, tus: Tus, school: School, people: dict[str, dict[str, str]], db: Session
) -> None:
    data = mp4_bytes(5000)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[:1000]).status_code == 204
    for who in INTRUDERS:
        answers = _every_method(client, url, people[who], 1000, data)
        # 404, not 403: the answer for a URL that names nothing, so a leaked URL confirms nothing.
        assert answers == {"HEAD": 404, "GET": 404, "PATCH": 404, "DELETE": 404}, who
        assert tus.offset(url) == 1000, who  # nothing written, nothing deleted
        # OPTIONS says what the server can do, nothing about the upload.
        assert client.options(url, headers=people[who]).status_code == 204

    for who in ADMINS:
        auth = people[who]
        assert tus.head(url, auth=auth).status_code == 200, who
        offset = tus.offset(url)
        assert tus.patch(url, offset, data[offset : offset + 500], auth=auth).status_code == 204, who
    assert tus.offset(url) == 2000

    # The owner goes on as if nothing happened, and finishes.
    assert tus.patch(url, 2000, data[2000:]).status_code == 204
    assert client.get(url, headers=tus.auth).json["status"] == "complete"
    # Finished, it still is nobody else's: no colleague makes a material of it.
    for who in INTRUDERS:
        made = client.post(f"/api/v1/lessons/{school.lesson_id}/materials", json={"upload": url}, headers=people[who])
        assert made.status_code in (403, 404), who  # 403: a teacher may not change the course anyway
        assert made.status_code == 404 or who == "colleague teacher", who

    # An admin may end it.
    assert client.delete(url, headers={**TUS, **people["admin elsewhere"]}).status_code == 204
    assert db.get(Upload, url.rsplit("/", 1)[-1]) is None


def test_uploads_pages_list_only_ones_own(
    app: Flask, tus: Tus, db: Session, school: School, people: dict[str, dict[str, str]]
) -> None:
    url = tus.new(3000)
    owner = db.scalar(select(User).where(User.email == "up@haidian.cn"))
    colleague = db.scalar(select(User).where(User.email == "up2@haidian.cn"))
    admin = db.scalar(select(User).where(User.email == "admin@haidian.cn"))
    assert owner is not None and colleague is not None and admin is not None
    upload_id = url.rsplit("/", 1)[-1]
    assert [u.id for u in services.list_uploads(db, owner)] == [upload_id]
    assert services.list_uploads(db, colleague) == []
    assert [u.id for u in services.list_uploads(db, admin)] == [upload_id]
