"""Issue 18's "browse by my textbook" on a phone, in Chinese.

Chromium at 360 px asking for Chinese, against a served hub with the shipped 人教版 数学
三年级上册 (hub/textbooks/data) imported: a teacher finds the browse
page from the home page, picks 人教版 数学 三年级 上册, sees the chapter tree with every
school's lessons (famous first) and the chapters nobody has taught yet, opens a lesson,
moves to the next and back without returning to the tree, and follows "other lessons for
this 课时" to another school's lesson. The choice outlives the visit: the home page names
the book and the nav's link opens the tree directly. Every page is read as a Chinese
reader sees it: no English word, nothing wider than the screen, no CSP violation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hub.textbooks
from hub import create_app
from hub.db import get_database
from tests.conftest import Accounts, hub_settings
from tests.functional.conftest import LiveServer
from tests.support.browser import needs_chromium, read_as_a_chinese_reader
from tests.support.textbooks import BOOK_KEY, make_catalog

pytestmark = [pytest.mark.slow, needs_chromium, pytest.mark.usefixtures("no_csp_violations")]


@pytest.fixture(scope="module")
def server(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    app = create_app(hub_settings(module_env))
    try:
        with get_database(app).session() as db:
            make_catalog(db, Accounts(db), shipped=True)
    finally:
        get_database(app).engine.dispose()
    live = LiveServer(module_env, tmp_path_factory.mktemp("textbook"))
    try:
        yield live
    finally:
        live.process.stop()


def test_a_teacher_browses_her_textbook_on_a_phone_in_chinese(server: LiveServer, browser: Any) -> None:
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True, has_touch=True
    )
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = server.url
    try:
        page.goto(base + "/")
        page.click("main a:has-text('按我的教材浏览')")
        page.wait_for_url(base + "/textbook")
        read_as_a_chinese_reader(page, "textbook-pick")

        page.select_option("select[name=subject]", "math")
        page.select_option("select[name=edition]", "人教版")
        page.select_option("select[name=grade]", "3")
        page.select_option("select[name=volume]", "上册")
        page.click("main form button[type=submit]")
        page.wait_for_url("**/textbook?*")
        read_as_a_chinese_reader(page, "textbook-tree")
        assert page.inner_text("h1") == "人教版 数学 三年级 上册"
        # The shipped table of contents, every chapter in book order.
        shipped = json.loads((Path(hub.textbooks.__file__).parent / "data" / f"{BOOK_KEY}.json").read_text())
        chapters = page.locator("ol.toc > li > .node-title .t").all_inner_texts()
        assert chapters == [node["title"] for node in shipped["nodes"]]
        assert chapters[0] == "第一单元 时、分、秒" and len(chapters) == 10
        # Famous school first under 秒的认识; the gaps say so.
        assert page.locator("#node-1\\.1 .node-lessons a").all_inner_texts() == ["秒的认识（名校）", "认识秒"]
        assert page.locator("#node-2\\.1 > .node-title .count.empty").inner_text() == "暂无课例"
        assert page.locator("#node-3 > .node-title .count.empty").inner_text() == "暂无课例"
        assert page.locator("#node-3\\.3 > .node-title .count.empty").inner_text() == "暂无课例"  # 吨的认识

        # A lesson under the chapter, then next and previous without going back to the tree.
        page.click("#node-1\\.1 .node-lessons a:has-text('秒的认识（名校）')")
        page.wait_for_url("**/lessons/*")
        read_as_a_chinese_reader(page, "textbook-lesson")
        assert page.inner_text("h1") == "秒的认识（名校）"
        assert "人教版 数学 三年级 上册 · 秒的认识" in page.inner_text("main")
        page.click("a[rel=next]")
        page.wait_for_load_state()
        assert page.inner_text("h1") == "时间计算"
        read_as_a_chinese_reader(page, "textbook-lesson-next")
        page.click("a[rel=prev]")
        page.wait_for_load_state()
        assert page.inner_text("h1") == "秒的认识（名校）"

        # The same 课时 taught by another school.
        others = page.locator("section.same-node")
        assert others.locator("h2").inner_text() == "本课时的其他课例"
        others.locator("a:has-text('认识秒')").click()
        page.wait_for_load_state()
        assert page.inner_text("h1") == "认识秒"
        assert "山区 三上数学" in page.inner_text("p.crumbs")
        read_as_a_chinese_reader(page, "textbook-lesson-other-school")

        # The choice is remembered: the home page names the book, the nav opens the tree.
        page.goto(base + "/")
        assert page.inner_text("p.my-book a").startswith("人教版 数学 三年级 上册")
        assert page.inner_text("p.my-book").startswith("我的教材：")
        read_as_a_chinese_reader(page, "textbook-home-remembered")
        page.click("header nav a:has-text('我的教材')")
        page.wait_for_url(base + "/textbook")
        assert page.locator("ol.toc").count() == 1
        page.click("main a:has-text('换一本教材')")
        page.wait_for_load_state()
        assert page.locator("ol.toc").count() == 0
        assert page.locator("select[name=grade]").input_value() == "3"
        assert page.locator("main .alert").count() == 0  # nothing was asked yet: no "no textbook fits"
        read_as_a_chinese_reader(page, "textbook-change")
        assert errors == []
    finally:
        context.close()
