"""Content-addressed blob storage: a local directory by default, S3 by configuration."""

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
from .s3 import S3Storage

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
