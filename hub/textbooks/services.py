"""Textbook use cases: import a file, list, read a tree, find the book a course follows, delete.

Importing is idempotent and keeps ids: a textbook is found by its key, a node by its key
within the book; a re-import updates titles, kinds, weeks and order in place and adds the
new nodes, so every lesson aligned to a kept key stays aligned. A node the file leaves out
is deleted only when no lesson is aligned to it (or to a node inside it); otherwise the
import is refused with the keys and the lessons' count, and nothing changes.

Permissions are the caller's: the admin page and the API check the admin role, the
``hub textbook`` command runs as the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from hub.accounts.models import User
from hub.catalog.models import Course, Lesson
from hub.db import utcnow
from hub.errors import Conflict, Invalid, NotFound, PermissionDenied, Text
from hub.i18n import N_
from hub.textbooks.files import NodeSpec, TextbookSpec, parse_data, parse_file
from hub.textbooks.models import Textbook, TextbookNode

# The thickest book's file is ~30 KB; a megabyte is a wrong file, read no further.
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ImportResult:
    """What an import did, for the CLI's and the page's report."""

    textbook: Textbook
    created: bool
    added: int
    changed: int
    removed: int
    unchanged: int


@dataclass
class TreeNode:
    """A node with its children, as the tree pages and ``GET /textbooks/{id}`` show it."""

    node: TextbookNode
    children: list[TreeNode] = field(default_factory=list)


@dataclass(frozen=True)
class Usage:
    courses: int  # courses that follow the book
    lessons: int  # lessons aligned to one of its nodes


def import_textbook(session: Session, data: dict[str, Any] | TextbookSpec) -> Textbook:
    """Create or update a textbook from the file format's data (hub.textbooks.files); returns it, flushed."""
    return import_spec(session, data if isinstance(data, TextbookSpec) else parse_data(data)).textbook


def import_file(session: Session, filename: str, content: bytes) -> ImportResult:
    """Import a textbook file's bytes (.json or .csv); Invalid says what is wrong and where."""
    if len(content) > MAX_FILE_BYTES:
        raise Invalid(
            N_("A textbook file is at most %(limit)s KB."),
            {"file": Text(N_("A textbook file is at most %(limit)s KB."), limit=MAX_FILE_BYTES // 1024)},
            limit=MAX_FILE_BYTES // 1024,
        )
    return import_spec(session, parse_file(filename, content))


def require_admin(actor: User) -> None:
    """Textbooks are shared by every school on the hub: its admins manage them."""
    if not actor.is_admin:
        raise PermissionDenied(N_("Only an admin may import or delete textbooks."))


def import_spec(session: Session, spec: TextbookSpec) -> ImportResult:
    book = session.scalar(select(Textbook).where(Textbook.key == spec.key).options(selectinload(Textbook.nodes)))
    same_identity = session.scalar(
        select(Textbook).where(
            Textbook.subject == spec.subject,
            Textbook.edition == spec.edition,
            Textbook.grade == spec.grade,
            Textbook.volume == spec.volume,
            Textbook.school_system == spec.school_system,
            Textbook.key != spec.key,
        )
    )
    if same_identity is not None:
        raise Conflict(
            N_("Textbook %(other)s is already this book (%(title)s); import the file with that key to update it."),
            other=same_identity.key,
            title=same_identity.title,
        )
    # Every refusal comes before the first write: a refused import leaves the session as it was
    # (a school server applying a course goes on with its local book).
    existing = {node.key: node for node in book.nodes} if book is not None else {}
    walk = spec.walk()
    wanted = {node.key for node, _, _ in walk}
    _refuse_removing_used(session, [n for key, n in existing.items() if key not in wanted])
    created = book is None
    if book is None:
        book = Textbook(key=spec.key)
        session.add(book)
    fields = ("subject", "edition", "grade", "volume", "school_system", "title")
    book_changed = any(getattr(book, name) != getattr(spec, name) for name in fields)
    for name in fields:
        setattr(book, name, getattr(spec, name))

    added = changed = unchanged = 0
    by_key: dict[str, TextbookNode] = {}
    for position, (spec_node, _parent, depth) in enumerate(walk, start=1):
        row = existing.get(spec_node.key)
        if row is None:
            row = TextbookNode(key=spec_node.key)
            book.nodes.append(row)
            added += 1
        elif (row.kind, row.title, row.week, row.position, row.depth) != (
            spec_node.kind,
            spec_node.title,
            spec_node.week,
            position,
            depth,
        ):
            changed += 1
        else:
            unchanged += 1
        row.kind, row.title, row.week, row.position, row.depth = (
            spec_node.kind,
            spec_node.title,
            spec_node.week,
            position,
            depth,
        )
        by_key[spec_node.key] = row
    removed = [row for key, row in existing.items() if key not in wanted]
    if removed:
        # Unhooked first: the database cascades a parent's delete to its children, which the
        # ORM (deleting them too, in its own order) would then find gone.
        for row in removed:
            row.parent_id = None
        session.flush()
        for row in removed:
            book.nodes.remove(row)  # delete-orphan
    session.flush()  # new nodes get their ids: parents are set by id (the model has no parent relationship)
    for spec_node, parent, _depth in walk:
        by_key[spec_node.key].parent_id = by_key[parent.key].id if parent is not None else None
    session.flush()
    if not created and (added or changed or removed or book_changed):
        # The courses that follow the book carry its tree in their sync entries: their row's
        # stamp moves, so the upstream rebuilds those entries (hub.sync.manifest's markers).
        session.execute(
            update(Course)
            .where(Course.textbook_id == book.id)
            .values(updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return ImportResult(book, created, added, changed, len(removed), unchanged)


def _refuse_removing_used(session: Session, removed: list[TextbookNode]) -> None:
    if not removed:
        return
    ids = [node.id for node in removed]
    used = session.execute(
        select(TextbookNode.key, func.count(Lesson.id))
        .join(Lesson, Lesson.textbook_node_id == TextbookNode.id)
        .where(TextbookNode.id.in_(ids))
        .group_by(TextbookNode.key)
        .order_by(TextbookNode.key)
    ).all()
    if used:
        raise Conflict(
            N_(
                "The file leaves out nodes that %(lessons)s lesson(s) are aligned to: %(keys)s. "
                "Keep those keys in the file, or align the lessons elsewhere first; nothing was changed."
            ),
            lessons=sum(n for _, n in used),
            keys=", ".join(key for key, _ in used),
        )


def list_textbooks(
    session: Session,
    *,
    subject: str | None = None,
    edition: str | None = None,
    grade: int | None = None,
    volume: str | None = None,
) -> list[Textbook]:
    """Textbooks matching the filters given, by subject, grade, volume, edition."""
    query = select(Textbook)
    if subject:
        query = query.where(Textbook.subject == subject)
    if edition:
        query = query.where(Textbook.edition == edition)
    if grade:
        query = query.where(Textbook.grade == grade)
    if volume:
        query = query.where(Textbook.volume == volume)
    return list(
        session.scalars(
            query.order_by(Textbook.subject, Textbook.grade, Textbook.volume, Textbook.edition, Textbook.school_system)
        )
    )


def node_counts(session: Session, textbook_ids: list[int]) -> dict[int, int]:
    """How many nodes each textbook has."""
    if not textbook_ids:
        return {}
    rows = session.execute(
        select(TextbookNode.textbook_id, func.count())
        .where(TextbookNode.textbook_id.in_(textbook_ids))
        .group_by(TextbookNode.textbook_id)
    )
    return {book_id: n for book_id, n in rows}


def usage(session: Session, textbook_id: int) -> Usage:
    courses = session.scalar(select(func.count()).select_from(Course).where(Course.textbook_id == textbook_id))
    lessons = session.scalar(
        select(func.count())
        .select_from(Lesson)
        .join(TextbookNode, Lesson.textbook_node_id == TextbookNode.id)
        .where(TextbookNode.textbook_id == textbook_id)
    )
    return Usage(courses or 0, lessons or 0)


def get_textbook(session: Session, textbook_id: int) -> Textbook:
    book = session.scalar(select(Textbook).where(Textbook.id == textbook_id).options(selectinload(Textbook.nodes)))
    if book is None:
        raise NotFound(N_("There is no textbook %(id)s."), id=textbook_id)
    return book


def get_by_key(session: Session, key: str) -> Textbook | None:
    return session.scalar(select(Textbook).where(Textbook.key == key))


def find_textbook(
    session: Session, subject: str, edition: str, grade: int, volume: str, school_system: str = ""
) -> Textbook | None:
    """The textbook a teacher names by subject, edition, grade and volume (and 学制 where books differ).

    Without a school system, a book the same in both systems ("") is preferred, then any.
    """
    query = select(Textbook).where(
        Textbook.subject == subject, Textbook.edition == edition, Textbook.grade == grade, Textbook.volume == volume
    )
    if school_system:
        return session.scalar(query.where(Textbook.school_system == school_system))
    return session.scalar(query.order_by(Textbook.school_system).limit(1))


def tree(textbook: Textbook) -> list[TreeNode]:
    """The textbook's chapters, each with its sections and lessons nested, in book order."""
    items = {node.id: TreeNode(node) for node in textbook.nodes}
    roots: list[TreeNode] = []
    for node in sorted(textbook.nodes, key=lambda n: n.position):
        item = items[node.id]
        parent = items.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent is not None else roots).append(item)
    return roots


def get_node(session: Session, node_id: int) -> TextbookNode | None:
    return session.get(TextbookNode, node_id)


def node_path(node: TextbookNode) -> list[TextbookNode]:
    """The node's ancestors and itself, chapter first: where it sits in the book."""
    by_key = {n.key: n for n in node.textbook.nodes}
    parts = node.key.split(".")
    return [by_key[".".join(parts[: i + 1])] for i in range(len(parts)) if ".".join(parts[: i + 1]) in by_key]


def to_spec(textbook: Textbook) -> TextbookSpec:
    """A stored textbook as the file format's spec: what exports and sync manifests carry."""
    nodes: list[NodeSpec] = []

    def spec(item: TreeNode) -> NodeSpec:
        n = item.node
        return NodeSpec(n.key, n.kind, n.title, n.week, [spec(c) for c in item.children])

    nodes = [spec(item) for item in tree(textbook)]
    return TextbookSpec(
        textbook.key,
        textbook.subject,
        textbook.edition,
        textbook.grade,
        textbook.volume,
        textbook.school_system,
        textbook.title,
        nodes,
    )


def delete_textbook(session: Session, textbook_id: int) -> None:
    """Delete a textbook that no course follows and no lesson is aligned to."""
    book = get_textbook(session, textbook_id)
    used = usage(session, book.id)
    if used.courses or used.lessons:
        raise Conflict(
            N_("Textbook %(title)s is in use (%(courses)s course(s), %(lessons)s lesson(s)); it cannot be deleted."),
            title=book.title,
            courses=used.courses,
            lessons=used.lessons,
        )
    # The nodes in one statement: the database cascades a parent's delete to its children,
    # which the ORM's own cascade (row by row) would then find gone.
    session.execute(delete(TextbookNode).where(TextbookNode.textbook_id == book.id))
    session.expire(book, ["nodes"])
    session.delete(book)
    session.flush()
