"""tus 1.0 through Flask's test client: the protocol's status codes, permissions and bad input."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.media.models import Blob
from hub.media.storage import Storage
from hub.uploads.models import Upload
from tests.unit.uploads.conftest import PATCH, TUS, MiB, School, Tus, metadata, mp4_bytes


def _upload_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _stored(app: Flask, sha256: str) -> bytes:
    storage: Storage = app.extensions["hub.storage"]
    return b"".join(storage.open_range(sha256))


def test_options_advertises_the_server(client: FlaskClient) -> None:
    response = client.options("/api/v1/uploads/")
    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Tus-Version"] == "1.0.0"
    extensions = set(response.headers["Tus-Extension"].split(","))
    assert extensions == {"creation", "creation-with-upload", "expiration", "checksum", "termination"}
    assert int(response.headers["Tus-Max-Size"]) >= 1024 * MiB
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) >= {"sha1", "sha256"}


def test_complete_upload(app: Flask, tus: Tus, db: Session) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 100_000  # the plain form's limit is not the chunks' limit
    data = mp4_bytes(3 * MiB + 123)
    created = tus.create(len(data))
    assert created.status_code == 201
    url = created.headers["Location"]
    assert url.startswith("/api/v1/uploads/") and len(_upload_id(url)) == 32
    assert "Upload-Expires" in created.headers

    head = tus.head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Metadata"] == metadata()

    for start in range(0, len(data), MiB):
        response = tus.patch(url, start, data[start : start + MiB])
        assert response.status_code == 204
        assert response.headers["Upload-Offset"] == str(min(start + MiB, len(data)))
        assert "Upload-Expires" in response.headers
    sha256 = hashlib.sha256(data).hexdigest()
    state = tus.client.get(url, headers=tus.auth).json
    assert state["status"] == "complete" and state["sha256"] == sha256 and state["offset"] == len(data)
    assert _stored(app, sha256) == data
    blob = db.get(Blob, sha256)
    assert blob is not None and blob.size == len(data) and blob.media_type == "video/mp4"
    assert tus.offset(url) == len(data)


def test_public_url_comes_from_configuration(app: Flask, tus: Tus, uploads: Any) -> None:
    from dataclasses import replace

    app.extensions["hub.uploads"] = replace(
        uploads, settings=replace(uploads.settings, public_url="https://hub.example.cn/sub")
    )
    created = tus.create(10, Host="evil.example", **{"X-Forwarded-Host": "evil.example"})
    assert created.headers["Location"].startswith("https://hub.example.cn/sub/api/v1/uploads/")


def test_creation_with_upload(app: Flask, tus: Tus) -> None:
    data = mp4_bytes(5000)
    created = tus.client.post(
        "/api/v1/uploads/",
        headers={**PATCH, **tus.auth, "Upload-Length": str(len(data)), "Upload-Metadata": metadata()},
        data=data[:3000],
    )
    assert created.status_code == 201
    assert created.headers["Upload-Offset"] == "3000"
    url = created.headers["Location"]
    assert tus.patch(url, 3000, data[3000:]).status_code == 204
    assert _stored(app, hashlib.sha256(data).hexdigest()) == data


def test_checksums(app: Flask, tus: Tus) -> None:
    data = mp4_bytes(2 * MiB)
    url = tus.new(len(data))
    first, second = data[:MiB], data[MiB:]
    good = tus.patch(url, 0, first, Upload_Checksum=f"sha1 {_b64(hashlib.sha1(first).digest())}")  # noqa: S324
    assert good.status_code == 204
    wrong = tus.patch(url, MiB, second, Upload_Checksum=f"sha256 {_b64(hashlib.sha256(b'other').digest())}")
    assert wrong.status_code == 460
    assert wrong.status == "460 Checksum Mismatch"
    assert wrong.json["error"]["code"] == "checksum_mismatch"
    assert tus.offset(url) == MiB  # the chunk was discarded
    unknown = tus.patch(url, MiB, second, Upload_Checksum=f"md5 {_b64(hashlib.md5(second).digest())}")  # noqa: S324
    assert unknown.status_code == 400
    assert "sha1, sha256" in unknown.json["error"]["message"]
    assert tus.patch(url, MiB, second, Upload_Checksum="sha256 !!!").status_code == 400
    assert tus.patch(url, MiB, second, Upload_Checksum=f"sha256 {_b64(b'short')}").status_code == 400
    ok = tus.patch(url, MiB, second, Upload_Checksum=f"sha256 {_b64(hashlib.sha256(second).digest())}")
    assert ok.status_code == 204
    assert _stored(app, hashlib.sha256(data).hexdigest()) == data


def test_a_declared_sha256_replaces_chunk_checksums(app: Flask, tus: Tus, db: Session) -> None:
    data = mp4_bytes(3 * MiB + 5, seed=31)
    sha256 = hashlib.sha256(data).hexdigest()
    # Declared in upper case: hex digits are case-insensitive.
    url = tus.upload(data, meta=metadata(sha256=sha256.upper()))
    state = tus.client.get(url, headers=tus.auth).json
    assert (state["status"], state["sha256"]) == ("complete", sha256)
    assert _stored(app, sha256) == data

    # Chunk checksums still work beside it (a client may send both).
    again = tus.new(len(data), meta=metadata(sha256=sha256))
    for start in range(0, len(data), 2 * MiB):
        chunk = data[start : start + 2 * MiB]
        sent = tus.patch(again, start, chunk, Upload_Checksum=f"sha256 {_b64(hashlib.sha256(chunk).digest())}")
        assert sent.status_code == 204
    assert tus.client.get(again, headers=tus.auth).json["sha256"] == sha256


@pytest.mark.parametrize("hash_state", [True, False], ids=["running-hash", "hashed-at-the-end"])
def test_a_file_that_is_not_the_declared_sha256_is_discarded(
    app: Flask, tus: Tus, db: Session, uploads: Any, hash_state: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.uploads.storage import Sha256State

    if not hash_state:  # no saved hash state: partial.finish() hashes the file and compares
        monkeypatch.setattr(Sha256State, "available", staticmethod(lambda: False))
    stored_before = mp4_bytes(MiB, seed=32)
    tus.upload(stored_before)
    data = mp4_bytes(2 * MiB + 7, seed=33)
    claimed = hashlib.sha256(b"another file").hexdigest()
    url = tus.new(len(data), meta=metadata(sha256=claimed))
    row = db.get(Upload, _upload_id(url))
    assert row is not None
    state = dict(row.backend_state)
    assert tus.patch(url, 0, data[:MiB]).status_code == 204
    assert tus.patch(url, MiB, data[MiB : 2 * MiB]).status_code == 204  # nothing to compare yet

    last = tus.patch(url, 2 * MiB, data[2 * MiB :])
    assert last.status_code == 422
    error = last.json["error"]
    assert error["code"] == "sha256_mismatch"
    assert hashlib.sha256(data).hexdigest() in error["message"] and claimed in error["message"]
    assert "discarded" in error["message"]
    # Nothing stored: no blob row, no blob, no bytes of the upload; what was stored before is intact.
    assert db.get(Blob, hashlib.sha256(data).hexdigest()) is None and db.get(Blob, claimed) is None
    storage: Storage = app.extensions["hub.storage"]
    assert not storage.exists(hashlib.sha256(data).hexdigest())
    assert _stored(app, hashlib.sha256(stored_before).hexdigest()) == stored_before
    from hub.uploads.storage import PartialLost

    with pytest.raises(PartialLost):
        uploads.partials.open(_upload_id(url), state)
    # The URL says what happened, to a resuming client as to a person.
    gone = tus.client.get(url, headers=tus.auth)
    assert gone.status_code == 410 and "did not match the sha256" in gone.json["error"]["message"]
    assert tus.head(url).status_code == 410
    assert tus.patch(url, 2 * MiB, data[2 * MiB :]).status_code == 410
    assert tus.client.delete(url, headers={**TUS, **tus.auth}).status_code == 410


def test_creation_with_the_whole_file_and_a_wrong_sha256(app: Flask, tus: Tus, db: Session) -> None:
    data = mp4_bytes(5000, seed=34)
    created = tus.client.post(
        "/api/v1/uploads/",
        headers={
            **PATCH,
            **tus.auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(sha256="0" * 64),
        },
        data=data,
    )
    assert created.status_code == 422 and created.json["error"]["code"] == "sha256_mismatch"
    assert db.scalar(select(func.count()).select_from(Blob)) == 0


def test_protocol_status_codes(tus: Tus, client: FlaskClient, school: School) -> None:
    data = mp4_bytes(MiB)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[:1000]).status_code == 204

    # 409: the client's offset is not the server's; nothing is appended.
    conflict = tus.patch(url, 0, data[:1000])
    assert conflict.status_code == 409
    assert conflict.headers["Upload-Offset"] == "1000"
    assert tus.patch(url, 5000, data[5000:6000]).status_code == 409
    assert tus.offset(url) == 1000

    # 412: a protocol version we do not speak (or none), with the one we do.
    for version in ("0.2.2", None):
        headers = {**PATCH, **tus.auth, "Upload-Offset": "1000"}
        if version is None:
            del headers["Tus-Resumable"]
        else:
            headers["Tus-Resumable"] = version
        refused = client.patch(url, headers=headers, data=data[1000:2000])
        assert refused.status_code == 412
        assert refused.headers["Tus-Version"] == "1.0.0"
    assert tus.create(10, **{"Tus-Resumable": "2.0.0"}).status_code == 412

    # 413: more than the server takes, more than the upload declared.
    too_big = tus.create(10**15)
    assert too_big.status_code == 413
    assert "Tus-Max-Size" in too_big.headers
    past_end = tus.patch(url, 1000, data[1000:] + b"extra")
    assert past_end.status_code == 413
    assert tus.offset(url) == 1000

    # 415: a PATCH must be application/offset+octet-stream.
    wrong_type = client.patch(
        url, headers={**TUS, **tus.auth, "Upload-Offset": "1000", "Content-Type": "application/json"}, data=b"{}"
    )
    assert wrong_type.status_code == 415
    assert tus.offset(url) == 1000

    # 404 after termination.
    assert client.delete(url, headers={**TUS, **tus.auth}).status_code == 204
    assert tus.head(url).status_code == 404
    assert tus.patch(url, 1000, data[1000:2000]).status_code == 404
    assert client.delete(url, headers={**TUS, **tus.auth}).status_code == 404

    # 401 without a token, 403 for a teacher (uploaders and admins upload).
    assert client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"}).status_code == 401
    teacher = Tus(client, school.teacher).create(10)
    assert teacher.status_code == 403


def test_another_school_sees_nothing(tus: Tus, school: School, client: FlaskClient) -> None:
    data = mp4_bytes(2000)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[:1000]).status_code == 204
    assert tus.head(url, auth=school.other).status_code == 404
    assert tus.patch(url, 1000, data[1000:], auth=school.other).status_code == 404
    assert client.delete(url, headers={**TUS, **school.other}).status_code == 404
    assert client.get(url, headers=school.other).status_code == 404
    assert tus.offset(url) == 1000  # untouched


def test_expired_upload_is_gone(tus: Tus, db: Session) -> None:
    url = tus.new(2000)
    assert tus.patch(url, 0, mp4_bytes(1000)).status_code == 204
    db.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert tus.head(url).status_code == 410
    gone = tus.patch(url, 1000, b"x" * 1000)
    assert gone.status_code == 410
    assert "expired" in gone.json["error"]["message"]


def test_duplicate_upload_is_one_blob(app: Flask, tus: Tus, db: Session) -> None:
    data = mp4_bytes(2 * MiB + 7, seed=3)
    first = tus.upload(data)
    second = tus.upload(data, chunk=MiB // 2)
    sha256 = hashlib.sha256(data).hexdigest()
    assert tus.client.get(first, headers=tus.auth).json["sha256"] == sha256
    assert tus.client.get(second, headers=tus.auth).json["sha256"] == sha256
    assert db.scalar(select(func.count()).select_from(Blob)) == 1
    storage: Storage = app.extensions["hub.storage"]
    assert list(storage.iter_hashes()) == [sha256]


BAD_NUMBERS = ["-1", "abc", "1.5", "", " ", "+5", "0x10", "1e3", "99999999999999999999"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_bad_upload_length(tus: Tus, value: str) -> None:
    response = tus.create(0, **{"Upload-Length": value})
    assert response.status_code in (400, 413), value
    assert response.json["error"]["message"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_bad_upload_offset(tus: Tus, value: str) -> None:
    url = tus.new(100)
    assert tus.patch(url, 0, b"\x00\x00\x00\x18ftypisom" + b"x" * 10).status_code == 204
    response = tus.patch(url, 0, b"y" * 10, Upload_Offset=value)
    assert response.status_code in (400, 409), value
    assert tus.offset(url) == 22


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("filename !!!notbase64", "not base64"),
        ("filename " + _b64(b"a.mp4") + ",draft", None),  # tus allows a key without a value
        ("filename", "empty"),
        ("filename " + _b64(b"a\r\nSet-Cookie: x=1"), "control characters"),
        ("filename " + _b64(b"a\x00b.mp4"), "control characters"),
        ("filename " + _b64("‮4pm.exe".encode()), "control characters"),
        ("filename " + _b64(b"../../etc/passwd"), "/"),
        ("filename " + _b64(b"C:\\x\\y.mp4"), "/"),
        ("filename " + _b64(b".."), "empty"),
        ("filename " + _b64(b"\xff\xfe"), "UTF-8"),
        ("filename " + _b64(b"a.mp4") + ",filename " + _b64(b"b.mp4"), "twice"),
        ("file\x7fname " + _b64(b"a.mp4"), "printable"),
        ("filename a b c", "printable"),
        ("filetype " + _b64(b"video/mp4\r\nX: y"), "media type"),
        ("filetype " + _b64(b"application/zip"), "cannot become"),
        ("a " + _b64(b"x") + ",,b " + _b64(b"y"), "empty pair"),
        ("filename " + _b64(b"x" * 5000), "longer"),
        ("sha256 " + _b64(b"abc"), "64 hexadecimal"),
        ("sha256 " + _b64(b"g" * 64), "64 hexadecimal"),
    ],
)
def test_bad_metadata(tus: Tus, db: Session, header: str, reason: str | None) -> None:
    response = tus.create(100, meta=header)
    if reason is None:
        assert response.status_code == 201
        return
    assert response.status_code == 400, header
    assert reason in response.json["error"]["message"]
    assert db.scalar(select(func.count()).select_from(Upload)) == 0


def test_bad_patches_lose_no_stored_byte(app: Flask, tus: Tus) -> None:
    data = mp4_bytes(3 * MiB, seed=9)
    url = tus.new(len(data))
    assert tus.patch(url, 0, data[:MiB]).status_code == 204
    refused = [
        tus.patch(url, MiB, b""),  # empty
        tus.patch(url, MiB, data[MiB:] + b"!"),  # past the declared length
        tus.patch(url, MiB, data[MiB : 2 * MiB], Upload_Checksum=f"sha1 {_b64(hashlib.sha1(b'').digest())}"),  # noqa: S324
        tus.patch(url, 7, data[7:100]),  # stale offset
        tus.patch(url, MiB, data[MiB : 2 * MiB], Upload_Offset="-5"),
        tus.patch(url, MiB, data[MiB : 2 * MiB], Content_Type="text/plain"),
    ]
    assert [r.status_code for r in refused] == [400, 413, 460, 409, 400, 415]
    assert "no bytes" in refused[0].json["error"]["message"]
    assert tus.offset(url) == MiB
    assert tus.patch(url, MiB, data[MiB:]).status_code == 204
    assert _stored(app, hashlib.sha256(data).hexdigest()) == data

    again = tus.patch(url, len(data), b"more")
    assert again.status_code == 403
    assert again.json["error"]["code"] == "upload_complete"
    assert tus.patch(url, 0, data[:10]).status_code == 403
    assert _stored(app, hashlib.sha256(data).hexdigest()) == data


def test_empty_file_is_refused(tus: Tus) -> None:
    response = tus.create(0)
    assert response.status_code == 400
    assert "empty" in response.json["error"]["message"]


def test_content_must_match_its_declared_type(app: Flask, tus: Tus) -> None:
    pdf = b"%PDF-1.7\n" + b"x" * 10_000
    url = tus.new(len(pdf), meta=metadata("讲义.mp4", "video/mp4"))
    mismatch = tus.patch(url, 0, pdf)
    assert mismatch.status_code == 400
    assert mismatch.json["error"]["code"] == "content_mismatch"
    assert "looks like pdf" in mismatch.json["error"]["message"]
    assert tus.offset(url) == 0

    # Small first chunks: checked once the first 4 KiB are in, whichever PATCH brings them.
    url = tus.new(len(pdf), meta=metadata("讲义.pdf", "application/pdf"))
    for start in range(0, 6000, 1000):
        assert tus.patch(url, start, pdf[start : start + 1000]).status_code == 204
    url = tus.new(10_000, meta=metadata("noise.png", "image/png"))
    assert tus.patch(url, 0, b"\x00" * 3000).status_code == 204
    refused = tus.patch(url, 3000, b"\x00" * 3000)
    assert refused.status_code == 400 and "not a video, audio, image or PDF" in refused.json["error"]["message"]
    assert tus.offset(url) == 3000

    # No declared type: nothing to contradict (the media pipeline judges the content).
    url = tus.upload(b"\x01" * 5000, meta=metadata("data.bin", ""))
    assert tus.client.get(url, headers=tus.auth).json["status"] == "complete"


def test_openapi_lists_the_upload_endpoints(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert set(paths["/api/v1/uploads/"]) == {"options", "post"}
    assert set(paths["/api/v1/uploads/{upload_id}"]) == {"head", "get", "patch", "delete"}
