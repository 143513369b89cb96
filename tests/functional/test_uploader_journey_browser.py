"""Issue 16's whole journey on a phone, in Chinese: an uploader makes a course and fixes it before publishing.

Chromium at 360 px asking for Chinese, against a served hub: sign in (lands on the dashboard),
create a course with the form, add three lessons without leaving the course page, upload a video
to one of them through the page's resumable upload, move a lesson, fix a title, delete a lesson
and publish. Every page on the way is read as a Chinese reader sees it: no English word, nothing
wider than the screen. The API then says the course is what the pages made of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from hub import create_app
from hub.db import get_database
from tests.conftest import Accounts, hub_settings
from tests.functional.conftest import LiveServer
from tests.support.browser import needs_chromium, read_as_a_chinese_reader
from tests.support.chinese import english_words
from tests.support.media import lesson_video

pytestmark = [pytest.mark.slow, needs_chromium, pytest.mark.usefixtures("no_csp_violations")]

EMAIL, PASSWORD = "journey@haidian.cn", "a long password"


@dataclass
class Hub:
    server: LiveServer
    auth: dict[str, str]
    files: Path

    def course(self, course_id: int) -> dict[str, Any]:
        answer = requests.get(self.server.api(f"/courses/{course_id}"), headers=self.auth, timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def lessons(self, course_id: int) -> list[dict[str, Any]]:
        answer = requests.get(self.server.api(f"/courses/{course_id}/lessons"), headers=self.auth, timeout=30)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])


@pytest.fixture(scope="module")
def hub(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    files = tmp_path_factory.mktemp("journey")
    app = create_app(hub_settings(module_env))
    try:
        with get_database(app).session() as db:
            make = Accounts(db)
            auth = make.bearer(make.user(EMAIL, make.school(), "uploader", password=PASSWORD))
    finally:
        get_database(app).engine.dispose()
    server = LiveServer(module_env, files)
    try:
        yield Hub(server, auth, files)
    finally:
        server.process.stop()


def test_create_fill_fix_and_publish_a_course_on_a_phone_in_chinese(hub: Hub, browser: Any) -> None:
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True, has_touch=True
    )
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = hub.server.url
    try:
        page.goto(base + "/login")
        read_as_a_chinese_reader(page, "journey-login")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.click("main form button[type=submit]")
        page.wait_for_url(base + "/upload/")
        read_as_a_chinese_reader(page, "journey-dashboard")

        page.fill("#course-title", "一元二次方程")
        page.select_option("#course-subject", "math")
        page.check("input[name=grades][value='9']")
        page.select_option("#course-edition", "人教版")
        page.fill("#course-teacher", "王老师")
        page.check("input[name=license][value='CC-BY-SA-4.0']")
        page.click("form.stack button[type=submit]")
        page.wait_for_url("**/upload/courses/*")
        course_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
        read_as_a_chinese_reader(page, "journey-course-new")

        # Three lessons, one after another, without leaving the course page.
        for title in ("配方法", "公式法", "因式分解法"):
            page.fill("#add-lesson + form input[name=title]", title)
            page.click("#add-lesson + form button[type=submit]")
            page.wait_for_load_state()
            assert f"/upload/courses/{course_id}" in page.url
            assert f"已添加课时“{title}”" in page.inner_text("p.notice")
        read_as_a_chinese_reader(page, "journey-course-three-lessons")
        lessons = {lesson["title"]: lesson["id"] for lesson in hub.lessons(course_id)}
        assert list(lessons) == ["配方法", "公式法", "因式分解法"]

        # A video for the first lesson, through the page's resumable upload.
        video = lesson_video(hub.files / "配方法 课堂实录.mp4")
        page.goto(f"{base}/upload/lessons/{lessons['配方法']}")
        page.set_input_files("#upload-form input[type=file]", str(video))
        page.fill("#upload-form input[name=title]", "配方法课堂实录")
        page.click("#upload-form button[type=submit]")
        page.locator("#transfers li .state", has_text="已添加").wait_for()
        read_as_a_chinese_reader(page, "journey-lesson-uploaded")

        # 因式分解法 moves up, above 公式法, with the up button (a form: no script needed).
        page.goto(f"{base}/upload/courses/{course_id}")
        page.click(f"#lesson-{lessons['因式分解法']} button[name=up]")
        page.wait_for_load_state()
        read_as_a_chinese_reader(page, "journey-course-reordered")
        assert page.locator("ol.lessons > li > a").all_inner_texts() == ["配方法", "因式分解法", "公式法"]
        assert [lesson["title"] for lesson in hub.lessons(course_id)] == ["配方法", "因式分解法", "公式法"]

        # A title fixed on the lesson's page.
        page.goto(f"{base}/upload/lessons/{lessons['公式法']}")
        page.click("#edit-lesson summary")
        page.fill("#edit-lesson input[name=title]", "公式法解一元二次方程")
        page.click("#edit-lesson form.stack button[type=submit]")
        page.wait_for_load_state()
        read_as_a_chinese_reader(page, "journey-lesson-retitled")

        # A lesson deleted (it asks for a tick first).
        page.goto(f"{base}/upload/lessons/{lessons['因式分解法']}")
        page.click("#edit-lesson summary")
        page.check("form.danger input[name=confirm]")
        page.click("form.danger button[type=submit]")
        page.wait_for_url(f"**/upload/courses/{course_id}*")
        read_as_a_chinese_reader(page, "journey-course-after-delete")

        page.click("button:has-text('发布课程')")
        page.wait_for_load_state()
        read_as_a_chinese_reader(page, "journey-course-published")

        assert hub.course(course_id)["status"] == "published"
        made = hub.lessons(course_id)
        assert [lesson["title"] for lesson in made] == ["配方法", "公式法解一元二次方程"]
        assert [m["title"] for m in made[0]["materials"]] == ["配方法课堂实录"]
        public = requests.get(f"{base}/courses/{course_id}", headers={"Accept-Language": "zh-CN"}, timeout=30)
        assert public.status_code == 200 and english_words(public.text) == []
        assert errors == []
    finally:
        context.close()
