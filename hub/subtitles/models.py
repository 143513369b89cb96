"""One subtitle track of a material: a normalised WebVTT blob and its plain transcript."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, Timestamped
from hub.vocab import LANGUAGES

if TYPE_CHECKING:
    from hub.catalog.models import Material
    from hub.media.models import Blob


class Subtitle(Timestamped, Base):
    __tablename__ = "subtitle"
    # One track per language and material: uploading another replaces it.
    __table_args__ = (UniqueConstraint("material_id", "language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("material.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(
        Enum(*LANGUAGES, name="subtitle_language", native_enum=False, create_constraint=True, length=32)
    )
    label: Mapped[str] = mapped_column(String(100), default="")
    # The normalised UTF-8 .vtt, named by its sha256 like every stored byte string.
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("blob.sha256"), index=True)
    cues: Mapped[int] = mapped_column(Integer, default=0)
    # "<start seconds>\t<cue text>" per line (hub.subtitles.webvtt.Subtitles.transcript):
    # search indexes it and finds a hit's time in it without reading storage.
    transcript: Mapped[str] = mapped_column(Text, default="")

    material: Mapped[Material] = relationship(back_populates="subtitles")
    blob: Mapped[Blob] = relationship(lazy="joined")
