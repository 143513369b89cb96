"""A small textbook and courses aligned to it, made through the models (importing is hub.textbooks.services')."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from hub.accounts.models import User
from hub.catalog import services
from hub.catalog.models import Course
from hub.catalog.schemas import CourseCreate, LessonCreate
from hub.textbooks.models import Textbook, TextbookNode
from tests.conftest import Accounts

BOOK_KEY = "renjiao-math-3-1"


@dataclass
class Catalog:
    book: Textbook
    nodes: dict[str, TextbookNode]
    famous: int  # the famous school's course
    rural: int  # a rural school's course on the same book, published before the famous one
    draft: int


def make_book(db: Session) -> tuple[Textbook, dict[str, TextbookNode]]:
    book = Textbook(key=BOOK_KEY, subject="math", edition="人教版", grade=3, volume="上册", title="数学 三年级 上册")
    db.add(book)
    rows = [
        ("1", None, "chapter", "时、分、秒"),
        ("1.1", "1", "lesson", "秒的认识"),
        ("1.2", "1", "lesson", "时间的计算"),
        ("2", None, "chapter", "万以内的加法和减法（一）"),
        ("2.1", "2", "lesson", "两位数加两位数"),
        ("3", None, "chapter", "测量"),
    ]
    nodes: dict[str, TextbookNode] = {}
    for position, (key, parent, kind, title) in enumerate(rows):
        node = TextbookNode(
            textbook=book,
            key=key,
            kind=kind,
            title=title,
            position=position,
            depth=0 if parent is None else 1,
            parent_id=nodes[parent].id if parent else None,
        )
        db.add(node)
        db.flush()
        nodes[key] = node
    db.commit()
    return book, nodes


def aligned_course(
    db: Session,
    user: User,
    title: str,
    lessons: list[tuple[str, TextbookNode | None]],
    publish: bool = True,
    **fields: Any,
) -> int:
    body = {
        "title": title,
        "subject": "math",
        "grades": [3],
        "edition": "人教版",
        "volume": "上册",
        "language": "zh",
        "license": "CC-BY-4.0",
        **fields,
    }
    course = services.create_course(db, user, CourseCreate(**body))
    for lesson_title, node in lessons:
        lesson = services.create_lesson(db, user, course.id, LessonCreate(title=lesson_title))
        lesson.textbook_node_id = node.id if node else None
    if publish:
        services.publish_course(db, user, course.id)
    db.commit()
    return course.id


def shipped_book(db: Session) -> tuple[Textbook, dict[str, TextbookNode]]:
    """人教版 数学 三年级上册 as the hub ships it (hub/textbooks/data), imported as `hub textbook import` does."""
    import hub.textbooks
    from hub.textbooks import services as textbooks

    path = Path(hub.textbooks.__file__).parent / "data" / f"{BOOK_KEY}.json"
    book = textbooks.import_file(db, path.name, path.read_bytes()).textbook
    db.commit()
    return book, {node.key: node for node in book.nodes}


def make_catalog(db: Session, make: Accounts, *, shipped: bool = False) -> Catalog:
    """The book, a rural and a famous school's published courses aligned to it, and a draft.

    The book is the small one above, or with ``shipped`` the real one (its chapters 1 and 2
    have the same keys: 1.1 秒的认识, 1.2 时间的计算, 2.1).
    """
    book, nodes = shipped_book(db) if shipped else make_book(db)
    rural = make.user("r@x.cn", make.school("山区小学", "rural"))
    famous = make.user("f@x.cn", make.school("海淀实验小学", "famous"))
    # The rural school publishes first: famous first must beat "newest first".
    rural_id = aligned_course(db, rural, "山区 三上数学", [("认识秒", nodes["1.1"]), ("算时间", nodes["1.2"])])
    famous_id = aligned_course(
        db,
        famous,
        "名校 三上数学",
        [("秒的认识（名校）", nodes["1.1"]), ("时间计算", nodes["1.2"]), ("单元复习", None)],
    )
    draft_id = aligned_course(db, famous, "草稿 三上", [("草稿课", nodes["2.1"])], publish=False)
    for course_id in (rural_id, famous_id):
        db.get_one(Course, course_id).textbook_id = book.id
    db.commit()
    return Catalog(book, nodes, famous_id, rural_id, draft_id)
