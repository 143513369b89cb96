"""Issue 18's "browse by my textbook" on a phone, in Chinese.

Chromium at 360 px asking for Chinese, against a served hub: a teacher finds the browse
page from the home page, picks 人教版 数学 三年级 上册, sees the chapter tree with every
school's lessons (famous first) and the chapters nobody has taught yet, opens a lesson,
moves to the next and back without returning to the tree, and follows "other lessons for
this 课时" to another school's lesson. The choice outlives the visit: the home page names
the book and the nav's link opens the tree directly. Every page is read as a Chinese
reader sees it: no English word, nothing wider than the screen, no CSP violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import create_app
from hub.db import get_database
from tests.conftest import Accounts, hub_settings
from tests.functional.conftest import LiveServer
from tests.support.browser import needs_chromium
from tests.support.chinese import english_words
from tests.support.textbooks import make_catalog

pytestmark = [pytest.mark.slow, needs_chromium, pytest.mark.usefixtures("no_csp_violations")]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    app = create_app(hub_settings(module_env))
    try:
        with get_database(app).session() as db:
            make_catalog(db, Accounts(db))
    finally:
        get_database(app).engine.dispose()
    live = LiveServer(module_env, tmp_path_factory.mktemp("textbook"))
    try:
        yield live
    finally:
        live.process.stop()


def _read_as_a_chinese_reader(page: Any, name: str) -> None:
    """No English word on the page, nothing wider than the phone; a screenshot for a person to look at."""
    page.wait_for_load_state()
    assert english_words(page.content()) == [], f"{name}: {page.url}"
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: {overflow}px wider than the screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"textbook-{name}.png"), full_page=True)


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
        _read_as_a_chinese_reader(page, "pick")

        page.select_option("select[name=subject]", "math")
        page.select_option("select[name=edition]", "人教版")
        page.select_option("select[name=grade]", "3")
        page.select_option("select[name=volume]", "上册")
        page.click("main form button[type=submit]")
        page.wait_for_url("**/textbook?*")
        _read_as_a_chinese_reader(page, "tree")
        assert page.inner_text("h1") == "人教版 数学 三年级 上册"
        chapters = page.locator("ol.toc > li > .node-title .t").all_inner_texts()
        assert chapters == ["时、分、秒", "万以内的加法和减法（一）", "测量"]
        # Famous school first under 秒的认识; the gaps say so.
        assert page.locator("#node-1\\.1 .node-lessons a").all_inner_texts() == ["秒的认识（名校）", "认识秒"]
        assert page.locator("#node-2\\.1 .count.empty").inner_text() == "暂无课例"
        assert page.locator("#node-3 .count.empty").inner_text() == "暂无课例"

        # A lesson under the chapter, then next and previous without going back to the tree.
        page.click("#node-1\\.1 .node-lessons a:has-text('秒的认识（名校）')")
        page.wait_for_url("**/lessons/*")
        _read_as_a_chinese_reader(page, "lesson")
        assert page.inner_text("h1") == "秒的认识（名校）"
        assert "人教版 数学 三年级 上册 · 秒的认识" in page.inner_text("main")
        page.click("a[rel=next]")
        page.wait_for_load_state()
        assert page.inner_text("h1") == "时间计算"
        _read_as_a_chinese_reader(page, "lesson-next")
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
        _read_as_a_chinese_reader(page, "lesson-other-school")

        # The choice is remembered: the home page names the book, the nav opens the tree.
        page.goto(base + "/")
        assert page.inner_text("p.my-book a").startswith("人教版 数学 三年级 上册")
        assert page.inner_text("p.my-book").startswith("我的教材：")
        _read_as_a_chinese_reader(page, "home-remembered")
        page.click("header nav a:has-text('我的教材')")
        page.wait_for_url(base + "/textbook")
        assert page.locator("ol.toc").count() == 1
        page.click("main a:has-text('换一本教材')")
        page.wait_for_load_state()
        assert page.locator("ol.toc").count() == 0
        assert page.locator("select[name=grade]").input_value() == "3"
        assert page.locator("main .alert").count() == 0  # nothing was asked yet: no "no textbook fits"
        _read_as_a_chinese_reader(page, "change")
        assert errors == []
    finally:
        context.close()
