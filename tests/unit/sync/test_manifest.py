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


def entry(**extra: Any) -> dict[str, Any]:
    """A course entry as the upstream builds it (its revision lives in the index, not in it)."""
    school = {"id": 1, "name": "海淀实验小学", "kind": "famous", "region": "北京市", "county": "海淀区"}
    course: dict[str, Any] = {
        "id": 5,
        "version": 2,
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
        "lessons": [lesson(9, 1, "配方法", SHA), lesson(10, 2, "公式法", "ef" * 32)],
    }
    course.update(extra)
    return course


def lesson(lid: int, position: int, title: str, sha: str) -> dict[str, Any]:
    return {
        "id": lid,
        "position": position,
        "title": title,
        "summary": "",
        "unit": "第二十一章",
        "materials": [
            {
                "id": lid + 100,
                "kind": "video",
                "title": title,
                "filename": "a.mp4",
                "status": "ready",
                "original": {"sha256": "cd" * 32, "size": 1000, "media_type": "video/mp4"},
                "renditions": [{"profile": "video-360p", "sha256": sha, "size": 10, "media_type": "video/mp4"}],
            }
        ],
    }


def line(course: dict[str, Any]) -> dict[str, Any]:
    revision = mf.hashlib.sha256(mf.canonical_json(course)).hexdigest()
    return {"id": course["id"], "version": course["version"], "revision": revision}


def payload(version: int = 3, expires: datetime | None = None, **extra: Any) -> dict[str, Any]:
    school = entry()["school"]
    data = {
        "format": mf.FORMAT,
        "version": version,
        "cursor": 17,
        "issued_at": "2026-12-01T19:00:00Z",
        "expires_at": (expires or NOW + timedelta(days=1)).isoformat(),
        "subscriber": {**school, "id": 2, "name": "山村小学", "kind": "rural"},
        "courses": [line(entry())],
    }
    data.update(extra)
    return data


@pytest.fixture
def key() -> mf.Ed25519PrivateKey:
    return mf.generate_private_key()


def signed(key: mf.Ed25519PrivateKey, data: dict[str, Any]) -> bytes:
    return mf.sign(mf.canonical_json(data), key)


def test_a_signed_manifest_verifies_into_data(key: mf.Ed25519PrivateKey) -> None:
    index = mf.verify(signed(key, payload()), key.public_key(), not_older_than=3, now=NOW)
    assert index.version == 3
    assert [(c.id, c.version) for c in index.courses] == [(5, 2)]
    body = mf.canonical_json(entry())
    course = mf.entry_from_bytes(body, index.courses[0])
    assert course.title == "一元二次方程"
    assert course.revision == index.courses[0].revision
    manifest = mf.Manifest(index=index, courses=[course], bodies={5: body})
    assert set(manifest.files()) == {SHA, "ef" * 32}  # the original is described, not carried


@pytest.mark.parametrize(
    ("status", "renditions", "carried"),
    [
        ("ready", [], True),  # each rendition was skipped as bigger than the original
        ("ready", ["poster"], True),  # a poster does not stand in for the video
        ("ready", ["video-240p", "poster"], False),
        ("processing", [], False),  # its renditions are still to come
        ("failed", ["poster"], False),
    ],
)
def test_an_original_is_carried_only_where_no_rendition_stands_in(
    status: str, renditions: list[str], carried: bool
) -> None:
    course = entry()
    material = course["lessons"][0]["materials"][0]
    material["status"] = status
    material["renditions"] = [
        {"profile": profile, "sha256": f"{n:064x}", "size": 10, "media_type": "video/mp4"}
        for n, profile in enumerate(renditions, start=1)
    ]
    files = mf.ManifestCourse.model_validate({**course, "revision": "0" * 64}).files()
    assert ("cd" * 32 in files) is carried
    assert {f"{n:064x}" for n in range(1, len(renditions) + 1)} <= set(files)


def test_an_entry_must_hash_to_its_line_of_the_index(key: mf.Ed25519PrivateKey) -> None:
    index = mf.verify(signed(key, payload()), key.public_key(), not_older_than=None, now=NOW)
    altered = mf.canonical_json(entry(title="一元三次方程"))
    with pytest.raises(mf.ManifestRefused, match="does not match the signed index"):
        mf.entry_from_bytes(altered, index.courses[0])
    # Signed, but for another course (or another version of it): the index says which is which.
    other = entry(id=6)
    with pytest.raises(mf.ManifestRefused, match="not the one the signed index lists"):
        mf.entry_from_bytes(mf.canonical_json(other), mf.IndexCourse(**{**line(other), "id": 5}))


def test_an_entry_that_hashes_right_is_still_validated(key: mf.Ed25519PrivateKey) -> None:
    bad = entry()
    bad["lessons"][0]["materials"][0]["renditions"][0]["sha256"] = "../../etc/passwd"
    with pytest.raises(mf.ManifestRefused, match="not valid"):
        mf.entry_from_bytes(mf.canonical_json(bad), mf.IndexCourse(**line(bad)))
    smuggled = {**entry(), "revision": "0" * 64}
    with pytest.raises(mf.ManifestRefused, match="not valid"):
        mf.entry_from_bytes(mf.canonical_json(smuggled), mf.IndexCourse(**line(smuggled)))


def test_a_patch_merged_into_the_entry_held_gives_the_new_entry() -> None:
    old = entry()
    new = entry(version=3, title="一元二次方程（新）")
    new["lessons"] = [lesson(11, 1, "引入", "aa" * 32), {**old["lessons"][1], "title": "公式法（二）"}]
    patch = {
        "fields": {k: v for k, v in new.items() if k != "lessons"},
        "lessons": [11, 10],
        "changed": new["lessons"],  # lesson 9 went; 11 is new; 10 changed
    }
    merged = mf.merge_patch(mf.canonical_json(old), patch)
    assert merged is not None
    assert mf.canonical_json(merged) == mf.canonical_json(new)
    # Unchanged lessons come from the entry held: a patch need not carry them.
    unchanged = {"fields": patch["fields"], "lessons": [9, 10], "changed": []}
    assert mf.merge_patch(mf.canonical_json(old), unchanged) == {**patch["fields"], "lessons": old["lessons"]}


@pytest.mark.parametrize(
    "patch",
    [
        None,
        [],
        {"fields": {}, "lessons": [12], "changed": []},  # a lesson neither held nor sent
        {"fields": {"lessons": []}, "lessons": [], "changed": []},
        {"fields": {}, "lessons": [[9]], "changed": []},
        {"fields": {}, "lessons": [9], "changed": [{"no": "id"}]},
        {"fields": {}, "lessons": "9", "changed": []},
        {"lessons": [9], "changed": []},
    ],
)
def test_a_patch_that_does_not_fit_gives_none(patch: Any) -> None:
    assert mf.merge_patch(mf.canonical_json(entry()), patch) is None
    assert mf.merge_patch(b"", {"fields": {}, "lessons": [], "changed": []}) is None


def test_a_document_carries_the_index_and_every_entry(key: mf.Ed25519PrivateKey) -> None:
    first, second = entry(), entry(id=6, title="二次函数")
    envelope = signed(key, payload(courses=[line(first), line(second)]))
    bodies = [mf.canonical_json(first), mf.canonical_json(second)]
    manifest, again = mf.verify_document(mf.document(envelope, bodies), key.public_key(), not_older_than=3, now=NOW)
    assert again == envelope
    assert [c.title for c in manifest.courses] == ["一元二次方程", "二次函数"]
    assert manifest.bodies == {5: bodies[0], 6: bodies[1]}
    for broken, why in [
        (mf.document(envelope, bodies[:1]), "holds 1 course entries; its signed index lists 2"),
        (mf.document(envelope, bodies[::-1]), "does not match the signed index"),
        (
            mf.document(envelope, [bodies[0], bodies[1].replace("二次函数".encode(), "三次函数".encode())]),
            "does not match",
        ),
        (envelope.split(b"\n")[1], "not signed"),
    ]:
        with pytest.raises(mf.ManifestRefused, match=why):
            mf.verify_document(broken, key.public_key(), not_older_than=None, now=NOW)


def test_an_index_listing_a_course_twice_is_refused(key: mf.Ed25519PrivateKey) -> None:
    twice = payload(courses=[line(entry()), line(entry())])
    with pytest.raises(mf.ManifestRefused, match="twice"):
        mf.verify(signed(key, twice), key.public_key(), not_older_than=None, now=NOW)


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
    altered = envelope.replace("山村小学".encode(), "山村中学".encode())
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
        {"format": "oer-hub-manifest/1"},  # the old format: entries inside, no longer read
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
    data["courses"][0]["revision"] = "../../etc/passwd"
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
