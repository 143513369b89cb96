"""Blobs as objects in an S3-compatible bucket (AWS, MinIO, Ceph) through boto3."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import (
    BlobBatch,
    BlobNotFound,
    StoredBlob,
    content_disposition,
    copy_and_hash,
    hash_file,
    is_sha256,
    key_for,
    resolve_range,
    validate_sha256,
)

MiB = 1024 * 1024

# SigV4 presigned URLs cannot outlive a week.
_MAX_PRESIGN_EXPIRES = 7 * 24 * 3600

# What S3 and its look-alikes answer for a missing key (HEAD has no body, hence "404").
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _is_not_found(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _NOT_FOUND_CODES or status == 404


class S3Storage:
    """Blob objects at `<prefix>ab/cd/<sha256>` in one bucket.

    Credentials come from boto3's usual chain (environment, shared config, instance
    role). A missing key reads as absent only if the credentials may ListBucket:
    without that permission S3 answers 403, which is raised as is.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        multipart_threshold: int = 8 * MiB,
        presign_expires: int = 3600,
        tmp_dir: Path | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        prefix = prefix.strip("/")
        self.bucket = bucket
        # "media" and "media/" mean the same folder, never "mediaab/cd/…".
        self.prefix = f"{prefix}/" if prefix else ""
        self.presign_expires = _check_expires(presign_expires)
        # Where uploads are spooled while hashing; None is the system temp directory.
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else None
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            # S3 refuses parts under 5 MiB (except the last one).
            multipart_chunksize=max(multipart_threshold, 5 * MiB),
        )
        if client is None:
            config = Config(
                # botocore may still presign with SigV2 for some regions; newer regions
                # and MinIO only take SigV4.
                signature_version="s3v4",
                retries={"mode": "standard"},
                # MinIO and Ceph behind a plain host name or an IP only do path-style.
                s3={"addressing_style": "path"} if endpoint_url else {},
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        self.client: Any = client

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, sha256: str) -> str:
        return self.prefix + key_for(validate_sha256(sha256))

    def _head(self, sha256: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise
        return head

    def store(self, fileobj: IO[bytes]) -> StoredBlob:
        # The key is the hash, known only after the last byte, and boto3 needs a sized,
        # re-readable source for multipart retries: so spool to disk first, hashing on
        # the way, and upload from there.
        if self.tmp_dir is not None:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, prefix="s3-spool-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha256, size = copy_and_hash(fileobj, out)
            return self._upload(tmp, sha256, size)
        finally:
            tmp.unlink(missing_ok=True)

    def store_file(self, path: Path) -> StoredBlob:
        # Already on disk: hash in place and upload it directly, no spool copy.
        path = Path(path)
        sha256, size = hash_file(path)
        return self._upload(path, sha256, size)

    def _upload(self, path: Path, sha256: str, size: int) -> StoredBlob:
        if self._head(sha256) is not None:
            # Same key means same bytes: skip the upload.
            return StoredBlob(sha256=sha256, size=size, created=False)
        # upload_file rather than upload_fileobj: from a file name s3transfer reads each
        # part lazily from disk, from a file object it buffers every part in memory.
        # Multipart above the threshold, parts sent in parallel and retried one by one.
        # Two concurrent uploads of the same bytes write the same object; either wins.
        self.client.upload_file(
            str(path),
            self.bucket,
            self._key(sha256),
            ExtraArgs={
                "ContentType": "application/octet-stream",
                # The server verifies every part against a SHA-256 of what we sent.
                "ChecksumAlgorithm": "SHA256",
            },
            Config=self.transfer_config,
        )
        return StoredBlob(sha256=sha256, size=size, created=True)

    @contextmanager
    def batch(self) -> Iterator[BlobBatch]:
        # An object S3 has acknowledged is durable: a batch is a set of stores to undo on failure.
        batch = _S3Batch(self)
        try:
            yield batch
        except BaseException:
            batch.abandon()
            raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def size(self, sha256: str) -> int:
        head = self._head(sha256)
        if head is None:
            raise BlobNotFound(sha256)
        return int(head["ContentLength"])

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = 65536,
    ) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        # HEAD now, GET on first iteration: errors surface at the call, and an iterator
        # that is never consumed holds no connection from the pool.
        first, stop = resolve_range(start, end, self.size(sha256))
        return self._read_range(sha256, first, stop, chunk_size)

    def _read_range(self, sha256: str, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        if stop <= start:
            return  # S3 answers 416 to any Range on an empty range, so never ask
        try:
            response = self.client.get_object(
                Bucket=self.bucket,
                Key=self._key(sha256),
                Range=f"bytes={start}-{stop - 1}",
            )
        except ClientError as error:
            if _is_not_found(error):
                raise BlobNotFound(sha256) from None
            raise
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def fetch_to(self, sha256: str, dest: Path) -> None:
        key = self._key(sha256)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                self.client.download_file(self.bucket, key, str(tmp), Config=self.transfer_config)
            except ClientError as error:
                if _is_not_found(error):
                    raise BlobNotFound(sha256) from None
                raise
            # A killed worker leaves either the old `dest` or a complete copy, never half.
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def local_path(self, sha256: str) -> Path | None:
        validate_sha256(sha256)
        return None  # no local file; use fetch_to or open_range

    def presigned_url(
        self,
        sha256: str,
        *,
        filename: str | None = None,
        expires: int | None = None,
        cache_control: str | None = None,
    ) -> str | None:
        # No HEAD here: callers hand out URLs for blobs the database already knows, and
        # a round trip per URL would slow every listing down.
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self._key(sha256)}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        if cache_control is not None:
            # Objects are stored without a Cache-Control, and S3 sends Last-Modified: left
            # alone, any cache on the way could keep a draft's bytes for a heuristic while.
            params["ResponseCacheControl"] = cache_control
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params=params,
            ExpiresIn=_check_expires(expires if expires is not None else self.presign_expires),
        )
        return url

    def delete(self, sha256: str) -> None:
        # S3's DeleteObject already succeeds for an absent key.
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def iter_hashes(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                rest = str(item["Key"])[len(self.prefix) :]
                name = rest.rsplit("/", 1)[-1]
                # Other things may share the bucket; only keys of our layout are blobs.
                if is_sha256(name) and rest == key_for(name):
                    yield name


class _S3Batch:
    def __init__(self, storage: S3Storage) -> None:
        self._storage = storage
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def add(self, fileobj: IO[bytes]) -> StoredBlob:
        stored = self._storage.store(fileobj)
        with self._lock:
            if not stored.created or stored.sha256 in self._created:
                return StoredBlob(sha256=stored.sha256, size=stored.size, created=False)
            self._created.add(stored.sha256)
        return stored

    def discard(self, sha256: str) -> None:
        with self._lock:
            if sha256 not in self._created:
                return
            self._created.discard(sha256)
        self._storage.delete(sha256)

    def abandon(self) -> None:
        with self._lock:
            created, self._created = self._created, set()
        for sha256 in created:
            self._storage.delete(sha256)


def _check_expires(seconds: int) -> int:
    if not 0 < seconds <= _MAX_PRESIGN_EXPIRES:
        raise ValueError(f"presigned URL lifetime must be 1..{_MAX_PRESIGN_EXPIRES} s, got {seconds}")
    return seconds
