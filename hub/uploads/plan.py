"""What a folder upload will do, decided against what the course already has.

The server is the record, not the machine the command runs on: a lesson is the
course's lesson of the same title, a file is already uploaded when a material of
that lesson has the same sha256. So running ``hub upload DIR --course ID`` again,
from another computer, after a wiped cache or after someone added half the lessons
on the web, adds only what is missing, and never a second lesson of the same title
(it did, when only a local state file remembered what had been made).

When the course follows a textbook, each lesson of the plan also takes the book's
node (chapter, section or 课时) its name names: the node's title (秒的认识), or its
key and title (1.1 秒的认识) where a title repeats in the book. A folder's names are
the plan's whole format, so the title is the natural key; a lesson already on a node
keeps it (what was chosen on the web wins).

Pure functions over the folder and the API's lesson list: the command runs the plan,
``--dry-run`` prints it, and the unit tests check it without a hub.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def title_key(title: str) -> str:
    """Titles that a person reads as the same: NFC (macOS writes names decomposed), spaces folded, any case."""
    return " ".join(unicodedata.normalize("NFC", title).split()).casefold()


def clean_title(name: str) -> str:
    """A file or folder name as a title: NFC, spaces folded (the server keeps titles as sent)."""
    return " ".join(unicodedata.normalize("NFC", name).split())


@dataclass
class FilePlan:
    path: Path
    title: str
    sha256: str
    size: int
    # "upload", or "skip" when ``material`` (the API's JSON of a material of the lesson)
    # already holds these bytes, or (``material`` None) for the ``reason``: "empty" or
    # "duplicate" (an earlier file of this run has the same bytes).
    action: str
    material: dict[str, Any] | None = None
    reason: str = ""


@dataclass
class LessonPlan:
    title: str
    lesson: dict[str, Any] | None  # the API's JSON of the existing lesson; None: to create
    files: list[FilePlan] = field(default_factory=list)
    # The textbook node (the API's NodeOut JSON) the title names, when the course follows a book.
    node: dict[str, Any] | None = None

    @property
    def action(self) -> str:
        return "create" if self.lesson is None else "exists"

    @property
    def attach(self) -> bool:
        """Whether the run puts the lesson on ``node``: a new lesson, or one on no node yet."""
        return self.node is not None and (self.lesson is None or self.lesson.get("node") is None)


def book_nodes(tree: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The nodes of a textbook's tree (GET /api/v1/textbooks/{id}) by the names a lesson may carry.

    By title_key of "key title" always; of the title, and of the title without its
    number (配方法 of "21.2.1 配方法"), where only one node has it (练习课 in every chapter
    names none of them).
    """
    nodes: list[dict[str, Any]] = []
    stack = list(reversed(tree))
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(reversed(node.get("children", [])))
    by_name: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        for name in {title_key(node["title"]), title_key(_unnumbered(node["title"]))}:
            by_name.setdefault(name, []).append(node)
    named = {name: found[0] for name, found in by_name.items() if len(found) == 1}
    named.update({title_key(f"{node['key']} {node['title']}"): node for node in nodes})
    return named


# The number before a name, a book's (21.2.1 配方法) or a teacher's ordering the folders (01 配方法).
_NUMBER = re.compile(r"^\d+(?:[.\-_]\d+)*[\s.、_-]+(?=\S)")


def _unnumbered(title: str) -> str:
    number = _NUMBER.match(title)
    return title[number.end() :] if number else title


def node_named(nodes: dict[str, dict[str, Any]], title: str) -> dict[str, Any] | None:
    """The node ``title`` names: as is (1.1 秒的认识, 秒的认识), else without its number (01 秒的认识)."""
    return nodes.get(title_key(title)) or nodes.get(title_key(_unnumbered(title)))


def visible_entries(folder: Path) -> list[Path]:
    """A folder's entries by name, without hidden ones (.DS_Store, editors' swap files)."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def folder_lessons(folder: Path) -> list[tuple[str, list[Path]]]:
    """(lesson title, its files): a sub-folder is a lesson of its files, a loose file a lesson of its own.

    A sub-folder and a loose file of the same title make one lesson; empty sub-folders none.
    """
    lessons: dict[str, tuple[str, list[Path]]] = {}
    for entry in visible_entries(folder):
        if entry.is_dir():
            title, files = clean_title(entry.name), [p for p in visible_entries(entry) if p.is_file()]
        elif entry.is_file():
            title, files = clean_title(entry.stem), [entry]
        else:
            continue
        if files and title:
            lessons.setdefault(title_key(title), (title, []))[1].extend(files)
    return list(lessons.values())


def plan_lesson(
    title: str,
    files: Iterable[Path],
    lesson: dict[str, Any] | None,
    materials: Iterable[dict[str, Any]],
    sha256_of: Callable[[Path], str],
) -> LessonPlan:
    """Which of ``files`` ``lesson`` (None: a new one) lacks, by sha256 against ``materials``."""
    have = {m["original"]["sha256"]: m for m in materials if m.get("original")}
    planned = LessonPlan(title, lesson)
    sending: set[str] = set()
    for path in files:
        size = path.stat().st_size
        file_title = clean_title(path.stem)
        if size == 0:  # nothing to make a material of; said, not a stop halfway through the folder
            planned.files.append(FilePlan(path, file_title, "", size, "skip", reason="empty"))
            continue
        digest = sha256_of(path)
        if digest in have:
            planned.files.append(FilePlan(path, file_title, digest, size, "skip", have[digest]))
        elif digest in sending:  # the same bytes twice in the folder: one material is enough
            planned.files.append(FilePlan(path, file_title, digest, size, "skip", reason="duplicate"))
        else:
            sending.add(digest)
            planned.files.append(FilePlan(path, file_title, digest, size, "upload"))
    return planned


def plan_folder(
    folder: Path,
    existing: list[dict[str, Any]],
    sha256_of: Callable[[Path], str],
    tree: list[dict[str, Any]] | None = None,
) -> list[LessonPlan]:
    """The plan for ``folder`` against a course's lessons (the API's list, in position order).

    When the course already has several lessons of one title (duplicates made before
    this check existed), new files go to the first, and a file is already there when
    any of them has its bytes. ``tree`` is the chapter tree of the textbook the course
    follows: each lesson takes the node its title names (:func:`book_nodes`).
    """
    nodes = book_nodes(tree) if tree else {}
    by_title: dict[str, list[dict[str, Any]]] = {}
    for lesson in sorted(existing, key=lambda item: (item.get("position", 0), item["id"])):
        by_title.setdefault(title_key(lesson["title"]), []).append(lesson)
    plans = []
    for title, files in folder_lessons(folder):
        matches = by_title.get(title_key(title), [])
        materials = [m for lesson in matches for m in lesson.get("materials", [])]
        planned = plan_lesson(title, files, matches[0] if matches else None, materials, sha256_of)
        planned.node = node_named(nodes, title)
        plans.append(planned)
    return plans
