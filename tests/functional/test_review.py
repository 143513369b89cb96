"""Issue 16's course form and review step over real HTTP: a served hub with HUB_REVIEW_REQUIRED=on and a real worker.

The course form: editions listed per subject, 全一册, the attribution line on the course page.
The review step: publish submits, a reviewer of another region is refused, a return's note
reaches the uploader's page, an approval publishes the course and the worker makes it searchable,
and the history says who did what when.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from hub import create_app
from hub.accounts import services as accounts
from hub.db import get_database
from tests.conftest import COURSE, Accounts, hub_settings
from tests.functional.conftest import LiveServer, Worker, wait_until
from tests.support.browser import needs_chromium

PASSWORD = "correct horse battery"


@dataclass
class Hub:
    server: LiveServer
    uploader: dict[str, str]
    reviewer: dict[str, str]
    outsider: dict[str, str]

    def call(self, method: str, path: str, auth: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.server.api(path), headers=auth or {}, timeout=30, **kwargs)

    def search(self, q: str) -> set[str]:
        answer = self.call("GET", "/search", params={"q": q})
        assert answer.status_code == 200, answer.text
        return {hit["title"] for hit in answer.json()["hits"]}


@pytest.fixture(scope="module")
def hub(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    env = {**module_env, "HUB_REVIEW_REQUIRED": "on"}
    app = create_app(hub_settings(env))
    try:
        with get_database(app).session() as db:
            make = Accounts(db)
            school = make.school()  # region 北京市
            bureau = accounts.create_school(db, "北京市教委", "urban", "北京市", "")
            shanghai = accounts.create_school(db, "上海市教委", "urban", "上海市", "")
            db.commit()
            make.user("web@haidian.cn", school, "uploader", password=PASSWORD)
            people = [
                make.bearer(make.user("up@haidian.cn", school, "uploader")),
                make.bearer(make.user("rev@bj.gov.cn", bureau, "reviewer")),
                make.bearer(make.user("rev@sh.gov.cn", shanghai, "reviewer")),
            ]
    finally:
        get_database(app).engine.dispose()
    logs = tmp_path_factory.mktemp("review-logs")
    # Both start at once (each takes seconds to import the hub), and both stop if either fails to.
    server = LiveServer(env, logs, wait=False)
    worker = Worker(env, logs / "worker.log", wait=False)
    try:
        server.wait()
        worker.wait()
        yield Hub(server, *people)
    finally:
        worker.process.stop()
        server.process.stop()


def test_course_form_over_http(hub: Hub) -> None:
    english = hub.call("GET", "/editions", params={"subject": "english"}).json()["items"]
    assert "外研版" in {e["name"] for e in english} and "统编版" not in {e["name"] for e in english}
    whole_year = hub.call(
        "POST", "/courses", hub.uploader, json={**COURSE, "subject": "music", "edition": "人音版", "volume": "全一册"}
    )
    assert whole_year.status_code == 201, whole_year.text
    assert whole_year.json()["volume"] == "全一册"
    refused = hub.call("POST", "/courses", hub.uploader, json={**COURSE, "subject": "math", "edition": "外研版"})
    assert refused.status_code == 422 and "edition" in refused.json()["error"]["fields"]
    # The form page offers the list and the licences, explained.
    page = requests.get(f"{hub.server.url}/upload/", headers=hub.uploader, timeout=30)
    assert page.status_code == 200 and 'data-subjects="english"' in page.text and "署名-相同方式共享" in page.text


def test_review_over_http(hub: Hub) -> None:
    course = hub.call("POST", "/courses", hub.uploader, json={**COURSE, "title": "审核中的方程课"}).json()
    course_id = course["id"]
    assert hub.call("POST", f"/courses/{course_id}/lessons", hub.uploader, json={"title": "配方法审核"}).ok

    submitted = hub.call("POST", f"/courses/{course_id}/publish", hub.uploader)
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    assert hub.call("GET", f"/courses/{course_id}").status_code == 404
    queue = hub.call("GET", "/review/queue", hub.reviewer).json()["items"]
    assert [item["course"]["id"] for item in queue] == [course_id]

    outsider = hub.call("POST", f"/courses/{course_id}/approve", hub.outsider)
    assert outsider.status_code == 403, outsider.text

    returned = hub.call("POST", f"/courses/{course_id}/return", hub.reviewer, json={"note": "请补充练习题"})
    assert returned.status_code == 200 and returned.json()["status"] == "draft"
    page = requests.get(f"{hub.server.url}/upload/courses/{course_id}", headers=hub.uploader, timeout=30)
    assert "请补充练习题" in page.text and "审核员退回了这门课程" in page.text

    assert hub.call("POST", f"/courses/{course_id}/publish", hub.uploader).json()["status"] == "submitted"
    # The worker runs all along: a course waiting for review is never found.
    assert "审核中的方程课" not in hub.search("审核中的方程课")
    approved = hub.call("POST", f"/courses/{course_id}/approve", hub.reviewer)
    assert approved.status_code == 200 and approved.json()["status"] == "published"
    wait_until(lambda: "审核中的方程课" in hub.search("审核中的方程课"), 60, "the approved course in search", 0.5)
    assert "配方法审核" in hub.search("配方法审核")

    course_page = requests.get(f"{hub.server.url}/courses/{course_id}", timeout=30).text
    assert (
        f"《审核中的方程课》，作者：王老师（海淀实验小学），来源：{hub.server.url}/courses/{course_id}" in course_page
    )

    history = hub.call("GET", f"/courses/{course_id}/history", hub.uploader).json()["items"]
    assert [(e["action"], e["by"]) for e in history] == [
        ("submitted", "up@haidian.cn"),
        ("returned", "rev@bj.gov.cn"),
        ("submitted", "up@haidian.cn"),
        ("approved", "rev@bj.gov.cn"),
    ]
    assert history[1]["note"] == "请补充练习题"
    assert history[0]["at"] <= history[-1]["at"]


@needs_chromium
@pytest.mark.usefixtures("no_csp_violations")
def test_course_form_script_in_chromium(hub: Hub, browser: Any) -> None:
    """On a 360 px phone: editions follow the subject, "other" opens its field, the attribution line follows."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        page.goto(f"{hub.server.url}/login")
        page.fill("input[name=email]", "web@haidian.cn")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{hub.server.url}/upload/")
        assert page.is_hidden("#course-edition-other")  # free text only for "other"
        page.select_option("#course-subject", "english")
        assert page.eval_on_selector("#course-edition option[value='统编版']", "o => o.hidden && o.disabled")
        assert page.eval_on_selector("#course-edition option[value='外研版']", "o => !o.hidden && !o.disabled")
        page.select_option("#course-edition", "other")
        assert page.is_visible("#course-edition-other")
        page.fill("#course-edition-other", "新标准")
        page.fill("#course-title", "七年级英语")
        page.fill("#course-teacher", "李老师")
        page.check("input[name=license][value='CC-BY-NC-4.0']")
        assert page.inner_text("#attribution-preview") == (
            "《七年级英语》，作者：李老师（海淀实验小学），来源：本平台上的课程页，采用 CC BY-NC 4.0 许可协议。"
        )
        page.check("input[name=grades][value='7']")
        page.click("form.stack button[type=submit]")
        page.wait_for_url("**/upload/courses/*")
        course_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
        course = hub.call("GET", f"/courses/{course_id}", hub.uploader).json()
        assert (course["edition"], course["license"]) == ("新标准", "CC-BY-NC-4.0")
    finally:
        context.close()
