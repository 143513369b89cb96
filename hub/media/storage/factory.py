"""Choose the storage backend from configuration: a setting, not a code change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.media.storage.base import Storage
from hub.media.storage.local import LocalStorage

if TYPE_CHECKING:
    from hub.config import Settings


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        from hub.media.storage.s3 import S3Storage  # boto3 loads only on hubs that store in S3

        return S3Storage(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            # Uploads are hashed into a spool file before they go up; keep it
            # on the data disk, not in a small (or in-memory) system /tmp.
            tmp_dir=settings.data_dir / "tmp",
        )
    return LocalStorage(settings.storage_dir)
