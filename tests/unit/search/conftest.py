"""Search fixtures: an app with search wired, and an index built from plain course sources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from hub.search import SearchEngine
from hub.search.documents import CourseSource, course_documents
from hub.search.index import SearchIndex
from hub.search.query import QueryEngine
from tests.unit.search.support import source


@pytest.fixture
def engine(app: Flask) -> Iterator[SearchEngine]:
    engine: SearchEngine = app.extensions["hub.search"]
    yield engine
    engine.wait_for_rebuild(30)
    engine.index.close()


def build(root: Path, courses: list[CourseSource]) -> SearchIndex:
    index = SearchIndex(root)
    with index.writer_lock():
        index.rebuild(doc for course in courses for doc in course_documents(course))
    return index


# A small catalog that exercises every Chinese case of the issue.
CATALOG = [
    source(
        1,
        "人教版数学九年级上册",
        [
            ("一元二次方程", "本课学习配方法、公式法与因式分解法。"),
            ("二次函数的图像", "通过描点法画出抛物线。"),
        ],
        grades=(9,),
        materials=[("video", "微课视频")],
    ),
    source(
        2,
        "统编版语文三年级上册",
        [("古诗三首", "学习《山行》《赠刘景文》《夜书所见》三首古诗。"), ("秋天的雨", "感受秋天的美。")],
        subject="chinese",
        grades=(3,),
        edition="统编版",
        materials=[("audio", "朗读音频")],
    ),
    source(
        3,
        "人教版数学五年级上册",
        [("分数的意义", "认识分数，理解分数单位。"), ("小数乘法", "计算小数乘整数。")],
        grades=(5,),
    ),
    source(
        4,
        "北师大版数学五年级上册",
        [("分数的再认识", "在具体情境中再次认识分数。")],
        grades=(5,),
        edition="北师大版",
        school_id=2,
    ),
    source(
        5,
        "Grade 7 Biology",
        [
            ("Photosynthesis", "How green plants make food from light, water and carbon dioxide."),
            ("Cell structure", "Plant and animal cells; the role of photosynthesis in leaves is revisited."),
        ],
        subject="biology",
        grades=(7,),
        edition="",
        category="after-school",
        language="en",
        license="CC0-1.0",
        materials=[("document", "Worksheet"), ("video", "Lab video")],
    ),
    source(
        6,
        "Grade 9 Mathematics",
        [("Quadratic equations", "Solving quadratic equations by factoring and by the formula.")],
        grades=(9,),
        edition="",
        language="en",
    ),
]


@pytest.fixture(scope="session")
def catalog_index(tmp_path_factory: pytest.TempPathFactory) -> SearchIndex:
    return build(tmp_path_factory.mktemp("index") / "index", CATALOG)


@pytest.fixture
def queries(catalog_index: SearchIndex) -> QueryEngine:
    return QueryEngine(catalog_index)
