"""Folder uploads decided against the course: lessons by title, files by sha256."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from hub.uploads import watch
from hub.uploads.plan import folder_lessons, plan_folder, title_key


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _material(id_: int, data: bytes) -> dict[str, Any]:
    return {"id": id_, "status": "ready", "original": {"sha256": hashlib.sha256(data).hexdigest()}}


def _lesson(id_: int, title: str, position: int, *materials: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "title": title, "position": position, "materials": list(materials)}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "一元二次方程"
    (folder / "01 配方法").mkdir(parents=True)
    (folder / "01 配方法" / "视频.mp4").write_bytes(b"video-1")
    (folder / "01 配方法" / "讲义.pdf").write_bytes(b"pdf-1")
    (folder / "02 公式法.mp4").write_bytes(b"video-2")
    (folder / "03 empty").mkdir()
    (folder / ".DS_Store").write_bytes(b"junk")
    return folder


def _actions(plans: list[Any]) -> list[tuple[str, Any, list[tuple[str, str]]]]:
    return [(p.title, p.lesson["id"] if p.lesson else None, [(f.path.name, f.action) for f in p.files]) for p in plans]


def test_an_empty_course_gets_every_lesson_and_file(tmp_path: Path) -> None:
    plans = plan_folder(_folder(tmp_path), [], _sha)
    assert _actions(plans) == [
        ("01 配方法", None, [("视频.mp4", "upload"), ("讲义.pdf", "upload")]),
        ("02 公式法", None, [("02 公式法.mp4", "upload")]),
    ]
    assert [p.action for p in plans] == ["create", "create"]
    assert plans[0].files[0].title == "视频" and plans[0].files[0].size == len(b"video-1")


def test_lessons_match_by_title_and_files_by_sha256(tmp_path: Path) -> None:
    existing = [
        _lesson(7, "01 配方法", 1, _material(70, b"video-1")),  # the video is there, the PDF is not
        _lesson(8, "02 公式法", 2, _material(80, b"an older cut of the video")),
    ]
    plans = plan_folder(_folder(tmp_path), existing, _sha)
    assert _actions(plans) == [
        ("01 配方法", 7, [("视频.mp4", "skip"), ("讲义.pdf", "upload")]),
        ("02 公式法", 8, [("02 公式法.mp4", "upload")]),  # changed bytes: a new material
    ]
    assert plans[0].files[0].material is not None and plans[0].files[0].material["id"] == 70
    assert [p.action for p in plans] == ["exists", "exists"]


def test_titles_match_across_unicode_forms_spacing_and_case(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    decomposed = unicodedata.normalize("NFD", "Révision  Unit 1")  # as macOS names a folder
    (folder / decomposed).mkdir(parents=True)
    (folder / decomposed / "a.mp3").write_bytes(b"a")
    plans = plan_folder(folder, [_lesson(3, "révision unit 1", 1)], _sha)
    assert _actions(plans) == [("Révision Unit 1", 3, [("a.mp3", "upload")])]
    assert plans[0].title == unicodedata.normalize("NFC", "Révision Unit 1")
    assert title_key(" 配方法 ") == title_key("配方法")


def test_duplicate_lessons_made_earlier_get_no_third(tmp_path: Path) -> None:
    """Two lessons of one title (the bug this replaces): files go to the first, any copy counts as there."""
    existing = [
        _lesson(9, "01 配方法", 2, _material(90, b"pdf-1")),
        _lesson(4, "01 配方法", 1),
    ]
    plans = plan_folder(_folder(tmp_path), existing, _sha)
    assert _actions(plans)[0] == ("01 配方法", 4, [("视频.mp4", "upload"), ("讲义.pdf", "skip")])
    assert plans[1].lesson is None


def test_a_folder_and_a_loose_file_of_one_title_are_one_lesson(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    (folder / "配方法").mkdir(parents=True)
    (folder / "配方法" / "讲义.pdf").write_bytes(b"pdf")
    (folder / "配方法.mp4").write_bytes(b"video")
    assert [(t, [f.name for f in files]) for t, files in folder_lessons(folder)] == [
        ("配方法", ["讲义.pdf", "配方法.mp4"])
    ]


def test_the_same_bytes_twice_in_a_lesson_are_sent_once(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    (folder / "L").mkdir(parents=True)
    (folder / "L" / "a.mp4").write_bytes(b"same")
    (folder / "L" / "b.mp4").write_bytes(b"same")
    (folder / "L" / "c.mp4").write_bytes(b"")
    (plan,) = plan_folder(folder, [], _sha)
    assert [(f.path.name, f.action, f.reason) for f in plan.files] == [
        ("a.mp4", "upload", ""),
        ("b.mp4", "skip", "duplicate"),
        ("c.mp4", "skip", "empty"),  # said in the plan, not an error halfway through the folder
    ]


class _Materials:
    """A hub whose materials settle on a schedule: each GET is one poll."""

    def __init__(self, statuses: dict[int, list[str]]) -> None:
        self.statuses = statuses
        self.polls: list[int] = []

    def get_json(self, path: str) -> dict[str, Any]:
        material_id = int(path.rsplit("/", 1)[1])
        self.polls.append(material_id)
        left = self.statuses[material_id]
        status = left.pop(0) if len(left) > 1 else left[0]
        renditions = [{"profile": "video-240p", "status": status if status in ("ready", "failed") else "processing"}]
        return {"id": material_id, "title": "m", "status": status, "progress": 50, "renditions": renditions}


@pytest.fixture
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGUAGE", raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")


def _wait(hub: _Materials, ids: list[int], timeout: float) -> watch.Waited:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    lines: list[str] = []
    return watch.wait_for_materials(
        hub,
        ids,
        timeout,
        show_progress=False,
        say=lines.append,
        clock=lambda: now[0],
        sleep=sleep,  # type: ignore[arg-type]
    )


@pytest.mark.usefixtures("english")
def test_wait_polls_until_every_material_settles() -> None:
    hub = _Materials({1: ["pending", "processing", "ready"], 2: ["ready"]})
    waited = _wait(hub, [1, 2, 1], timeout=60)
    assert hub.polls == [1, 2, 1, 1]  # a settled material is not asked again
    assert (waited.count("ready"), waited.exit_code(), waited.timed_out) == (2, 0, False)
    assert waited.line().startswith("Processing: 2 materials ready, 0 failed (2 renditions ready)")


@pytest.mark.usefixtures("english")
def test_wait_fails_on_a_failed_material_and_stops_at_the_timeout() -> None:
    failed = _wait(_Materials({1: ["processing", "failed"], 2: ["ready"]}), [1, 2], timeout=60)
    assert failed.exit_code() == watch.EXIT_FAILED == 1 and failed.as_json()["failed"] == 1
    stuck = _wait(_Materials({1: ["processing"]}), [1], timeout=5)
    assert stuck.timed_out and stuck.exit_code() == watch.EXIT_TIMEOUT == 3 and 4.9 < stuck.seconds <= 5
    assert stuck.line().endswith("Stopped waiting: 1 still processing.")


# A course that follows 人教版 数学 九年级上册: the tree as GET /api/v1/textbooks/{id} answers it.
_TREE = [
    {"id": 1, "key": "21", "kind": "chapter", "title": "第二十一章 一元二次方程", "children": [
        {"id": 2, "key": "21.2", "kind": "section", "title": "21.2 解一元二次方程", "children": [
            {"id": 3, "key": "21.2.1", "kind": "lesson", "title": "21.2.1 配方法", "children": []},
            {"id": 4, "key": "21.2.2", "kind": "lesson", "title": "21.2.2 公式法", "children": []},
        ]},
        {"id": 5, "key": "21.9", "kind": "lesson", "title": "练习", "children": []},
    ]},
    {"id": 6, "key": "22", "kind": "chapter", "title": "第二十二章 二次函数", "children": [
        {"id": 7, "key": "22.9", "kind": "lesson", "title": "练习", "children": []},
    ]},
]  # fmt: skip


def test_each_lesson_takes_the_textbook_node_its_name_names(tmp_path: Path) -> None:
    folder = _folder(tmp_path)  # 01 配方法/ and 02 公式法.mp4: numbered by the teacher, not by the book
    (folder / "练习.pdf").write_bytes(b"pdf-2")  # a title two chapters have: no node
    (folder / "22.9 练习").mkdir()
    (folder / "22.9 练习" / "题.pdf").write_bytes(b"pdf-3")  # the key says which
    (folder / "课外阅读.pdf").write_bytes(b"pdf-4")  # no node of that name
    existing = [
        {**_lesson(7, "01 配方法", 1), "node": None},  # on no node yet: the run places it
        {**_lesson(8, "02 公式法", 2), "node": {"id": 99, "key": "21.1"}},  # chosen on the web: kept
    ]
    plans = {p.title: p for p in plan_folder(folder, existing, _sha, _TREE)}
    assert {title: (p.node or {}).get("key") for title, p in plans.items()} == {
        "01 配方法": "21.2.1",
        "02 公式法": "21.2.2",
        "22.9 练习": "22.9",
        "练习": None,
        "课外阅读": None,
    }
    assert {title for title, p in plans.items() if p.attach} == {"01 配方法", "22.9 练习"}
    # A course that follows no textbook: the plan has no nodes, as before.
    assert all(p.node is None for p in plan_folder(folder, existing, _sha))
