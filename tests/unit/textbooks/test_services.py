"""Textbook files and their import: the format's rules, idempotent re-import, kept ids, refused removals."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson
from hub.errors import Conflict, Invalid
from hub.textbooks import services
from hub.textbooks.cli import shipped_files
from hub.textbooks.files import parse_file, to_data
from hub.textbooks.models import Textbook, TextbookNode
from tests.conftest import Accounts

BOOK: dict[str, Any] = {
    "format": "oer-hub-textbook/1",
    "key": "renjiao-math-9-1",
    "subject": "math",
    "edition": "人教版",
    "grade": 9,
    "volume": "上册",
    "nodes": [
        {
            "key": "21",
            "kind": "chapter",
            "title": "第二十一章 一元二次方程",
            "week": 1,
            "children": [
                {"key": "21.1", "kind": "section", "title": "21.1 一元二次方程", "week": 1},
                {
                    "key": "21.2",
                    "kind": "section",
                    "title": "21.2 解一元二次方程",
                    "children": [{"key": "21.2.1", "kind": "lesson", "title": "21.2.1 配方法", "week": 2}],
                },
            ],
        },
        {"key": "22", "kind": "chapter", "title": "第二十二章 二次函数", "week": 4},
    ],
}


def book(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BOOK)
    data.update(changes)
    return data


def test_a_file_becomes_a_textbook_with_its_tree_in_book_order(db: Session) -> None:
    textbook = services.import_textbook(db, book())
    db.commit()
    assert (textbook.title, textbook.edition, textbook.school_system) == ("数学 九年级 上册", "人教版", "")
    rows = [(n.key, n.kind, n.position, n.depth, n.week) for n in textbook.nodes]
    assert rows == [
        ("21", "chapter", 1, 0, 1),
        ("21.1", "section", 2, 1, 1),
        ("21.2", "section", 3, 1, None),
        ("21.2.1", "lesson", 4, 2, 2),
        ("22", "chapter", 5, 0, 4),
    ]
    tree = services.tree(textbook)
    assert [item.node.key for item in tree] == ["21", "22"]
    assert [item.node.key for item in tree[0].children] == ["21.1", "21.2"]
    assert [item.node.key for item in tree[0].children[1].children] == ["21.2.1"]
    by_key = {n.key: n for n in textbook.nodes}
    assert by_key["21.2.1"].parent_id == by_key["21.2"].id
    assert services.find_textbook(db, "math", "人教版", 9, "上册") is textbook
    assert services.find_textbook(db, "math", "人教版", 9, "下册") is None
    assert to_data(services.to_spec(textbook)) == to_data(parse_file("b.json", json.dumps(book()).encode()))


def test_importing_again_keeps_node_ids_updates_titles_and_weeks_and_adds_nodes(db: Session, make: Accounts) -> None:
    first = services.import_file(db, "b.json", json.dumps(book()).encode())
    db.commit()
    assert (first.created, first.added) == (True, 5)
    ids = {n.key: n.id for n in first.textbook.nodes}
    again = services.import_file(db, "b.json", json.dumps(book()).encode())
    assert (again.created, again.added, again.changed, again.removed, again.unchanged) == (False, 0, 0, 0, 5)

    edited = book(title="数学 九年级 上册（2024）")
    edited["nodes"][0]["children"][1]["children"][0]["title"] = "配方法"
    edited["nodes"][0]["children"][1]["children"][0]["week"] = 3
    edited["nodes"].insert(1, {"key": "21b", "kind": "chapter", "title": "阅读与思考", "week": 3})
    result = services.import_textbook(db, edited)
    db.commit()
    assert result.id == first.textbook.id and result.title == "数学 九年级 上册（2024）"
    nodes = {n.key: n for n in db.scalars(select(TextbookNode).where(TextbookNode.textbook_id == result.id))}
    assert {key: nodes[key].id for key in ids} == ids  # every kept key kept its row
    assert (nodes["21.2.1"].title, nodes["21.2.1"].week) == ("配方法", 3)
    assert (nodes["21b"].position, nodes["22"].position) == (5, 6)
    assert db.scalar(select(Textbook).where(Textbook.key == "renjiao-math-9-1")) is not None
    assert len(services.list_textbooks(db)) == 1


def test_a_node_that_lessons_use_cannot_be_left_out_but_an_unused_one_goes(db: Session, make: Accounts) -> None:
    textbook = services.import_textbook(db, book())
    school = make.school()
    course = Course(
        school_id=school.id, title="九上", category="curriculum", subject="math", grades_mask=1 << 9,
        language="zh", license="CC-BY-4.0", status="draft", textbook_id=textbook.id,
    )  # fmt: skip
    db.add(course)
    db.flush()
    node = next(n for n in textbook.nodes if n.key == "21.2.1")
    db.add(Lesson(course_id=course.id, position=1, title="配方法", textbook_node_id=node.id))
    db.commit()

    without_chapter = book()
    del without_chapter["nodes"][0]
    with pytest.raises(Conflict) as refused:
        services.import_textbook(db, without_chapter)
    assert "21.2.1" in refused.value.message and "1 lesson" in refused.value.message
    db.rollback()
    assert len(db.get(Textbook, textbook.id).nodes) == 5  # nothing changed

    without_22 = book()
    del without_22["nodes"][1]
    result = services.import_file(db, "b.json", json.dumps(without_22).encode())
    db.commit()
    assert (result.removed, [n.key for n in result.textbook.nodes]) == (1, ["21", "21.1", "21.2", "21.2.1"])

    with pytest.raises(Conflict, match="in use"):
        services.delete_textbook(db, textbook.id)
    assert services.usage(db, textbook.id) == services.Usage(courses=1, lessons=1)


def test_removing_a_chapter_removes_its_nodes_and_an_unused_textbook_can_be_deleted(db: Session) -> None:
    textbook = services.import_textbook(db, book())
    db.commit()
    smaller = book()
    del smaller["nodes"][0]
    assert services.import_spec(db, parse_file("b.json", json.dumps(smaller).encode())).removed == 4
    db.commit()
    services.delete_textbook(db, textbook.id)
    db.commit()
    assert db.scalars(select(TextbookNode)).all() == []


def test_another_key_for_the_same_book_is_refused(db: Session) -> None:
    services.import_textbook(db, book())
    with pytest.raises(Conflict, match="renjiao-math-9-1"):
        services.import_textbook(db, book(key="pep-math-9-1"))


def n(key: str, kind: str = "chapter", title: str = "x", *children: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A node of a test file."""
    return {"key": key, "kind": kind, "title": title, **more, **({"children": list(children)} if children else {})}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "Renjiao Math"}, "lower-case letters"),
        ({"subject": "maths"}, "subject code"),
        ({"grade": 10}, "from 1 to 9"),
        ({"grade": "9"}, "from 1 to 9"),
        ({"volume": "上"}, "上册, 下册 or 全一册"),
        ({"school_system": "63"}, "六三 or 五四"),
        ({"edition": "外研版"}, "publishes no textbooks for this subject"),
        ({"nodes": []}, "at least one"),
        ({"extra": 1}, "unknown field: extra"),
        ({"format": "other/2"}, "Unknown textbook file format"),
        ({"nodes": [n("1", "section")]}, "chapters only"),
        ({"nodes": [n("1", "chapter", "x", n("2.1", "lesson"))]}, "here 1.1"),
        ({"nodes": [n("1", "chapter", "x", n("1.1", "chapter"))]}, "inside another"),
        ({"nodes": [n("1", "chapter", "x", n("1.1", "lesson", "y", n("1.1.1", "lesson")))]}, "has no nodes inside"),
        ({"nodes": [n("1"), n("1")]}, "appears twice"),
        ({"nodes": [n("1", title="")]}, "needs a title"),
        ({"nodes": [n("1", week=0)]}, "week must be"),
        ({"nodes": [n("1", week=True)]}, "week must be"),
        ({"nodes": [n("a b")]}, "letters, digits"),
    ],
)
def test_a_wrong_file_is_refused_with_the_reason(db: Session, change: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as refused:
        services.import_textbook(db, book(**change))
    assert message in refused.value.message
    assert "file" in refused.value.fields


def test_a_csv_file_is_the_same_book_as_its_json(db: Session) -> None:
    csv_text = (
        "key,kind,title,week,subject,edition,grade,volume,school_system\n"
        "renjiao-math-9-1,textbook,数学 九年级 上册,,math,PEP,9,上册,\n"
        "21,chapter,第二十一章 一元二次方程,1\n"
        "21.1,section,21.1 一元二次方程,1\n"
        "21.2,section,21.2 解一元二次方程,\n"
        "21.2.1,lesson,21.2.1 配方法,2\n"
        "\n"
        "22,chapter,第二十二章 二次函数,4\n"
    )
    from_csv = parse_file("b.csv", ("\ufeff" + csv_text).encode())
    assert from_csv.edition == "人教版"  # an alias is stored as the listed name
    assert to_data(from_csv) == to_data(parse_file("b.json", json.dumps(book()).encode()))


HEAD = "key,kind,title,week,subject,edition,grade,volume,school_system\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("b.txt", b"{}", "neither"),
        ("b.json", b"{", "not valid JSON"),
        ("b.json", b"[]", "one JSON object"),
        ("b.json", b"\xff\xfe", "UTF-8"),
        ("b.json", b"[" * 100 + b"]" * 100, "deeper"),
        ("b.csv", b"a,b\n", "header"),
        ("b.csv", b"key,kind,title,week\n1,chapter,x,1\n", "kind textbook"),
        ("b.csv", b"key,kind,title,week,subject\nk,textbook,t,,math\n1.1,lesson,x,\n", "before its parent"),
        ("b.csv", b"key,kind,title,week,colour\n", "unknown column"),
        ("b.csv", f"{HEAD}k,textbook,t,,math,人教版,²,上册,\n1,chapter,x,\n".encode(), "grade must be"),
        ("b.csv", f"{HEAD}k,textbook,t,,math,人教版,3,上册,\n1,chapter,x,１\n".encode(), "week must be"),
    ],
)
def test_a_file_that_is_not_a_textbook_file_is_refused(name: str, content: bytes, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_file(name, content)


def test_the_shipped_books_import_and_are_real_tables_of_contents(db: Session) -> None:
    keys = {}
    for path in shipped_files():
        result = services.import_file(db, path.name, path.read_bytes())
        keys[result.textbook.key] = result.textbook
        assert path.stem == result.textbook.key
    db.commit()
    assert {"renjiao-math-3-1", "renjiao-math-9-1", "tongbian-chinese-1-1"} <= set(keys)
    nine = {n.key: n.title for n in keys["renjiao-math-9-1"].nodes}
    assert nine["21.2.1"] == "21.2.1 配方法" and nine["24"] == "第二十四章 圆"
    three = [n.title for n in keys["renjiao-math-3-1"].nodes if n.depth == 0]
    assert three[0] == "第一单元 时、分、秒" and three[7] == "第八单元 分数的初步认识"
    for textbook in keys.values():  # weeks never go back in book order: a calendar can follow them
        weeks = [n.week for n in textbook.nodes if n.week is not None]
        assert weeks == sorted(weeks) and weeks[0] == 1 and weeks[-1] <= 20
