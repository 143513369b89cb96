"""The reach dashboard in Chromium at 360 px and 1280 px, in Chinese and in English.

A real `hub serve`; a county supervisor signs in through the form and opens the reach
page (by school, with its SVG charts) and the coverage page. Nothing may be wider than
the screen, the Chinese side has no English words, the page runs under the hub's CSP;
screenshots go to test-artifacts/ to be looked at.
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
from hub.catalog.models import Course, Lesson
from hub.db import utcnow
from hub.reach import rollup
from hub.reach.models import UsageCount
from hub.sync.models import Subscription
from tests.conftest import Accounts
from tests.functional.conftest import LiveServer
from tests.support.browser import CHROMIUM, chromium
from tests.support.chinese import english_words

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "a long password"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def site(app: Flask, db: Session, make: Accounts, hub_env: dict[str, str], tmp_path: Path) -> Iterator[LiveServer]:
    famous = accounts.create_school(db, "北京市海淀区实验小学", "famous", "北京市", "海淀区")
    bureau = accounts.create_school(db, "通渭县教育局", "urban", "甘肃省 定西市", "通渭县")
    rural = [
        accounts.create_school(db, name, "rural", "甘肃省 定西市", "通渭县")
        for name in ("山村小学", "马营镇中心小学（一个很长的校名）", "新建小学")
    ]
    db.flush()
    courses = []
    for i, (title, subject, grade) in enumerate(
        [("一元二次方程", "math", 9), ("古诗两首", "chinese", 3), ("认识钟表", "math", 1)]
    ):
        course = Course(
            school_id=famous.id, title=title, category="curriculum", subject=subject, grades_mask=1 << grade,
            language="zh", license="CC-BY-4.0", status="published",
        )  # fmt: skip
        db.add(course)
        db.flush()
        db.add_all([Lesson(course_id=course.id, position=p, title=f"第{p}课") for p in (1, 2)])
        courses.append(course)
        if i < 2:
            accounts.pair_schools(db, famous, rural[i])
    db.add(Subscription(school_id=rural[0].id, kind="paired", paired_school_id=famous.id))
    db.add(Subscription(school_id=rural[1].id, kind="subject", subject="chinese", grade_min=1, grade_max=6))
    db.flush()
    lessons = {c.id: [lesson.id for lesson in db.query(Lesson).filter_by(course_id=c.id)] for c in courses}
    today = utcnow().date()
    for week in range(8):
        for i, school in enumerate(rural):
            for course in courses[: 3 - i]:
                for kind, count in (("play", 3 + week * (3 - i)), ("download", 1 + week)):
                    db.add(UsageCount(day=today - timedelta(days=7 * week + i), school_id=school.id,
                                      course_id=course.id, lesson_id=lessons[course.id][0], material_id=1,
                                      kind=kind, source="lan", count=count))  # fmt: skip
    accounts.create_user(db, "sup@tongwei.gov.cn", bureau, "supervisor", PASSWORD, county="通渭县")
    db.commit()
    rollup.roll_up(db, check_days=None, everything=True)
    server = LiveServer(hub_env, tmp_path)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_the_dashboard_on_a_phone_and_a_desktop(site: LiveServer, locale: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with chromium() as browser:
        for width in (360, 1280):
            context = browser.new_context(
                viewport={"width": width, "height": 800}, locale=locale, is_mobile=width < 400
            )
            page: Any = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(site.url + "/login?next=/reach/")
            page.fill("input[name=email]", "sup@tongwei.gov.cn")
            page.fill("input[name=password]", PASSWORD)
            page.click("form button[type=submit]")
            page.wait_for_url("**/reach/")
            for path, name in (("/reach/?group_by=school", "reach"), ("/reach/coverage", "coverage")):
                page.goto(site.url + path)
                html = page.content()
                assert ("山村小学" in html and "<svg" in html) or name == "coverage"
                if locale.startswith("zh"):
                    assert english_words(html) == [], (path, english_words(html))
                page.screenshot(path=str(ARTIFACTS / f"{locale[:2]}-{width}-reach-{name}.png"), full_page=True)
                overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert overflow <= 0, f"{path} is {overflow}px wider than a {width}px screen"
            assert not [e for e in errors if "Content Security Policy" in e], errors
            context.close()
