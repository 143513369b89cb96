"""Browse by my textbook, the course list's edition and volume filters, and a lesson page's textbook links.

Textbooks are made here through the models (a small book, not an import format): the
import service is hub.textbooks.services' business.
"""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.catalog import services
from hub.catalog.models import Lesson
from hub.textbooks.models import Textbook
from tests.conftest import Accounts
from tests.support.textbooks import BOOK_KEY, Catalog, aligned_course, make_catalog


@pytest.fixture
def catalog(db: Session, make: Accounts) -> Catalog:
    return make_catalog(db, make)


def _lesson_id(db: Session, title: str) -> int:
    return db.query(Lesson).filter_by(title=title).one().id


def test_pick_remembers_the_book_in_a_cookie(client: FlaskClient, catalog: Catalog) -> None:
    first = client.get("/textbook")  # nothing picked yet: the picker, with the books this hub has
    assert first.status_code == 200
    assert "按我的教材浏览" in first.text and "人教版 数学 三年级 上册" in first.text
    assert "hub_textbook" not in first.headers.get("Set-Cookie", "")

    picked = client.get("/textbook?subject=math&edition=人教版&grade=3&volume=上册")
    assert picked.status_code == 200
    cookie = picked.headers["Set-Cookie"]
    assert cookie.startswith(f"hub_textbook={BOOK_KEY};") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "时、分、秒" in picked.text and "秒的认识" in picked.text

    again = client.get("/textbook")  # the cookie brings the tree back, no form
    assert again.status_code == 200 and 'class="toc"' in again.text
    assert "Set-Cookie" not in again.headers
    home = client.get("/")
    assert "我的教材：" in home.text and "人教版 数学 三年级 上册" in home.text

    change = client.get("/textbook?change=1")  # the way to change the book: the picker, starting from this one
    assert 'class="toc"' not in change.text
    assert re.search(r'<option value="3" selected>三年级</option>', change.text)
    assert "当前：人教版 数学 三年级 上册" in change.text
    assert "本站没有符合所选条件的教材" not in change.text

    client.set_cookie("hub_textbook", "a-book-since-removed")
    assert "选一次您手边的教材" in client.get("/textbook").text  # a stale cookie is simply no choice


def test_tree_lists_every_schools_lessons_famous_first_with_gaps_shown(client: FlaskClient, catalog: Catalog) -> None:
    page = client.get(f"/textbook?book={BOOK_KEY}").text
    # Famous school first under 1.1, although the rural course was published earlier.
    assert page.index("秒的认识（名校）") < page.index("认识秒")
    assert page.index("时间计算") < page.index("算时间")
    assert "单元复习" not in page  # not attached to a node
    assert "草稿课" not in page  # a draft course's lesson is nobody's to browse
    # The gaps: 2.1 has only a draft's lesson, chapter 3 nothing at all.
    node_21 = page[page.index('id="node-2.1"') :]
    assert "暂无课例" in node_21[: node_21.index("</li>")]
    assert page.count("暂无课例") == 3  # chapter 2, its 2.1, chapter 3
    assert "4 个课时中 2 个已有课例" in page  # the leaves 1.1, 1.2, 2.1 and chapter 3 (no sections yet)
    assert "4 个课例" in page  # chapter 1's subtree
    assert "2 门课程使用本教材" in page
    assert f'<input type="hidden" name="textbook" value="{BOOK_KEY}">' in page  # search within the book
    assert page.index("名校 三上数学") < page.index("山区 三上数学")


def test_picker_answers_bad_and_unknown_choices_in_chinese(client: FlaskClient, catalog: Catalog) -> None:
    bad = client.get("/textbook?grade=12")
    assert bad.status_code == 422 and "年级不能大于 9。" in bad.text
    bad_volume = client.get("/textbook?volume=中册")
    assert bad_volume.status_code == 422 and "“中册”" in bad_volume.text
    none = client.get("/textbook?subject=math&grade=9")
    assert none.status_code == 404
    assert "本站没有符合所选条件的教材" in none.text and "Set-Cookie" not in none.headers
    missing = client.get("/textbook?book=no-such-book")
    assert missing.status_code == 404


def test_several_books_fit_pick_one(client: FlaskClient, db: Session, catalog: Catalog) -> None:
    db.add(
        Textbook(
            key="renjiao-math-3-2", subject="math", edition="人教版", grade=3, volume="下册", title="数学 三年级 下册"
        )
    )
    db.commit()
    several = client.get("/textbook?subject=math&grade=3")
    assert several.status_code == 200 and "有 2 本教材符合，请选择：" in several.text
    assert "Set-Cookie" not in several.headers  # nothing chosen until one is
    assert 'href="/textbook?book=renjiao-math-3-2"' in several.text


def test_an_alias_finds_the_listed_edition(client: FlaskClient, db: Session) -> None:
    db.add(
        Textbook(
            key="tongbian-chinese-1-1",
            subject="chinese",
            edition="统编版",
            grade=1,
            volume="上册",
            title="语文 一年级 上册",
        )
    )
    db.commit()
    picked = client.get("/textbook?edition=部编版&grade=1")
    assert picked.status_code == 200 and "统编版 语文 一年级 上册" in picked.text
    assert picked.headers["Set-Cookie"].startswith("hub_textbook=tongbian-chinese-1-1;")


def test_course_list_filters_by_edition_and_volume(client: FlaskClient, db: Session, make: Accounts) -> None:
    user = make.user("u@x.cn", make.school())
    one = [("第一课", None)]
    aligned_course(db, user, "人教 上册", one)
    aligned_course(db, user, "人教 下册", one, volume="下册")
    aligned_course(db, user, "北师 上册", one, edition="北师大版")
    aligned_course(db, user, "统编 语文", one, subject="chinese", edition="统编版")

    def titles(url: str) -> set[str]:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        return {c["title"] for c in answer.json["items"]}  # type: ignore[index]

    assert titles("/api/v1/courses?volume=下册") == {"人教 下册"}
    assert titles("/api/v1/courses?edition=人教版&volume=上册") == {"人教 上册"}
    assert titles("/api/v1/courses?edition=部编版") == {"统编 语文"}  # an alias means its listed edition
    html = client.get("/courses?edition=人教版&volume=上册").text
    assert "人教 上册" in html and "人教 下册" not in html and "北师 上册" not in html
    assert re.search(r"<option selected>上册</option>", html)
    assert "<option selected>人教版</option>" in html
    assert "<option selected>统编版</option>" in client.get("/courses?edition=部编版").text

    bad = client.get("/api/v1/courses?volume=中册", headers={"Accept-Language": "zh-CN"})
    assert bad.status_code == 422
    assert bad.json["error"]["fields"]["volume"] == "册：“中册” 不是可选的值。"  # type: ignore[index]
    page = client.get("/courses?volume=中册")
    assert page.status_code == 422 and "“中册”" in page.text
    long = client.get("/courses?edition=" + "版" * 51)
    assert long.status_code == 422 and "教材版本最多 50 个字符" in long.text


def test_lesson_page_links_its_neighbours_and_the_same_node_elsewhere(
    client: FlaskClient, db: Session, catalog: Catalog
) -> None:
    rural_lesson = _lesson_id(db, "认识秒")
    page = client.get(f"/lessons/{rural_lesson}").text
    assert f'rel="next" href="/lessons/{_lesson_id(db, "算时间")}"' in page
    assert 'rel="prev"' not in page
    assert "教材：" in page and f"/textbook?book={BOOK_KEY}#node-1.1" in page
    others = page[page.index("本课时的其他课例") :]
    assert "秒的认识（名校）" in others and "名校" in others
    assert "认识秒" not in others  # its own course's lessons are the previous/next links, not "others"

    famous_lesson = _lesson_id(db, "时间计算")
    page = client.get(f"/lessons/{famous_lesson}").text
    assert f'rel="prev" href="/lessons/{_lesson_id(db, "秒的认识（名校）")}"' in page
    assert f'rel="next" href="/lessons/{_lesson_id(db, "单元复习")}"' in page
    assert "算时间" in page[page.index("本课时的其他课例") :]

    unaligned = client.get(f"/lessons/{_lesson_id(db, '单元复习')}").text
    assert "本课时的其他课例" not in unaligned and "教材：" not in unaligned


def test_other_lessons_put_famous_schools_first(db: Session, catalog: Catalog, make: Accounts) -> None:
    urban = make.user("u@x.cn", make.school("县城小学", "urban"))
    aligned_course(db, urban, "县城 三上", [("秒（县城）", catalog.nodes["1.1"])])
    listed = services.node_lessons(db, catalog.nodes["1.1"].id)
    assert [(one.title, one.famous) for one in listed] == [
        ("秒的认识（名校）", True),
        ("秒（县城）", False),  # the newest of the others next
        ("认识秒", False),
    ]
