"""Who may keep a copy: blobs and course ZIPs anyone may fetch are cacheable, a draft's are not.

Blob downloads are content-addressed, so a public blob is `immutable` for a year; a blob
only its school may fetch (a draft's) is `private, no-store` whoever asks and however
(bearer token or session, whole, ranged or conditional, served by the hub or by S3
behind a presigned redirect), and says that its answer varies with the credentials.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from hub import create_app
from hub.catalog.models import Material
from hub.db import get_database
from hub.media.models import Blob
from hub.media.storage.s3 import S3Storage
from tests.conftest import Accounts, hub_settings
from tests.support.courses import SeededCourse, seed_course

IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE = "private, no-store"


def _vary(response: Any) -> set[str]:
    return {v.strip().lower() for v in re.split(r",", response.headers.get("Vary", "")) if v.strip()}


@pytest.fixture(params=["local", "s3"])
def store_app(request: pytest.FixtureRequest, hub_env: dict[str, str]) -> Iterator[Flask]:
    """The hub on local storage, then on S3 (moto), whichever the run's default is."""
    settings = hub_settings(hub_env)
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        settings.update(
            HUB_STORAGE="s3",
            HUB_S3_ENDPOINT_URL=endpoint,
            HUB_S3_BUCKET=request.getfixturevalue("s3_bucket"),
            HUB_S3_PREFIX=f"{uuid.uuid4().hex}/",
        )
    else:
        settings["HUB_STORAGE"] = "local"
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    get_database(app).engine.dispose()


@dataclass
class Catalog:
    published: SeededCourse
    draft: SeededCourse
    owner: dict[str, str]  # bearer header of an uploader of the school
    shared: str  # bytes used by both courses: the draft's material is older (lower id)


@pytest.fixture
def catalog(store_app: Flask) -> Iterator[Catalog]:
    with get_database(store_app).session() as db:
        make = Accounts(db)
        school = make.school()
        owner = make.bearer(make.user("up@haidian.cn", school, "uploader"))
        storage = store_app.extensions["hub.storage"]
        draft = seed_course(storage, db, school.id, status="draft", title="草稿课程")
        published = seed_course(storage, db, school.id, status="published")
        shared = published.by_role["doc-original"]
        # The draft's document (an older material, so the first a look-up by id finds)
        # now uses the published course's bytes under a title only its school may see.
        material = db.get(Material, draft.material_ids["doc"])
        assert material is not None and material.id < published.material_ids["doc"]
        material.original_sha256 = shared
        material.title = "内部草稿讲义"
        db.commit()
        yield Catalog(published, draft, owner, shared)


def _get(client: FlaskClient, sha256: str, **headers: str) -> Any:
    return client.get(f"/api/v1/blobs/{sha256}", headers=headers)


def _served_by_s3(store_app: Flask) -> bool:
    return store_app.extensions["hub.settings"].storage == "s3"


def _assert_s3_is_told(response: Any, cache_control: str) -> None:
    """The presigned URL asks S3 to send `cache_control` with the bytes, and S3 does."""
    location = response.headers["Location"]
    asked = parse_qs(urlsplit(location).query)["response-cache-control"]
    assert asked == [cache_control]
    answer = requests.get(location, timeout=10)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == cache_control


def test_a_drafts_blob_fetched_with_a_token_is_private(store_app: Flask, catalog: Catalog) -> None:
    client = store_app.test_client()
    sha256 = catalog.draft.by_role["video-240p"]
    assert _get(client, sha256).status_code == 404  # anonymous: no such file
    for headers in ({}, {"Range": "bytes=0-9"}, {"If-None-Match": f'"{sha256}"'}, {"Range": "bytes=999999999-"}):
        response = _get(client, sha256, **catalog.owner, **headers)
        assert response.status_code in (200, 206, 302, 304, 416), (headers, response.status_code)
        assert response.headers["Cache-Control"] == PRIVATE, headers
        assert {"authorization", "cookie"} <= _vary(response), headers
    if _served_by_s3(store_app):
        redirect = _get(client, sha256, **catalog.owner)
        assert redirect.status_code == 302
        _assert_s3_is_told(redirect, PRIVATE)
    # HEAD too.
    assert client.head(f"/api/v1/blobs/{sha256}", headers=catalog.owner).headers["Cache-Control"] == PRIVATE


def test_a_public_blob_stays_immutable_for_everyone(store_app: Flask, catalog: Catalog) -> None:
    client = store_app.test_client()
    sha256 = catalog.published.by_role["video-240p"]
    for who in ({}, catalog.owner):
        response = _get(client, sha256, **who)
        if _served_by_s3(store_app):
            assert response.status_code == 302 and response.headers["Cache-Control"] == "no-store"
            _assert_s3_is_told(response, IMMUTABLE)
        else:
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == IMMUTABLE
        # The same answer for anyone: nothing in it depends on the token.
        assert "authorization" not in _vary(response)
    not_modified = _get(client, sha256, **{"If-None-Match": f'"{sha256}"'})
    assert not_modified.status_code == 304 and not_modified.headers["Cache-Control"] == IMMUTABLE


def test_a_public_blob_never_carries_a_drafts_title(store_app: Flask, catalog: Catalog) -> None:
    """Bytes shared by a draft and a published course are public; the cacheable answer must not
    name the draft's material to whoever gets it from a shared cache."""
    client = store_app.test_client()
    response = _get(client, catalog.shared, **catalog.owner)
    if _served_by_s3(store_app):
        disposition = parse_qs(urlsplit(response.headers["Location"]).query)["response-content-disposition"][0]
        _assert_s3_is_told(response, IMMUTABLE)
    else:
        assert response.headers["Cache-Control"] == IMMUTABLE
        disposition = response.headers["Content-Disposition"]
    assert "内部草稿讲义" not in unquote(disposition)
    assert unquote(disposition) == unquote(_get(client, catalog.shared).headers.get("Content-Disposition", disposition))


def test_course_zips_of_drafts_are_private(store_app: Flask, catalog: Catalog) -> None:
    client = store_app.test_client()
    url = f"/courses/{catalog.draft.course_id}/download"
    assert client.get(url).status_code == 404
    for headers in ({}, {"Range": "bytes=0-99"}):
        response = client.get(url, headers={**catalog.owner, **headers})
        assert response.status_code in (200, 206)
        assert response.headers["Cache-Control"] == PRIVATE
        assert {"authorization", "cookie"} <= _vary(response)
        response.close()
    public = client.get(f"/courses/{catalog.published.course_id}/download", headers=catalog.owner)
    assert public.headers["Cache-Control"] == "public, no-cache" and "cookie" in _vary(public)
    public.close()


def test_errors_and_signed_in_json_are_not_kept(store_app: Flask, catalog: Catalog) -> None:
    client = store_app.test_client()
    missing = client.get("/api/v1/blobs/" + "0" * 64)
    assert missing.status_code == 404 and missing.headers["Cache-Control"] == PRIVATE
    assert {"authorization", "cookie"} <= _vary(missing)
    draft = client.get(f"/api/v1/courses/{catalog.draft.course_id}", headers=catalog.owner)
    assert draft.status_code == 200 and draft.headers["Cache-Control"] == PRIVATE
    anonymous = client.get("/api/v1/courses")
    assert "public" not in anonymous.headers.get("Cache-Control", "")
    assert {"authorization", "cookie"} <= _vary(anonymous)  # an owner's list holds its drafts


def test_s3_is_told_the_cache_control(s3_endpoint: str, s3_bucket: str) -> None:
    storage = S3Storage(s3_bucket, prefix=uuid.uuid4().hex, endpoint_url=s3_endpoint)
    sha256 = storage.store(io.BytesIO(b"draft bytes")).sha256
    plain = storage.presigned_url(sha256)
    assert plain is not None and "response-cache-control" not in plain
    url = storage.presigned_url(sha256, cache_control=PRIVATE)
    assert url is not None
    assert requests.get(url, timeout=10).headers["Cache-Control"] == PRIVATE


def test_blob_is_public_follows_the_catalogs_visibility(store_app: Flask, catalog: Catalog) -> None:
    from hub.media.services import blob_is_public

    with get_database(store_app).session() as db:
        assert blob_is_public(db, catalog.published.by_role["video-240p"])
        assert blob_is_public(db, catalog.shared)
        assert not blob_is_public(db, catalog.draft.by_role["video-240p"])
        assert not blob_is_public(db, "not a hash")
        orphan = Blob(sha256="1" * 64, size=1, media_type="text/plain")
        db.add(orphan)
        db.commit()
        assert not blob_is_public(db, orphan.sha256)
