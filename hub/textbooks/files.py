"""The textbook file: one book and its chapter tree, as JSON or CSV (README.md, "Textbooks").

JSON (``.json``)::

    {
      "format": "oer-hub-textbook/1",
      "key": "renjiao-math-3-1",          # stable across hubs: a-z, 0-9 and "-"
      "subject": "math",                  # a subject code (hub.vocab.SUBJECTS)
      "edition": "人教版",                # a listed edition (GET /api/v1/editions) or another's name
      "grade": 3,
      "volume": "上册",                   # 上册, 下册 or 全一册
      "school_system": "",                # optional: 六三 or 五四 where the books differ
      "title": "数学 三年级 上册",        # optional: made from the fields when left out
      "nodes": [
        {"key": "1", "kind": "chapter", "title": "时、分、秒", "week": 1,
         "children": [{"key": "1.1", "kind": "section", "title": "秒的认识", "week": 1}]}
      ]
    }

CSV (``.csv``, UTF-8, a BOM is fine): the header ``key,kind,title,week`` and one row per
node in book order; a first row of kind ``textbook`` gives the book (its key and title)
with its descriptive fields in the extra columns ``subject,edition,grade,volume,school_system``,
which node rows leave empty.

The rules, the same for both:

- node keys are dotted paths: a child's key is its parent's key, a dot and its own part
  ("3", "3.2", "3.2.1"); so a CSV row's parent is its key without the last part, and a key
  says where its node sits. Keys are what lessons are aligned by on every hub: keep a
  node's key when its title or week changes;
- top-level nodes are chapters (单元/章); below them sections (节) and lessons (课时); a
  lesson node has no children;
- ``week`` (optional) is the teaching week the node starts in, 1 being the term's first.

Parsing checks everything and raises :class:`hub.errors.Invalid` with the first problem
found and where it is (the node's key, or the CSV line), before anything is stored.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from hub.catalog import editions
from hub.errors import Invalid, Text
from hub.i18n import N_
from hub.inputs import UnsafeJson, loads_json
from hub.vocab import GRADE_NAMES, NODE_KINDS, SCHOOL_SYSTEMS, SUBJECTS, VOLUMES

FORMAT = "oer-hub-textbook/1"
BOOK_KEY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NODE_PART = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_NODES = 2000  # a thick book has ~200; more is a mistake (or an attack), not a textbook
MAX_WEEK = 30  # a term is ~20 weeks; 30 leaves room for a long one
CSV_COLUMNS = ("key", "kind", "title", "week")
CSV_BOOK_COLUMNS = ("subject", "edition", "grade", "volume", "school_system")
BOOK_FIELDS = ("key", "subject", "edition", "grade", "volume", "school_system", "title")


@dataclass
class NodeSpec:
    key: str
    kind: str
    title: str
    week: int | None
    children: list[NodeSpec] = field(default_factory=list)


@dataclass
class TextbookSpec:
    """A checked textbook file: the book's fields and its tree."""

    key: str
    subject: str
    edition: str
    grade: int
    volume: str
    school_system: str
    title: str
    nodes: list[NodeSpec]

    def walk(self) -> list[tuple[NodeSpec, NodeSpec | None, int]]:
        """Every node depth-first, in book order, with its parent and depth (0 for a chapter)."""
        out: list[tuple[NodeSpec, NodeSpec | None, int]] = []

        def visit(node: NodeSpec, parent: NodeSpec | None, depth: int) -> None:
            out.append((node, parent, depth))
            for child in node.children:
                visit(child, node, depth + 1)

        for chapter in self.nodes:
            visit(chapter, None, 0)
        return out


def default_title(subject: str, grade: int, volume: str) -> str:
    """What a cover says when the file gives no title: 数学 三年级 上册."""
    return f"{SUBJECTS[subject][0]} {GRADE_NAMES[grade]} {volume}"


def _invalid(template: str, **params: object) -> Invalid:
    return Invalid(template, {"file": Text(template, **params)}, **params)


def parse_file(filename: str, content: bytes) -> TextbookSpec:
    """A textbook file's bytes as a checked spec; JSON or CSV by the name's extension."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid(N_("The textbook file must be UTF-8 text.")) from None
    if "\x00" in text:  # PostgreSQL text cannot hold it
        raise _invalid(N_("The textbook file may not contain the NUL character."))
    lower = filename.lower()
    if lower.endswith(".csv"):
        return parse_data(_csv_data(text))
    if not lower.endswith(".json"):
        raise _invalid(N_("A textbook file is .json or .csv; %(name)s is neither."), name=filename or "-")
    try:
        data = loads_json(text)  # bounded depth, no NUL: the file is untrusted
    except UnsafeJson as exc:
        raise _invalid(exc.template, **exc.params) from None
    except ValueError as exc:
        raise _invalid(N_("The textbook file is not valid JSON: %(reason)s"), reason=exc) from None
    return parse_data(data)


def _csv_data(text: str) -> dict[str, Any]:
    """A CSV textbook file as the JSON format's data (the tree rebuilt from the dotted keys)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0][:4]) != CSV_COLUMNS:
        raise _invalid(N_("The CSV file's first line must be the header key,kind,title,week."))
    header = [c.strip() for c in rows[0]]
    unknown = [c for c in header[4:] if c not in CSV_BOOK_COLUMNS]
    if unknown:
        raise _invalid(N_("The CSV file has an unknown column: %(column)s."), column=unknown[0])
    data: dict[str, Any] = {"format": FORMAT, "nodes": []}
    by_key: dict[str, dict[str, Any]] = {}
    seen_book = False
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise _invalid(N_("Line %(line)s of the CSV file has more cells than the header."), line=line)
        cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
        if cells.get("kind") == "textbook":
            if seen_book or by_key:
                raise _invalid(N_("Line %(line)s: the textbook row must be the first row after the header."), line=line)
            seen_book = True
            data["key"], data["title"] = cells.get("key", ""), cells.get("title", "")
            for name in CSV_BOOK_COLUMNS:
                data[name] = cells.get(name, "")
            continue
        if not seen_book:
            raise _invalid(N_("The CSV file must start with a row of kind textbook that names the book."))
        key = cells.get("key", "")
        week = cells.get("week", "")
        node: dict[str, Any] = {
            "key": key,
            "kind": cells.get("kind", ""),
            "title": cells.get("title", ""),
            "week": int(week) if _digits(week) else (week or None),
            "children": [],
        }
        parent_key = key.rpartition(".")[0]
        if not parent_key:
            data["nodes"].append(node)
        elif parent_key in by_key:
            by_key[parent_key]["children"].append(node)
        else:
            raise _invalid(
                N_("Line %(line)s: node %(key)s comes before its parent %(parent)s (or the parent is missing)."),
                line=line,
                key=key,
                parent=parent_key,
            )
        by_key.setdefault(key, node)
    if not seen_book:
        raise _invalid(N_("The CSV file must start with a row of kind textbook that names the book."))
    if _digits(data["grade"]):  # else parse_data names the field
        data["grade"] = int(data["grade"])
    return data


def _digits(text: str) -> bool:
    """ASCII digits only, and few: str.isdigit() is true of "²", which int() refuses."""
    return text.isascii() and text.isdigit() and len(text) <= 4


def parse_data(data: Any) -> TextbookSpec:
    """Check the JSON format's data (as parsed) and return it as a spec."""
    if not isinstance(data, dict):
        raise _invalid(N_("A textbook file holds one JSON object."))
    if data.get("format", FORMAT) != FORMAT:
        raise _invalid(N_("Unknown textbook file format %(format)s; this hub reads %(expected)s."),
                       format=data.get("format"), expected=FORMAT)  # fmt: skip
    unknown = sorted(set(data) - {*BOOK_FIELDS, "format", "nodes"})
    if unknown:
        raise _invalid(N_("The textbook file has an unknown field: %(field)s."), field=unknown[0])
    key = _text(data, "key", 100)
    if not BOOK_KEY.match(key):
        raise _invalid(
            N_("The textbook key %(key)s must be lower-case letters, digits and hyphens, e.g. renjiao-math-3-1."),
            key=key or "-",
        )
    subject = _text(data, "subject", 32)
    if subject not in SUBJECTS:
        raise _invalid(N_("The textbook's subject %(value)s is not a subject code such as math or chinese."),
                       value=subject or "-")  # fmt: skip
    grade = data.get("grade")
    if not isinstance(grade, int) or isinstance(grade, bool) or not 1 <= grade <= 9:
        raise _invalid(N_("The textbook's grade must be a whole number from 1 to 9."))
    volume = _text(data, "volume", 20)
    if volume not in VOLUMES:
        raise _invalid(N_("The textbook's volume must be 上册, 下册 or 全一册."))
    school_system = _text(data, "school_system", 10, required=False)
    if school_system not in SCHOOL_SYSTEMS:
        raise _invalid(N_("The textbook's school system must be empty, 六三 or 五四."))
    edition_name = _text(data, "edition", 50)
    listed = editions.find(edition_name)
    if listed is not None:
        edition_name = listed.name  # one spelling, as courses store it (an alias such as 部编版 is 统编版)
        try:
            editions.check_subject(listed.name, subject)
        except editions.EditionError as exc:
            raise _invalid(exc.template, **exc.params) from None
    title = _text(data, "title", 200, required=False) or default_title(subject, grade, volume)
    nodes_data = data.get("nodes")
    if not isinstance(nodes_data, list) or not nodes_data:
        raise _invalid(N_("The textbook file needs a list of nodes (its chapters) with at least one."))
    keys: set[str] = set()
    nodes = [_node(item, None, keys) for item in nodes_data]
    return TextbookSpec(key, subject, edition_name, grade, volume, school_system, title, nodes)


def _text(data: dict[str, Any], name: str, limit: int, *, required: bool = True) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(N_("The textbook's %(field)s must be text."), field=name)
    value = value.strip()
    if required and not value:
        raise _invalid(N_("The textbook file needs its %(field)s."), field=name)
    if len(value) > limit:
        raise _invalid(N_("The textbook's %(field)s can have at most %(limit)s characters."), field=name, limit=limit)
    return value


def _node(item: Any, parent: NodeSpec | None, keys: set[str]) -> NodeSpec:
    where = parent.key if parent else "-"
    if not isinstance(item, dict):
        raise _invalid(N_("A node under %(parent)s is not a JSON object."), parent=where)
    unknown = sorted(set(item) - {"key", "kind", "title", "week", "children"})
    if unknown:
        raise _invalid(N_("A node under %(parent)s has an unknown field: %(field)s."), parent=where, field=unknown[0])
    key = item.get("key")
    if not isinstance(key, str) or not key.strip():
        raise _invalid(N_("A node under %(parent)s has no key."), parent=where)
    key = key.strip()
    parts = key.split(".")
    if len(key) > 50 or not all(NODE_PART.match(p) for p in parts):
        raise _invalid(N_("Node key %(key)s: use letters, digits, - and _, with dots between levels."), key=key)
    expected = (parent.key + "." if parent else "") + parts[-1]
    if key != expected or (parent is None and len(parts) != 1):
        raise _invalid(
            N_("Node key %(key)s must be its parent's key, a dot and one more part (here %(expected)s)."),
            key=key,
            expected=expected if parent else parts[-1],
        )
    if key in keys:
        raise _invalid(N_("Node key %(key)s appears twice."), key=key)
    keys.add(key)
    if len(keys) > MAX_NODES:
        raise _invalid(N_("A textbook has at most %(limit)s nodes."), limit=MAX_NODES)
    kind = item.get("kind")
    if kind not in NODE_KINDS:
        raise _invalid(N_("Node %(key)s: kind must be chapter, section or lesson."), key=key)
    if parent is None and kind != "chapter":
        raise _invalid(N_("Node %(key)s: the top level of the tree holds chapters only."), key=key)
    if parent is not None and kind == "chapter":
        raise _invalid(N_("Node %(key)s: a chapter cannot sit inside another node."), key=key)
    if parent is not None and parent.kind == "lesson":
        raise _invalid(N_("Node %(key)s: a lesson (课时) has no nodes inside it."), key=parent.key)
    title = item.get("title")
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > 200:
        raise _invalid(N_("Node %(key)s needs a title of 1 to 200 characters."), key=key)
    week = item.get("week")
    if week is not None and (not isinstance(week, int) or isinstance(week, bool) or not 1 <= week <= MAX_WEEK):
        raise _invalid(N_("Node %(key)s: week must be a whole number from 1 to %(limit)s."), key=key, limit=MAX_WEEK)
    node = NodeSpec(key, kind, title.strip(), week)
    children = item.get("children") or []
    if not isinstance(children, list):
        raise _invalid(N_("Node %(key)s: children must be a list of nodes."), key=key)
    node.children = [_node(child, node, keys) for child in children]
    return node


def to_data(spec: TextbookSpec) -> dict[str, Any]:
    """A spec back as the JSON format's data (what exports and sync send)."""

    def node(n: NodeSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"key": n.key, "kind": n.kind, "title": n.title}
        if n.week is not None:
            out["week"] = n.week
        if n.children:
            out["children"] = [node(c) for c in n.children]
        return out

    return {
        "format": FORMAT,
        **{name: getattr(spec, name) for name in BOOK_FIELDS},
        "nodes": [node(n) for n in spec.nodes],
    }
