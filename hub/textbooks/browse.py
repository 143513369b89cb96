"""Browse by my textbook: the chapter tree of the book on a teacher's desk, with every school's lessons.

A teacher picks the book once (subject, edition, grade, volume); the pages remember it by
the textbook's key in a cookie (hub.textbooks.browse_views), so no account is needed and
a school server, whose ids differ from the upstream's, reads the same cookie the same way.

Each node lists the lessons attached to it from published courses of every school,
famous schools first (hub.catalog.services.lessons_by_node); a node without any says
so, because the gaps are what an education bureau and an uploader need to see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.catalog import services as catalog
from hub.catalog.editions import find as find_edition
from hub.catalog.models import Course
from hub.errors import NotFound
from hub.i18n import N_
from hub.textbooks.models import Textbook, TextbookNode
from hub.vocab import SUBJECTS, VOLUMES
from hub.vocab import SubjectCode as Subject


class BookChoice(BaseModel):
    """What the picker sends (every field optional: the fields given narrow the list of books)."""

    book: Annotated[str, Field(max_length=100, description="A textbook's key, e.g. renjiao-math-3-1")] | None = None
    subject: Subject | None = None
    edition: Annotated[str, Field(max_length=50)] | None = None
    grade: Annotated[int, Field(ge=1, le=9)] | None = None
    volume: Literal["上册", "下册", "全一册"] | None = None

    def narrows(self) -> bool:
        return any(v is not None for v in (self.subject, self.edition, self.grade, self.volume))


def label(book: Textbook) -> str:
    """The book as a teacher names it: edition and cover title, e.g. 人教版 数学 三年级 上册."""
    system = f"（{book.school_system}）" if book.school_system else ""
    return f"{book.edition} {book.title}{system}"


def all_textbooks(session: Session) -> list[Textbook]:
    books = list(session.scalars(select(Textbook)))
    # The curriculum's subject order (语文, 数学, 英语, …), not the codes' alphabetical one.
    rank = {code: i for i, code in enumerate(SUBJECTS)}
    volume_rank = {v: i for i, v in enumerate(VOLUMES)}
    books.sort(
        key=lambda b: (rank.get(b.subject, 99), b.edition, b.grade, volume_rank.get(b.volume, 9), b.school_system)
    )
    return books


def matching(session: Session, choice: BookChoice) -> list[Textbook]:
    """The textbooks that fit what the picker sent (by key, or by the fields given)."""
    if choice.book:
        return list(session.scalars(select(Textbook).where(Textbook.key == choice.book)))
    books = all_textbooks(session)
    edition = None
    if choice.edition:
        listed = find_edition(choice.edition)  # 部编版 is 统编版: one spelling, as courses store it
        edition = listed.name if listed else choice.edition.strip()
    return [
        b
        for b in books
        if (choice.subject is None or b.subject == choice.subject)
        and (edition is None or b.edition == edition)
        and (choice.grade is None or b.grade == choice.grade)
        and (choice.volume is None or b.volume == choice.volume)
    ]


def by_key(session: Session, key: str | None) -> Textbook | None:
    """The remembered textbook, or None when there is none or it is no longer on this hub."""
    if not key:
        return None
    return session.scalar(select(Textbook).where(Textbook.key == key))


@dataclass
class BrowseNode:
    node: TextbookNode
    lessons: list[catalog.NodeLesson]
    children: list[BrowseNode] = field(default_factory=list)
    total: int = 0  # lessons here and under every child

    @property
    def anchor(self) -> str:
        return f"node-{self.node.key}"


@dataclass(frozen=True)
class CourseRef:
    id: int
    title: str
    school: str
    famous: bool


@dataclass(frozen=True)
class BookPage:
    textbook: Textbook
    tree: list[BrowseNode]  # the chapters, each with its sections and 课时
    courses: list[CourseRef]  # published courses that follow the book, famous schools first
    leaves: int  # nodes without children: what a lesson can teach
    covered: int  # of those, how many have at least one lesson


def book_page(session: Session, key: str) -> BookPage:
    textbook = by_key(session, key)
    if textbook is None:
        raise NotFound(N_("There is no textbook %(key)s on this hub."), key=key)
    lessons = catalog.lessons_by_node(session, textbook.id)
    nodes = list(
        session.scalars(
            select(TextbookNode).where(TextbookNode.textbook_id == textbook.id).order_by(TextbookNode.position)
        )
    )
    by_id = {n.id: BrowseNode(n, lessons.get(n.id, [])) for n in nodes}
    tree: list[BrowseNode] = []
    for n in nodes:  # depth-first order: a parent comes before its children
        parent = by_id.get(n.parent_id) if n.parent_id else None
        (parent.children if parent else tree).append(by_id[n.id])

    def count(b: BrowseNode) -> int:
        b.total = len(b.lessons) + sum(count(c) for c in b.children)
        return b.total

    for top in tree:
        count(top)
    leaves = [b for b in by_id.values() if not b.children]
    courses = [
        CourseRef(i, t, s, k == "famous")
        for i, t, s, k in session.execute(
            select(Course.id, Course.title, School.name, School.kind)
            .join(School, Course.school_id == School.id)
            .where(Course.textbook_id == textbook.id, catalog.visible_clause(None))
            .order_by(catalog.famous_first(), Course.published_at.desc().nulls_last(), Course.id)
        )
    ]
    return BookPage(textbook, tree, courses, len(leaves), sum(1 for b in leaves if b.lessons))


def facet_names(session: Session, books: list[str], chapters: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The names of search facet values: textbook keys → labels, chapter values (book/chapter keys) → titles."""
    wanted = set(books) | {c.split("/", 1)[0] for c in chapters if "/" in c}
    if not wanted:
        return {}, {}
    found = {b.key: b for b in session.scalars(select(Textbook).where(Textbook.key.in_(sorted(wanted))))}
    titles: dict[str, str] = {}
    by_book: dict[str, set[str]] = {}
    for value in chapters:
        book, _, key = value.partition("/")
        if book in found:
            by_book.setdefault(book, set()).add(key)
    for book, keys in by_book.items():
        for key, title in session.execute(
            select(TextbookNode.key, TextbookNode.title).where(
                TextbookNode.textbook_id == found[book].id, TextbookNode.key.in_(sorted(keys))
            )
        ):
            titles[f"{book}/{key}"] = title
    return {key: label(b) for key, b in found.items() if key in books}, titles
