"""Content-addressed blob storage: a local directory by default, S3 by configuration."""

from typing import TYPE_CHECKING

from .base import (
    BlobBatch,
    BlobNotFound,
    InvalidKey,
    Storage,
    StoredBlob,
    content_disposition,
    is_sha256,
    key_for,
)
from .local import LocalStorage

if TYPE_CHECKING:
    from .s3 import S3Storage


def __getattr__(name: str) -> object:
    # boto3 costs a quarter of a second at start-up: it loads when S3 is used, not with every `hub` command.
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlobBatch",
    "BlobNotFound",
    "InvalidKey",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StoredBlob",
    "content_disposition",
    "is_sha256",
    "key_for",
]
