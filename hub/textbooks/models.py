"""Textbooks and their chapter trees; the catalog's alignment columns point here.

A textbook is what a teacher has on the desk: subject + edition + grade + volume (and the
学制 where the book differs between 六三 and 五四). Its tree is chapters (单元/章), sections
(节) and 课时, in order. Lessons attach to one node (a 课时 or a whole section) through
``Lesson.textbook_node_id``; a course may follow one textbook (``Course.textbook_id``).

Textbooks and nodes carry a ``key`` that is the same on every hub (the textbook file gives
it): sync manifests, bundles and course ZIPs name the alignment by keys, never by ids,
which differ between the upstream and a school server.
"""

from __future__ import annotations

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base, Timestamped
from hub.vocab import NODE_KINDS, SCHOOL_SYSTEMS, SUBJECTS, VOLUMES


def _enum(values: tuple[str, ...] | list[str], name: str) -> Enum:
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


class Textbook(Timestamped, Base):
    __tablename__ = "textbook"
    __table_args__ = (UniqueConstraint("subject", "edition", "grade", "volume", "school_system"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stable across hubs, e.g. "renjiao-math-3-1": what exports and sync name the book by.
    key: Mapped[str] = mapped_column(String(100), unique=True)
    subject: Mapped[str] = mapped_column(_enum(list(SUBJECTS), "textbook_subject"), index=True)
    # A listed edition's name (hub.catalog.editions), as courses store it: 人教版, 统编版, …
    edition: Mapped[str] = mapped_column(String(50))
    grade: Mapped[int] = mapped_column(Integer)
    volume: Mapped[str] = mapped_column(_enum(list(VOLUMES), "textbook_volume"))
    # "" where the book is the same in both systems; 六三 or 五四 where it differs.
    school_system: Mapped[str] = mapped_column(_enum(list(SCHOOL_SYSTEMS), "textbook_school_system"), default="")
    title: Mapped[str] = mapped_column(String(200))  # as printed on the cover, e.g. 数学 三年级 上册

    nodes: Mapped[list[TextbookNode]] = relationship(
        back_populates="textbook", order_by="TextbookNode.position", cascade="all, delete-orphan"
    )


class TextbookNode(Base):
    """One chapter, section or 课时 of a textbook; ``position`` orders the whole book depth-first."""

    __tablename__ = "textbook_node"
    __table_args__ = (
        UniqueConstraint("textbook_id", "key"),
        Index("ix_textbook_node_textbook_id_position", "textbook_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    textbook_id: Mapped[int] = mapped_column(ForeignKey("textbook.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("textbook_node.id", ondelete="CASCADE"), index=True)
    # Stable within the book across imports and hubs, e.g. "3", "3.2", "3.2.1".
    key: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(_enum(list(NODE_KINDS), "textbook_node_kind"))
    title: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)  # depth-first order within the book
    depth: Mapped[int] = mapped_column(Integer, default=0)  # 0 for a chapter
    # The teaching week (1 = the term's first) the textbook file suggests; NULL: not given.
    week: Mapped[int | None] = mapped_column(Integer)

    textbook: Mapped[Textbook] = relationship(back_populates="nodes")
