"""Manifest signing and verification: what a school server accepts, and what it refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.sync import manifest as mf

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
SHA = "ab" * 32


def payload(version: int = 3, expires: datetime | None = None, **extra: Any) -> dict[str, Any]:
    school = {"id": 1, "name": "海淀实验小学", "kind": "famous", "region": "北京市", "county": "海淀区"}
    course: dict[str, Any] = {
        "id": 5,
        "version": 2,
        "revision": "0123456789abcdef",
        "title": "一元二次方程",
        "summary": "",
        "category": "curriculum",
        "subject": "math",
        "grades": [9],
        "edition": "人教版",
        "volume": "上册",
        "language": "zh",
        "license": "CC-BY-SA-4.0",
        "teacher": "王老师",
        "published_at": "2026-11-30T08:00:00Z",
        "school": school,
        "lessons": [
            {
                "id": 9,
                "position": 1,
                "title": "配方法",
                "summary": "",
                "unit": "第二十一章",
                "materials": [
                    {
                        "id": 11,
                        "kind": "video",
                        "title": "配方法",
                        "filename": "a.mp4",
                        "status": "ready",
                        "original": {"sha256": "cd" * 32, "size": 1000, "media_type": "video/mp4"},
                        "renditions": [{"profile": "video-360p", "sha256": SHA, "size": 10, "media_type": "video/mp4"}],
                    }
                ],
            }
        ],
    }
    data = {
        "format": mf.FORMAT,
        "version": version,
        "cursor": 17,
        "issued_at": "2026-12-01T19:00:00Z",
        "expires_at": (expires or NOW + timedelta(days=1)).isoformat(),
        "subscriber": {**school, "id": 2, "name": "山村小学", "kind": "rural"},
        "courses": [course],
    }
    data.update(extra)
    return data


@pytest.fixture
def key() -> mf.Ed25519PrivateKey:
    return mf.generate_private_key()


def signed(key: mf.Ed25519PrivateKey, data: dict[str, Any]) -> bytes:
    return mf.sign(mf.canonical_json(data), key)


def test_a_signed_manifest_verifies_into_data(key: mf.Ed25519PrivateKey) -> None:
    manifest = mf.verify(signed(key, payload()), key.public_key(), not_older_than=3, now=NOW)
    assert manifest.version == 3
    assert manifest.courses[0].title == "一元二次方程"
    assert set(manifest.files()) == {SHA}  # the original is described, not carried


def test_public_key_text_round_trips(key: mf.Ed25519PrivateKey) -> None:
    text = mf.public_key_text(key)
    assert len(text) == 44
    envelope = signed(key, payload())
    assert mf.verify(envelope, mf.load_public_key(text), not_older_than=None, now=NOW).version == 3
    with pytest.raises(ValueError, match="32 bytes"):
        mf.load_public_key("AAAA")


def test_unsigned_bytes_are_refused(key: mf.Ed25519PrivateKey) -> None:
    with pytest.raises(mf.ManifestRefused, match="not signed"):
        mf.verify(mf.canonical_json(payload()), key.public_key(), not_older_than=None, now=NOW)
    with pytest.raises(mf.ManifestRefused, match="not signed"):
        mf.verify(b"\x80garbage", key.public_key(), not_older_than=None, now=NOW)


def test_a_tampered_payload_is_refused(key: mf.Ed25519PrivateKey) -> None:
    envelope = signed(key, payload())
    altered = envelope.replace("一元二次方程".encode(), "一元三次方程".encode())
    with pytest.raises(mf.ManifestRefused, match="signature does not match"):
        mf.verify(altered, key.public_key(), not_older_than=None, now=NOW)
    # A header whose digest was changed to match the altered payload: the signature still says no.
    header, body = altered.split(b"\n", 1)
    fields = json.loads(header)
    fields["sha256"] = mf.hashlib.sha256(body).hexdigest()
    with pytest.raises(mf.ManifestRefused, match="signature does not match"):
        mf.verify(mf.canonical_json(fields) + b"\n" + body, key.public_key(), not_older_than=None, now=NOW)


def test_another_key_is_refused(key: mf.Ed25519PrivateKey) -> None:
    other = mf.generate_private_key()
    with pytest.raises(mf.ManifestRefused, match="signature does not match"):
        mf.verify(signed(other, payload()), key.public_key(), not_older_than=None, now=NOW)


def test_an_older_version_is_a_replay(key: mf.Ed25519PrivateKey) -> None:
    envelope = signed(key, payload(version=3))
    assert mf.verify(envelope, key.public_key(), not_older_than=3, now=NOW).version == 3
    with pytest.raises(mf.ManifestRefused, match="older than version 4"):
        mf.verify(envelope, key.public_key(), not_older_than=4, now=NOW)


def test_an_expired_manifest_is_refused(key: mf.Ed25519PrivateKey) -> None:
    envelope = signed(key, payload(expires=NOW - timedelta(seconds=1)))
    with pytest.raises(mf.ManifestRefused, match="expired"):
        mf.verify(envelope, key.public_key(), not_older_than=None, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"format": "oer-hub-manifest/2"},
        {"version": "3"},  # strings are not numbers, even signed ones
        {"unexpected": 1},
        {"courses": [{"id": 1}]},
    ],
)
def test_a_signed_but_invalid_payload_is_refused(key: mf.Ed25519PrivateKey, change: dict[str, Any]) -> None:
    data = payload()
    data.update(change)
    with pytest.raises(mf.ManifestRefused, match="not a valid manifest"):
        mf.verify(signed(key, data), key.public_key(), not_older_than=None, now=NOW)


def test_a_path_in_a_hash_field_is_refused(key: mf.Ed25519PrivateKey) -> None:
    data = payload()
    data["courses"][0]["lessons"][0]["materials"][0]["renditions"][0]["sha256"] = "../../etc/passwd"
    with pytest.raises(mf.ManifestRefused, match="not a valid manifest"):
        mf.verify(signed(key, data), key.public_key(), not_older_than=None, now=NOW)


def test_private_key_file_is_private_and_never_overwritten(tmp_path: Path, key: mf.Ed25519PrivateKey) -> None:
    path = tmp_path / "keys" / "signing.pem"
    mf.save_private_key(key, path)
    assert path.stat().st_mode & 0o077 == 0
    assert mf.public_key_text(mf.load_private_key(path)) == mf.public_key_text(key)
    with pytest.raises(FileExistsError):
        mf.save_private_key(mf.generate_private_key(), path)
    with pytest.raises(mf.HubError, match="hub keys generate"):
        mf.load_private_key(tmp_path / "absent.pem")
