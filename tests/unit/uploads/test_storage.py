"""Partial stores: offsets from what storage holds, provisional bytes, crash recovery, dedup."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.media.storage import LocalStorage, S3Storage
from hub.uploads.storage import (
    S3_MIN_PART,
    LocalPartialStore,
    PartialLost,
    S3PartialStore,
    Sha256State,
    _walk,
    part_size_for,
)
from tests.support.moto_server import create_bucket, s3_client

MiB = 1024 * 1024
FUTURE = datetime.now(UTC) + timedelta(days=1)


def _id() -> str:
    return secrets.token_urlsafe(24)


def _data(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def _chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_sha256_state_survives_saving() -> None:
    if not Sha256State.available():
        pytest.skip("libcrypto's SHA256 functions are not usable here")
    data = _data(3 * MiB + 17)
    state = Sha256State()
    state.update(data[:1000])
    saved = state.state()
    assert len(saved) == 112
    resumed = Sha256State(saved)
    resumed.update(data[1000:MiB])
    again = Sha256State(resumed.state())
    again.update(data[MiB:])
    assert again.hexdigest() == hashlib.sha256(data).hexdigest()
    assert again.hexdigest() == again.hexdigest()  # hexdigest does not consume the state
    with pytest.raises(ValueError, match="saved"):
        Sha256State(b"short")


def test_walk_prefers_s3_and_stops_at_gaps() -> None:
    p = 5
    assert _walk({}, {}, p) == (0, 1)
    assert _walk({1: 5, 2: 5}, {3: 2}, p) == (12, 3)
    assert _walk({1: 5, 2: 5}, {2: 5, 3: 5, 4: 1}, p) == (16, 3)  # local 2 is stale
    assert _walk({1: 5, 3: 5}, {}, p) == (5, 2)  # a gap ends the walk
    assert _walk({1: 5, 2: 3}, {3: 5}, p) == (8, 3)  # a short part is the last one
    assert part_size_for(10, 8 * MiB) == 8 * MiB
    assert part_size_for(200 * 1024 * MiB, 8 * MiB) == 21 * MiB  # 10,000 parts at most
    assert part_size_for(10, 1) == S3_MIN_PART


@pytest.fixture
def local(tmp_path: Path) -> LocalPartialStore:
    return LocalPartialStore(tmp_path / "uploads", LocalStorage(tmp_path / "storage"))


def test_local_append_commit_rollback(local: LocalPartialStore) -> None:
    upload_id = _id()
    state = local.create(upload_id, 3 * MiB)
    assert state == {"path": f"{upload_id}/data"}
    data = _data(3 * MiB)
    partial = local.open(upload_id, state)
    assert partial.offset == 0
    assert partial.append(_chunks(data[:MiB])) == MiB
    assert local.committed_offset(upload_id, state) == 0  # provisional until committed
    partial.commit(final=False)
    assert local.committed_offset(upload_id, state) == MiB

    partial.append(_chunks(data[MiB : 2 * MiB]))
    partial.rollback()
    assert partial.offset == MiB
    assert local.committed_offset(upload_id, state) == MiB

    # A process killed after writing provisional bytes: the next open undoes them.
    partial.append(_chunks(data[MiB : 2 * MiB]))
    reopened = local.open(upload_id, state)
    assert reopened.offset == MiB
    reopened.append(_chunks(data[MiB:]))
    reopened.commit(final=True)
    assert b"".join(reopened.read(0, 3 * MiB) or []) == data

    stored = reopened.finish(None)
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.created
    blob = local.storage.local_path(stored.sha256)
    assert blob is not None and blob.read_bytes() == data
    assert blob.stat().st_nlink == 2  # linked, not copied
    local.discard(upload_id, state)
    assert blob.stat().st_nlink == 1 and blob.read_bytes() == data
    with pytest.raises(PartialLost):
        local.open(upload_id, state)

    other = _id()
    other_state = local.create(other, len(data))
    again = local.open(other, other_state)
    again.append(_chunks(data))
    again.commit(final=True)
    assert not again.finish(stored.sha256).created  # the same bytes: one blob


def test_local_sweep_removes_only_unclaimed_leftovers(local: LocalPartialStore) -> None:
    claimed, orphan = _id(), _id()
    local.create(claimed, 10)
    local.create(orphan, 10)
    for upload_id in (claimed, orphan):
        local.lock_path(upload_id).parent.mkdir(exist_ok=True)
        local.lock_path(upload_id).touch()
    assert local.sweep_orphans(lambda i: i == claimed, FUTURE) == 1
    assert (local.root / claimed).exists() and not (local.root / orphan).exists()
    assert local.lock_path(claimed).exists() and not local.lock_path(orphan).exists()
    assert local.sweep_orphans(lambda i: False, datetime.now(UTC) - timedelta(days=1)) == 0  # too recent


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    return create_bucket(s3_endpoint)


@pytest.fixture
def s3(s3_endpoint: str, bucket: str, tmp_path: Path) -> S3PartialStore:
    storage = S3Storage(bucket, prefix=f"{_id()}/", endpoint_url=s3_endpoint, region="us-east-1")
    return S3PartialStore(storage, tmp_path / "uploads", S3_MIN_PART)


def _mpu_parts(store: S3PartialStore, state: dict[str, Any]) -> dict[int, int]:
    parts = store.list_parts(state)
    assert parts is not None
    return {n: size for n, (size, _) in parts.items()}


def test_s3_parts_are_sent_when_full(s3: S3PartialStore) -> None:
    data = _data(12 * MiB + 5, seed=1)
    upload_id = _id()
    state = s3.create(upload_id, len(data))
    assert state["part_size"] == 5 * MiB
    partial = s3.open(upload_id, state)
    partial.append(_chunks(data[: 3 * MiB]))
    partial.commit(final=False)
    assert _mpu_parts(s3, state) == {}  # 3 MiB wait on disk
    assert s3.committed_offset(upload_id, state) == 3 * MiB

    partial.append(_chunks(data[3 * MiB : 11 * MiB]))
    assert s3.committed_offset(upload_id, state) == 3 * MiB
    partial.commit(final=False)
    assert _mpu_parts(s3, state) == {1: 5 * MiB, 2: 5 * MiB}
    assert s3.local_parts(upload_id) == {3: MiB}
    assert s3.committed_offset(upload_id, state) == 11 * MiB
    assert partial.read(0, 10) is None  # in S3 parts: unreadable until complete
    assert b"".join(partial.read(10 * MiB, 11 * MiB) or []) == data[10 * MiB : 11 * MiB]

    # A server restart: a new process finds the offset from ListParts + the local tail.
    reopened = s3.open(upload_id, state)
    assert reopened.offset == 11 * MiB
    reopened.append(_chunks(data[11 * MiB :]))
    reopened.commit(final=True)
    assert _mpu_parts(s3, state) == {1: 5 * MiB, 2: 5 * MiB, 3: 2 * MiB + 5}
    stored = reopened.finish(None)  # no hash state given: read back and hashed
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
    assert b"".join(s3.storage.open_range(stored.sha256)) == data
    s3.discard(upload_id, state)
    assert s3.list_parts(state) is None
    client = s3.client
    assert "Contents" not in client.list_objects_v2(Bucket=s3.bucket, Prefix=f"{s3.storage.prefix}uploads/")


def test_s3_provisional_bytes_never_reach_s3(s3: S3PartialStore) -> None:
    data = _data(11 * MiB, seed=2)
    upload_id = _id()
    state = s3.create(upload_id, len(data))
    partial = s3.open(upload_id, state)
    partial.append(_chunks(data[: 7 * MiB]))
    partial.rollback()
    assert partial.offset == 0 and s3.local_parts(upload_id) == {}
    partial.append(_chunks(data[: 7 * MiB]))
    # Killed before the checks: the next open cuts the provisional bytes.
    reopened = s3.open(upload_id, state)
    assert reopened.offset == 0 and _mpu_parts(s3, state) == {}

    reopened.append(_chunks(data[: 6 * MiB]))
    reopened.commit(final=False)
    # Killed after S3 took part 1 but before its local file went: the file is stale.
    (s3.root / upload_id / "part-00001").write_bytes(data[: 5 * MiB])
    again = s3.open(upload_id, state)
    assert again.offset == 6 * MiB
    assert s3.local_parts(upload_id) == {2: MiB}


def test_s3_small_file_skips_multipart_and_dedups(s3: S3PartialStore) -> None:
    data = _data(MiB, seed=4)
    stored = []
    for _ in range(2):
        upload_id = _id()
        state = s3.create(upload_id, len(data))
        partial = s3.open(upload_id, state)
        partial.append(_chunks(data))
        partial.commit(final=True)
        assert _mpu_parts(s3, state) == {}
        stored.append(partial.finish(hashlib.sha256(data).hexdigest()))
        assert s3.list_parts(state) is None  # aborted: nothing left behind in S3
        s3.discard(upload_id, state)
    assert stored[0].created and not stored[1].created
    assert list(s3.storage.iter_hashes()) == [hashlib.sha256(data).hexdigest()]


def test_s3_finish_resumes_after_assembly(s3: S3PartialStore) -> None:
    data = _data(6 * MiB, seed=5)
    upload_id = _id()
    state = s3.create(upload_id, len(data))
    partial = s3.open(upload_id, state)
    partial.append(_chunks(data))
    partial.commit(final=True)
    # A finish killed between CompleteMultipartUpload and the copy to the content key.
    parts = s3.list_parts(state)
    assert parts is not None
    s3.client.complete_multipart_upload(
        Bucket=s3.bucket,
        Key=state["key"],
        UploadId=state["upload_id"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, (_, e) in sorted(parts.items())]},
    )
    assert s3.committed_offset(upload_id, state) == len(data)
    reopened = s3.open(upload_id, state)
    assert reopened.offset == len(data)
    stored = reopened.finish(hashlib.sha256(data).hexdigest())
    assert b"".join(s3.storage.open_range(stored.sha256)) == data


def test_s3_sweep_aborts_unclaimed_multipart_uploads(s3: S3PartialStore, s3_endpoint: str) -> None:
    claimed, orphan = _id(), _id()
    claimed_state = s3.create(claimed, 10)
    orphan_state = s3.create(orphan, 10)
    assert s3.sweep_orphans(lambda i: i == claimed, FUTURE) == 1
    assert s3.list_parts(orphan_state) is None
    assert s3.list_parts(claimed_state) == {}
    listed = s3_client(s3_endpoint).list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.storage.prefix)
    assert [u["Key"] for u in listed.get("Uploads", [])] == [claimed_state["key"]]
