"""Expiry on S3, whatever HUB_TEST_STORAGE says: the periodic task aborts the multipart upload.

An abandoned upload on S3 holds parts S3 bills for and never shows in a bucket
listing; only AbortMultipartUpload frees them. This runs against the moto server
over HTTP in every run, not only in the S3 service run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from hub import create_app
from hub.db import get_database, utcnow
from hub.uploads import get_uploads
from hub.uploads.models import Upload
from hub.uploads.storage import S3PartialStore
from tests.support.moto_server import s3_client
from tests.unit.uploads.conftest import MiB, School, Tus, mp4_bytes


@pytest.fixture
def s3_app(hub_env: dict[str, str], s3_endpoint: str, s3_bucket: str, app: Flask) -> Iterator[Flask]:
    # `app` first: it is the one the `school` fixture's accounts were made with (same database).
    overrides = {k: v for k, v in hub_env.items() if k.startswith("HUB_")}
    overrides.update(
        HUB_STORAGE="s3",
        HUB_S3_ENDPOINT_URL=s3_endpoint,
        HUB_S3_BUCKET=s3_bucket,
        HUB_S3_PREFIX=f"{uuid.uuid4().hex}/",
        HUB_UPLOAD_PART_BYTES=str(5 * MiB),
    )
    s3 = create_app(overrides)
    s3.config["TESTING"] = True
    yield s3
    get_database(s3).engine.dispose()


def _multipart_uploads(s3_app: Flask, s3_endpoint: str) -> list[dict[str, object]]:
    partials = get_uploads(s3_app).partials
    assert isinstance(partials, S3PartialStore)
    listed = s3_client(s3_endpoint).list_multipart_uploads(Bucket=partials.bucket, Prefix=partials.storage.prefix)
    return list(listed.get("Uploads", []))


def test_expiry_task_aborts_the_multipart_upload_and_removes_local_parts(
    s3_app: Flask, s3_endpoint: str, school: School, db: Session
) -> None:
    import workers.uploads

    tus = Tus(s3_app.test_client(), school.uploader)
    data = mp4_bytes(12 * MiB, seed=31)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[: 6 * MiB]).status_code == 204  # one 5 MiB part in S3, 1 MiB on disk
    partials = get_uploads(s3_app).partials
    assert isinstance(partials, S3PartialStore)
    upload_id = url.rsplit("/", 1)[-1]
    (started,) = _multipart_uploads(s3_app, s3_endpoint)
    row = db.get(Upload, upload_id)
    assert row is not None
    parts = partials.list_parts(row.backend_state)
    assert parts is not None and {n: size for n, (size, _) in parts.items()} == {1: 5 * MiB}
    assert partials.local_parts(upload_id) == {2: MiB}

    db.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    with s3_app.app_context():
        assert workers.uploads.expire_uploads.run() == {"expired": 1, "purged": 0, "orphans": 0}

    assert _multipart_uploads(s3_app, s3_endpoint) == [], f"{started['Key']} still holds its parts"
    assert partials.local_parts(upload_id) == {}
    assert not (partials.root / upload_id).exists()
    assert tus.head(url).status_code == 410
    # Safe to run twice.
    with s3_app.app_context():
        assert workers.uploads.expire_uploads.run()["expired"] == 0
