"""Blobs (bytes named by their sha256) and the renditions made from originals."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, Timestamped, UTCDateTime, utcnow
from hub.vocab import RENDITION_STATUSES

if TYPE_CHECKING:
    from hub.catalog.models import Material


class Blob(Base):
    __tablename__ = "blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rendition(Timestamped, Base):
    __tablename__ = "rendition"
    # One row per (material, profile): a redo updates the row, never adds one.
    __table_args__ = (UniqueConstraint("material_id", "profile"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("material.id", ondelete="CASCADE"))
    profile: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(
        Enum(*RENDITION_STATUSES, name="rendition_status", native_enum=False, create_constraint=True, length=32)
    )
    blob_sha256: Mapped[str | None] = mapped_column(ForeignKey("blob.sha256"), index=True)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    kbps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    ssim: Mapped[float | None] = mapped_column(Float)
    """Against the original at the profile's full size (hub.media.quality says why)."""
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A video rendition's floor, whether it held, and what was traded for it (hub.media.quality.describe)."""
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    # The profile's settings this rendition was made with (Profile.fingerprint): another
    # material with the same original reuses it only while they are still the ladder's.
    fingerprint: Mapped[str] = mapped_column(String(16), default="", server_default="")

    material: Mapped[Material] = relationship(back_populates="renditions")
    blob: Mapped[Blob | None] = relationship(lazy="joined")


class DownloadCount(Base):
    """Completed downloads of one blob (original or rendition) per UTC day and school.

    `school_id` is NULL for anonymous downloads. Written by hub.media.downloads.
    """

    __tablename__ = "download_count"
    __table_args__ = (UniqueConstraint("blob_sha256", "day", "school_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blob.sha256", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date, index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
