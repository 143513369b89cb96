"""A resumable upload: the row that follows a tus upload from creation to its blob."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, Timestamped, UTCDateTime

UPLOAD_STATUSES = ("uploading", "complete", "expired")


class Upload(Timestamped, Base):
    """One tus upload.

    The bytes themselves are never in this row: they are in a partial store
    (:mod:`hub.uploads.storage`) until the last one arrives, then in blob storage
    under their sha256. ``offset`` is a cache for listings and the expiry sweep;
    the offset a client is told always comes from what storage really holds.
    """

    __tablename__ = "upload"

    # 32 URL-safe characters from secrets.token_urlsafe(24): 192 random bits, so an
    # upload URL cannot be guessed, and the id is safe in file names and S3 keys.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(
        Enum(*UPLOAD_STATUSES, name="upload_status", native_enum=False, create_constraint=True, length=16)
    )
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    filename: Mapped[str] = mapped_column(String(255))
    filetype: Mapped[str] = mapped_column(String(100), default="")
    # Upload-Metadata as received (key → base64 value), so HEAD can echo it exactly.
    upload_metadata: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The whole file's SHA-256 so far, as a saved hash state (hub.uploads.storage.Sha256State)
    # covering the first sha256_offset bytes: completion needs no second read of the file.
    sha256_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    sha256_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # "local" or "s3", and what that backend needs to find the bytes again
    # (a relative file path; or the S3 key, UploadId, part size and parts sent). An upload
    # discarded because its bytes did not match its declared sha256 has no bytes left: its
    # tombstone (status "expired") keeps {"rejected": "sha256"} here, so its URL says why.
    backend: Mapped[str] = mapped_column(String(16))
    backend_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blob.sha256"), index=True)
    # The material made from this upload: a second request with the same upload is a
    # retry (answered with that material), never a duplicate.
    material_id: Mapped[int | None] = mapped_column(ForeignKey("material.id", ondelete="SET NULL"), index=True)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def __repr__(self) -> str:
        return f"Upload({self.id!r}, {self.status}, {self.offset}/{self.length})"
