"""The upstream's admin page of school servers in Chromium on a 360 px phone, in Chinese and in English.

A real `hub serve`; one school server in touch, one silent for a month, one never
in touch. The admin signs in through the form; nothing on the page may be wider than
the screen, and the page runs under the hub's Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.db import utcnow
from hub.sync import servers, services
from tests.conftest import Accounts
from tests.functional.conftest import LiveServer
from tests.support.browser import CHROMIUM, chromium

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 360, "height": 740}

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def site(app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path) -> Iterator[LiveServer]:
    famous = make.school("海淀实验小学", "famous")
    bureau = make.school("通渭县教育局", "urban")
    make.user("admin@bureau.cn", bureau, "admin", password="a long password")
    report = servers.ServerReportIn(
        manifest_version=12,
        applied_version=12,
        courses=48,
        storage_used=37 * 1024**3,
        storage_free=410 * 1024**3,
        storage_budget=200 * 1024**3,
        host_name="shancunxiaoxuexiaoxuefenxiao",
    )
    for index, (name, age) in enumerate(
        [("山村小学", 0), ("马营镇中心小学（一个很长的校名）", 30), ("新建小学", None)]
    ):
        school = accounts.create_school(db, name, "rural", "甘肃省", "通渭县")
        accounts.pair_schools(db, famous, school)
        services.subscribe(db, school, paired_with=famous.name)
        if index < 2:
            services.subscribe(db, school, subject="math", grades=(7, 9))
        make.token(make.user(f"server{index}@shancun.example", school, "teacher"), "sync")
        if age is not None:
            servers.record_report(db, school, report, now=utcnow() - timedelta(days=age))
    db.commit()
    server = LiveServer(hub_env, tmp_path)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh-CN", ["学校服务器", "失联", "从未联系", "联系正常", "数学 · 七至九年级", "已用 37.0 GB"]),
        ("en-US", ["School servers", "Silent", "Never in touch", "In touch", "Grades 7–9", "37.0 GB used"]),
    ],
)
def test_the_school_servers_page_on_a_phone(site: LiveServer, locale: str, expected: list[str]) -> None:
    with chromium() as browser:
        context = browser.new_context(viewport=PHONE, locale=locale, is_mobile=True)
        page: Any = context.new_page()
        page.goto(site.url + "/login?next=/admin/servers/")
        page.fill("input[name=email]", "admin@bureau.cn")
        page.fill("input[name=password]", "a long password")
        page.click("form button[type=submit]")
        page.wait_for_url("**/admin/servers/")
        text = page.locator("main").inner_text()
        for words in expected:
            assert words in text, (words, text)
        # Silent and never-in-touch servers first: they are what the page is opened for.
        names = page.locator("li.server h2").all_inner_texts()
        assert [n.split("\n")[0].split(" ")[0] for n in names][2].startswith("山村小学"), names
        assert page.locator("header a[href='/admin/servers/']").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{locale[:2]}-admin-servers.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a 360px screen"
        context.close()
