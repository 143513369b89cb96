"""One contract, two backends: every test here runs against LocalStorage and S3Storage.

The S3 backend talks real HTTP to moto's server on a loopback port (the session
fixture `s3_endpoint` in tests/conftest.py), a fresh bucket per test. Backend-specific
behaviour (presigned URLs, local temp files, multipart) is asserted with the backend's
name, still in this one suite.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hub.media.storage import (
    BlobNotFound,
    InvalidKey,
    LocalStorage,
    S3Storage,
    Storage,
    StoredBlob,
    key_for,
)
from tests.support.moto_server import create_bucket, delete_bucket, s3_client

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "blobs")
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = create_bucket(endpoint)
    try:
        yield S3Storage(
            bucket,
            prefix="blobs",
            endpoint_url=endpoint,
            region="us-east-1",
            # Small enough that the 12 MiB test goes through multipart (S3's minimum
            # part is 5 MiB).
            multipart_threshold=5 * MiB,
            tmp_dir=tmp_path / "spool",
        )
    finally:
        delete_bucket(endpoint, bucket)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(storage: Storage, digest: str, **kwargs: Any) -> bytes:
    return b"".join(storage.open_range(digest, **kwargs))


def temp_dir(storage: Storage) -> Path:
    tmp = getattr(storage, "tmp_dir", None)
    assert isinstance(tmp, Path)
    return tmp


class FailingReader(io.RawIOBase):
    """Gives `good` bytes, then fails as a dropped upload connection would."""

    def __init__(self, good: int) -> None:
        self.remaining = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            raise ConnectionResetError("client went away")
        n = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= n
        return b"x" * n


class UnseekableReader:
    """A pipe-like source: read() only, no seek, no tell, no len."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._buf.read(size)


def test_is_a_storage(storage: Storage) -> None:
    assert isinstance(storage, Storage)


def test_store_and_read_back(storage: Storage) -> None:
    data = b"hello, \xe4\xb8\x96\xe7\x95\x8c\n" * 1000

    blob = storage.store(io.BytesIO(data))

    assert blob == StoredBlob(sha256=sha(data), size=len(data), created=True)
    assert storage.exists(blob.sha256)
    assert storage.size(blob.sha256) == len(data)
    assert read_all(storage, blob.sha256) == data


def test_store_reads_from_a_stream_without_seeking(storage: Storage) -> None:
    data = os.urandom(3 * MiB + 17)  # several 1 MiB read steps and a short tail

    blob = storage.store(UnseekableReader(data))  # type: ignore[arg-type]

    assert (blob.sha256, blob.size) == (sha(data), len(data))
    assert read_all(storage, blob.sha256) == data


def test_empty_blob(storage: Storage) -> None:
    blob = storage.store(io.BytesIO(b""))

    assert (blob.sha256, blob.size) == (sha(b""), 0)
    assert storage.size(blob.sha256) == 0
    assert list(storage.open_range(blob.sha256)) == []


def test_store_dedupes(storage: Storage) -> None:
    data = b"same bytes twice"

    first = storage.store(io.BytesIO(data))
    second = storage.store(io.BytesIO(data))

    assert first.created is True
    assert second == StoredBlob(sha256=first.sha256, size=len(data), created=False)
    assert list(storage.iter_hashes()) == [first.sha256]


def test_concurrent_stores_of_the_same_bytes(storage: Storage) -> None:
    data = os.urandom(256 * 1024)
    results: list[StoredBlob] = []
    errors: list[BaseException] = []

    def store() -> None:
        try:
            results.append(storage.store(io.BytesIO(data)))
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert {(r.sha256, r.size) for r in results} == {(sha(data), len(data))}
    assert any(r.created for r in results)
    assert list(storage.iter_hashes()) == [sha(data)]
    assert read_all(storage, sha(data)) == data


def test_store_file(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    source = tmp_path / "rendition.mp4"
    source.write_bytes(data)

    blob = storage.store_file(source)

    assert blob == StoredBlob(sha256=sha(data), size=len(data), created=True)
    assert source.read_bytes() == data  # the worker's file is left alone
    assert storage.store_file(source).created is False
    assert read_all(storage, blob.sha256) == data


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(0, None, slice(0, None), id="whole"),
        pytest.param(0, 999, slice(0, 1000), id="whole-explicit"),
        pytest.param(100, 199, slice(100, 200), id="middle"),
        pytest.param(0, 0, slice(0, 1), id="first-byte"),
        pytest.param(999, 999, slice(999, 1000), id="last-byte"),
        pytest.param(990, None, slice(990, None), id="open-ended"),
        # Like an HTTP range: an end past the last byte is clamped, not an error.
        pytest.param(500, 10_000, slice(500, None), id="end-beyond-size-clamps"),
        # Resuming a finished download reads nothing rather than failing.
        pytest.param(1000, None, slice(1000, None), id="start-at-size-is-empty"),
    ],
)
def test_open_range(storage: Storage, start: int, end: int | None, expected: slice) -> None:
    data = os.urandom(1000)
    digest = storage.store(io.BytesIO(data)).sha256

    assert read_all(storage, digest, start=start, end=end) == data[expected]


def test_open_range_yields_bounded_chunks(storage: Storage) -> None:
    data = os.urandom(10_000)
    digest = storage.store(io.BytesIO(data)).sha256

    chunks = list(storage.open_range(digest, 1, 8_000, chunk_size=1024))

    assert b"".join(chunks) == data[1:8001]
    assert len(chunks) > 1
    assert all(0 < len(chunk) <= 1024 for chunk in chunks)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(1001, None, id="start-beyond-size"),
        pytest.param(5000, 6000, id="range-beyond-size"),
        pytest.param(-1, None, id="negative-start"),
        pytest.param(10, 9, id="end-before-start"),
    ],
)
def test_open_range_rejects_invalid_ranges(storage: Storage, start: int, end: int | None) -> None:
    digest = storage.store(io.BytesIO(os.urandom(1000))).sha256

    # Raised by the call itself, before any byte is sent to a client.
    with pytest.raises(ValueError):
        storage.open_range(digest, start, end)


def test_missing_blob(storage: Storage, tmp_path: Path) -> None:
    missing = sha(b"never stored")

    assert storage.exists(missing) is False
    with pytest.raises(BlobNotFound):
        storage.size(missing)
    with pytest.raises(BlobNotFound):
        storage.open_range(missing)
    with pytest.raises(BlobNotFound):
        storage.fetch_to(missing, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    assert list(tmp_path.glob(".out.bin.*")) == []


def test_large_blob_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "large.bin"
    digest = hashlib.sha256()
    with source.open("wb") as f:
        for _ in range(12):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            f.write(chunk)

    with source.open("rb") as f:
        blob = storage.store(f)

    assert (blob.sha256, blob.size) == (digest.hexdigest(), 12 * MiB)
    streamed = hashlib.sha256()
    for chunk in storage.open_range(blob.sha256, chunk_size=MiB):
        streamed.update(chunk)
    assert streamed.hexdigest() == blob.sha256
    fetched = tmp_path / "fetched.bin"
    storage.fetch_to(blob.sha256, fetched)
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == blob.sha256

    if isinstance(storage, S3Storage):
        # A multipart upload's ETag is "<md5 of part md5s>-<part count>".
        head = s3_client(storage.client.meta.endpoint_url).head_object(
            Bucket=storage.bucket, Key=storage.prefix + key_for(blob.sha256)
        )
        etag = head["ETag"].strip('"')
        assert etag.endswith("-3")  # 12 MiB in 5 MiB parts


def test_fetch_to(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    digest = storage.store(io.BytesIO(data)).sha256
    dest = tmp_path / "work" / "job-1" / "input.mp4"

    storage.fetch_to(digest, dest)

    assert dest.read_bytes() == data
    dest.write_bytes(b"stale")
    storage.fetch_to(digest, dest)  # replaces what is there
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["input.mp4"]


def test_delete_is_idempotent(storage: Storage) -> None:
    keep = storage.store(io.BytesIO(b"keep")).sha256
    gone = storage.store(io.BytesIO(b"gone")).sha256

    storage.delete(gone)
    storage.delete(gone)
    storage.delete(sha(b"never stored"))

    assert storage.exists(gone) is False
    assert storage.exists(keep) is True
    assert list(storage.iter_hashes()) == [keep]
    assert storage.store(io.BytesIO(b"gone")).created is True  # can come back


def test_iter_hashes(storage: Storage) -> None:
    assert list(storage.iter_hashes()) == []
    stored = {storage.store(io.BytesIO(f"blob {i}".encode())).sha256 for i in range(5)}

    assert set(storage.iter_hashes()) == stored
    assert len(list(storage.iter_hashes())) == 5


INVALID_KEYS = [
    pytest.param("../etc/passwd", id="traversal"),
    pytest.param("../" * 20 + "etc/passwd" + "0" * 21, id="traversal-64-chars"),
    pytest.param(sha(b"x").upper(), id="uppercase"),
    pytest.param(sha(b"x")[:63], id="63-chars"),
    pytest.param(sha(b"x") + "0", id="65-chars"),
    pytest.param(sha(b"x")[:62] + "/a", id="slash"),
    pytest.param(sha(b"x")[:63] + "\n", id="trailing-newline"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("bad", INVALID_KEYS)
def test_invalid_keys_are_refused_everywhere(storage: Storage, bad: str, tmp_path: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: storage.exists(bad),
        lambda: storage.size(bad),
        lambda: storage.open_range(bad),
        lambda: storage.fetch_to(bad, tmp_path / "out"),
        lambda: storage.local_path(bad),
        lambda: storage.presigned_url(bad),
        lambda: storage.delete(bad),
        lambda: key_for(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidKey):
            call()
    assert issubclass(InvalidKey, ValueError)


def test_local_path(storage: Storage) -> None:
    data = b"served by the web server"
    digest = storage.store(io.BytesIO(data)).sha256

    path = storage.local_path(digest)

    if isinstance(storage, LocalStorage):
        assert path is not None
        assert path.read_bytes() == data
        assert path.relative_to(storage.root).as_posix() == key_for(digest)
        with pytest.raises(BlobNotFound):
            storage.local_path(sha(b"never stored"))
    else:
        assert path is None


@pytest.mark.parametrize("filename", [None, "数学 第1课：分数.mp4"])
def test_presigned_url(storage: Storage, filename: str | None) -> None:
    data = os.urandom(5000)
    digest = storage.store(io.BytesIO(data)).sha256

    url = storage.presigned_url(digest, filename=filename, expires=600)

    if isinstance(storage, LocalStorage):
        assert url is None  # the app serves local blobs itself
        return
    assert url is not None
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == data
    assert "X-Amz-Signature=" in url  # SigV4: what every region and MinIO accept
    ranged = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206
    assert ranged.content == data[10:20]
    disposition = response.headers.get("Content-Disposition")
    if filename is None:
        assert disposition is None
    else:
        assert disposition is not None
        assert disposition.startswith("attachment; ")
        # The ASCII stand-in for old clients keeps what survives folding to ASCII.
        assert 'filename="1.mp4"' in disposition
        assert (
            "filename*=UTF-8''%E6%95%B0%E5%AD%A6%20%E7%AC%AC1%E8%AF%BE%EF%BC%9A%E5%88%86%E6%95%B0.mp4"
        ) in disposition


def test_presigned_url_refuses_bad_lifetimes(storage: Storage) -> None:
    digest = storage.store(io.BytesIO(b"x")).sha256
    if isinstance(storage, LocalStorage):
        pytest.skip("local storage hands out no URLs")
    with pytest.raises(ValueError):
        storage.presigned_url(digest, expires=0)
    with pytest.raises(ValueError):
        storage.presigned_url(digest, expires=8 * 24 * 3600)


def test_failed_store_leaves_nothing_behind(storage: Storage) -> None:
    with pytest.raises(ConnectionResetError):
        storage.store(FailingReader(good=2 * MiB + 5))  # type: ignore[arg-type]

    assert list(storage.iter_hashes()) == []
    tmp = temp_dir(storage)
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_local_blobs_stay_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    storage = LocalStorage(root)
    digest = sha(b"secret")
    (outside / digest[2:4]).mkdir()
    (outside / digest[2:4] / digest).write_bytes(b"secret")
    root.mkdir()
    # A shard directory that is a symlink out of the root must not be followed.
    (root / digest[:2]).symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidKey):
        storage.exists(digest)
    with pytest.raises(InvalidKey):
        storage.open_range(digest)
    assert list(storage.iter_hashes()) == []


def test_local_blob_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    digest = sha(b"secret")
    place = storage.root / digest[:2] / digest[2:4] / digest
    place.parent.mkdir(parents=True)
    place.symlink_to(secret)

    for read in (storage.exists, storage.size, storage.open_range, storage.local_path):
        with pytest.raises(InvalidKey):
            read(digest)


def test_local_shard_checked_once_still_refuses_a_new_symlinked_shard(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    kept = storage.store(io.BytesIO(b"kept")).sha256
    assert storage.exists(kept)  # its shard directories are now known to be real
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    digest = sha(b"other")
    assert digest[:2] != kept[:2]  # another first-level shard, not yet seen
    (storage.root / digest[:2]).symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidKey):
        storage.exists(digest)
    assert storage.exists(kept)


def test_local_iter_hashes_ignores_strays(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    digest = storage.store(io.BytesIO(b"real")).sha256
    (storage.root / "tmp" / "store-leftover").write_bytes(b"")
    (storage.root / "README").write_text("not a blob")
    misplaced = sha(b"misplaced")
    (storage.root / "00" / "00").mkdir(parents=True)
    (storage.root / "00" / "00" / misplaced).write_bytes(b"misplaced")

    assert list(storage.iter_hashes()) == [digest]


# -- batches: many blobs behind one durability barrier ------------------------------


def test_batch_stores_every_blob_at_exit(storage: Storage) -> None:
    before = storage.store(io.BytesIO(b"stored before")).sha256
    blobs = [os.urandom(1000 + i) for i in range(5)]

    with storage.batch() as batch:
        added = [batch.add(io.BytesIO(data)) for data in blobs]
        again = batch.add(io.BytesIO(blobs[0]))
        old = batch.add(io.BytesIO(b"stored before"))

    assert [(a.sha256, a.size, a.created) for a in added] == [(sha(d), len(d), True) for d in blobs]
    assert again == StoredBlob(sha256=sha(blobs[0]), size=len(blobs[0]), created=False)
    assert old.created is False
    assert sorted(storage.iter_hashes()) == sorted([before, *map(sha, blobs)])
    assert [read_all(storage, sha(d)) for d in blobs] == blobs
    path = storage.local_path(sha(blobs[0]))
    if path is not None:  # readable by a reverse proxy running as another user, as store() makes them
        assert path.stat().st_mode & 0o777 == 0o644
    tmp = temp_dir(storage)
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_batch_discard_keeps_only_what_it_created(storage: Storage) -> None:
    kept_before = storage.store(io.BytesIO(b"someone else's")).sha256

    with storage.batch() as batch:
        wrong = batch.add(io.BytesIO(b"bytes that failed a check")).sha256
        right = batch.add(io.BytesIO(b"good bytes")).sha256
        batch.add(io.BytesIO(b"someone else's"))
        batch.discard(wrong)
        batch.discard(kept_before)  # not created by this batch: stays

    assert sorted(storage.iter_hashes()) == sorted([kept_before, right])


def test_batch_that_raises_keeps_nothing_it_created(storage: Storage) -> None:
    kept_before = storage.store(io.BytesIO(b"kept")).sha256

    with pytest.raises(RuntimeError), storage.batch() as batch:
        batch.add(io.BytesIO(b"new"))
        batch.add(io.BytesIO(b"kept"))
        raise RuntimeError("the caller failed")

    assert list(storage.iter_hashes()) == [kept_before]
    tmp = temp_dir(storage)
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_batch_accepts_adds_from_many_threads(storage: Storage) -> None:
    blobs = [os.urandom(2000 + i) for i in range(16)]
    results: list[StoredBlob] = []
    with storage.batch() as batch:
        threads = [threading.Thread(target=lambda d=data: results.append(batch.add(io.BytesIO(d)))) for data in blobs]
        threads += [threading.Thread(target=lambda: results.append(batch.add(io.BytesIO(blobs[0]))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sum(r.created for r in results) == len(blobs)
    assert sorted(storage.iter_hashes()) == sorted(map(sha, blobs))


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_local_batch_is_durable_before_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool) -> None:
    # A crash must never leave a name that claims bytes which were not on disk yet:
    # every barrier over the file data comes before any rename into place.
    from hub.media.storage import local

    storage = LocalStorage(tmp_path / "blobs")
    blobs = [os.urandom(500 + i) for i in range(4)]
    barriers: list[int] = []  # blobs visible at each data or name barrier

    def visible() -> int:
        return sum(storage.exists(sha(d)) for d in blobs)

    real_syncfs, real_fsync_file, real_fsync_dir = local._syncfs, local._fsync_file, local.fsync_dir
    if syncfs:
        monkeypatch.setattr(local, "_syncfs", lambda path: barriers.append(visible()) or real_syncfs(path))
    else:
        monkeypatch.setattr(local, "_syncfs", lambda path: False)
        monkeypatch.setattr(local, "_fsync_file", lambda path: barriers.append(visible()) or real_fsync_file(path))
        monkeypatch.setattr(local, "fsync_dir", lambda path: barriers.append(visible()) or real_fsync_dir(path))

    with storage.batch() as batch:
        for data in blobs:
            batch.add(io.BytesIO(data))
        assert visible() == 0

    assert visible() == len(blobs)
    data_barriers = barriers[: 1 if syncfs else len(blobs)]
    assert data_barriers and set(data_barriers) == {0}
    assert barriers[-1] == len(blobs)  # and the names are made durable after the renames


def test_local_batch_refuses_a_symlinked_shard_directory(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    storage = LocalStorage(root)
    data = b"would land outside"
    digest = sha(data)
    root.mkdir()
    (root / digest[:2]).symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidKey), storage.batch() as batch:
        batch.add(io.BytesIO(data))

    assert [p for p in outside.rglob("*") if p.is_file()] == []
    assert list(storage.tmp_dir.iterdir()) == []
