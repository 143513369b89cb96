"""Textbook and chapter names in search: facets, filters, and chapter titles found in Chinese and in pinyin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.search import SearchEngine, services
from tests.conftest import Accounts
from tests.support.textbooks import BOOK_KEY, Catalog, make_catalog


@pytest.fixture
def indexed(db: Session, make: Accounts, engine: SearchEngine) -> Iterator[Catalog]:
    catalog = make_catalog(db, make)
    db.expire_all()
    for course_id in (catalog.rural, catalog.famous, catalog.draft):
        services.index_course(db, engine, course_id)
    yield catalog


def _search(client: FlaskClient, **params: Any) -> dict[str, Any]:
    answer = client.get("/api/v1/search", query_string=params)
    assert answer.status_code == 200, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


def _titles(body: dict[str, Any]) -> set[str]:
    return {hit["title"] for hit in body["hits"]}


def test_textbook_and_chapter_facets_count_and_filter(client: FlaskClient, indexed: Catalog) -> None:
    everything = _search(client, q="", per_page=50)
    # Both published courses follow the book, and four lessons are aligned; the draft is not indexed.
    assert everything["facets"]["textbook"] == {BOOK_KEY: 7}  # 2 courses + their 5 lessons
    # Chapters are a choice inside one book: none until the search is narrowed to a textbook.
    assert everything["facets"]["chapter"] == {}

    in_book = _search(client, q="", textbook=BOOK_KEY, per_page=50)
    assert in_book["total"] == 7
    # Chapter 1 holds the four aligned lessons and both courses; the others have no lesson.
    assert in_book["facets"]["chapter"] == {f"{BOOK_KEY}/1": 6}

    chapter = _search(client, q="", chapter=f"{BOOK_KEY}/1", type="lesson", per_page=50)
    assert _titles(chapter) == {"认识秒", "算时间", "秒的认识（名校）", "时间计算"}
    assert chapter["facets"]["chapter"] == {f"{BOOK_KEY}/1": 4}  # the chapter's own book is implied
    assert _search(client, q="", chapter=f"{BOOK_KEY}/3")["total"] == 0


# The chapter is named 时、分、秒: typed without the marks, whole or in part, in Chinese or pinyin.
@pytest.mark.parametrize(
    "q", ["时、分、秒", "时分秒", "时分", "shifenmiao", "shi fen miao", "sfm", "shifen", "shi fen", "fenmiao"]
)
def test_a_chapter_title_finds_its_lessons_in_chinese_and_pinyin(client: FlaskClient, indexed: Catalog, q: str) -> None:
    # "算时间" and "时间计算" do not say 秒: only their chapter's title does.
    found = _titles(_search(client, q=q, type="lesson", per_page=50))
    assert {"算时间", "时间计算"} <= found, (q, found)


def test_a_textbook_name_finds_its_courses(client: FlaskClient, indexed: Catalog) -> None:
    assert {"山区 三上数学", "名校 三上数学"} <= _titles(_search(client, q="人教版 数学 三年级 上册", type="course"))


def test_bad_chapter_values_answer_in_chinese(client: FlaskClient, indexed: Catalog) -> None:
    bad = client.get("/api/v1/search?chapter=no-slash", headers={"Accept-Language": "zh-CN"})
    assert bad.status_code == 422
    assert bad.get_json()["error"]["fields"]["chapter"] == "章节的格式不正确。"
    assert client.get("/search?textbook=" + "x" * 101).status_code == 422


def test_the_search_page_names_textbooks_and_chapters(client: FlaskClient, indexed: Catalog) -> None:
    page = client.get("/search", query_string={"q": "", "textbook": BOOK_KEY}).text
    assert "教材: <b>人教版 数学 三年级 上册</b>" in page or "教材：" in page
    assert "人教版 数学 三年级 上册" in page  # the filter, named
    assert f"chapter={BOOK_KEY}/1" in page and "时、分、秒" in page  # the chapter facet, named
    chosen = client.get("/search", query_string={"q": "", "chapter": f"{BOOK_KEY}/1"}).text
    assert "章节" in chosen and "<b>时、分、秒</b>" in chosen
