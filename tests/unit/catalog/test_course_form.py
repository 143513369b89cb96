"""The course form: textbook editions from a list per subject, 全一册, licences explained, the attribution line."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from hub.catalog import editions
from hub.catalog.models import Course
from tests.conftest import COURSE, Accounts
from tests.unit.uploads.test_views import _csrf, _signed_in


@pytest.fixture
def uploader(make: Accounts) -> dict[str, str]:
    return make.bearer(make.user("up@haidian.cn", make.school(), "uploader"))


def _post(client: FlaskClient, auth: dict[str, str], **changes: Any) -> Any:
    return client.post("/api/v1/courses", json={**COURSE, **changes}, headers=auth)


# ------------------------------------------------------------------ the list


def test_the_list_knows_its_subjects() -> None:
    names = {e.name for e in editions.editions()}
    assert {"人教版", "北师大版", "苏教版", "统编版", "沪教版", "外研版", "湘教版"} <= names
    assert editions.find("部编版") is editions.find("统编版")  # one book, two names
    assert all(e.subjects for e in editions.editions())
    assert "外研版" not in {e.name for e in editions.for_subject("math")}
    assert len(editions.for_subject(None)) == len(editions.editions())


def test_api_lists_the_editions_of_a_subject(client: FlaskClient) -> None:
    english = client.get("/api/v1/editions?subject=english")
    assert english.status_code == 200
    names = [e["name"] for e in english.json["items"]]
    assert "外研版" in names and "人教版" in names and "统编版" not in names
    assert all("english" in e["subjects"] for e in english.json["items"])
    assert english.json["other"] == "other"
    everything = client.get("/api/v1/editions").json["items"]
    assert len(everything) == len(editions.editions())
    assert client.get("/api/v1/editions?subject=latin").status_code == 422
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "/api/v1/editions" in paths


# ------------------------------------------------------------------ the API validates


def test_api_takes_listed_editions_aliases_and_other(client: FlaskClient, uploader: dict[str, str]) -> None:
    alias = _post(client, uploader, subject="chinese", edition="部编版")
    assert alias.status_code == 201, alias.json
    assert alias.json["edition"] == "统编版"  # stored under its one listed name

    other = _post(client, uploader, subject="math", edition="other", edition_other="粤教版")
    assert other.status_code == 201 and other.json["edition"] == "粤教版"
    typed_listed = _post(client, uploader, subject="math", edition="other", edition_other="北师大版")
    assert typed_listed.json["edition"] == "北师大版"
    assert _post(client, uploader, edition="").json["edition"] == ""

    whole_year = _post(client, uploader, subject="music", edition="人音版", volume="全一册")
    assert whole_year.status_code == 201 and whole_year.json["volume"] == "全一册"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"subject": "math", "edition": "外研版"}, "外研版 publishes no textbooks for this subject"),
        ({"edition": "火星版"}, "火星版 is not in the list of editions"),
        ({"edition": "other"}, "Type the edition's name"),
        ({"edition": "人教版", "edition_other": "粤教版"}, "only after choosing “other”"),
        ({"volume": "中册"}, "volume"),
    ],
)
def test_api_refuses_editions_that_do_not_fit(
    client: FlaskClient, uploader: dict[str, str], changes: dict[str, str], words: str
) -> None:
    refused = _post(client, uploader, **changes)
    assert refused.status_code == 422, refused.json
    error = refused.json["error"]
    assert words in error["message"] or words in error["fields"]
    assert "edition" in error["fields"] or "volume" in error["fields"]


def test_patch_checks_the_edition_against_the_subject(
    client: FlaskClient, uploader: dict[str, str], db: Session
) -> None:
    course = _post(client, uploader, subject="english", edition="外研版").json
    url = f"/api/v1/courses/{course['id']}"
    moved = client.patch(url, json={"subject": "math"}, headers=uploader)
    assert moved.status_code == 422 and moved.json["error"]["fields"]["edition"]
    both = client.patch(url, json={"subject": "math", "edition": "北师大版"}, headers=uploader)
    assert both.status_code == 200 and both.json["edition"] == "北师大版"
    assert client.patch(url, json={"edition": "外研版"}, headers=uploader).status_code == 422

    # A course saved before the list, with free text: still valid, still shown, still editable.
    db.execute(update(Course).where(Course.id == course["id"]).values(edition="人教 新版"))
    db.commit()
    assert client.get(url, headers=uploader).json["edition"] == "人教 新版"
    kept = client.patch(url, json={"title": "新标题", "edition": "人教 新版", "subject": "english"}, headers=uploader)
    assert kept.status_code == 200, kept.json
    assert kept.json["edition"] == "人教 新版"


# ------------------------------------------------------------------ the page


def _option(html: str, name: str) -> str:
    match = re.search(rf'<option value="{name}"[^>]*>', html)
    assert match, f"{name} is offered"
    return match.group(0)


def test_form_offers_the_editions_of_the_chosen_subject(app: Flask, make: Accounts, db: Session) -> None:
    client = _signed_in(app, make)
    page = client.get("/upload/")
    assert page.status_code == 200
    # No subject yet: every edition, none hidden; 全一册 besides 上册/下册; "other" last.
    assert "hidden" not in _option(page.text, "外研版") and "hidden" not in _option(page.text, "统编版")
    assert "<option >全一册</option>" in page.text or ">全一册</option>" in page.text
    assert _option(page.text, "other")
    assert page.text.count('src="/static/course-form.js') == 1
    assert "<title>上传" in page.text and "script" not in page.text.split("</title>")[0].split("<title>")[1]

    form: dict[str, Any] = {**COURSE, "csrf_token": _csrf(page.text), "grades": ["3"]}
    refused = client.post("/upload/courses", data={**form, "subject": "english", "edition": "统编版"})
    assert refused.status_code == 422
    assert "统编版 没有这一学科的教材" in refused.text  # the reason, in Chinese
    # Rendered again for English: its editions offered, the others hidden and disabled.
    assert "hidden disabled" not in _option(refused.text, "外研版")
    assert "hidden disabled" in _option(refused.text, "人音版")

    other = client.post("/upload/courses", data={**form, "subject": "math", "edition": "其他版", "edition_other": ""})
    assert other.status_code == 422 and "不在教材版本列表中" in other.text
    created = client.post(
        "/upload/courses",
        data={**form, "subject": "music", "edition": "other", "edition_other": "花城版", "volume": "全一册"},
    )
    assert created.status_code == 303, created.text
    course = db.get(Course, int(created.headers["Location"].rsplit("/", 1)[-1]))
    assert course is not None and (course.edition, course.volume) == ("花城版", "全一册")


def test_licence_chooser_explains_each_licence(app: Flask, make: Accounts) -> None:
    client = _signed_in(app, make)
    zh = client.get("/upload/").text
    for code in ("CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0", "CC0-1.0"):
        assert f'name="license" value="{code}"' in zh
    assert "署名-相同方式共享 4.0 国际" in zh and "只限非商业目的" in zh and "贡献到公共领域" in zh
    assert "平台会在课程页上印出下面这行署名" in zh
    # The preview's template for the script: the TASL line with placeholders.
    preview = "《[[title]]》，作者：[[author]]，来源：本平台上的课程页，采用 CC BY-SA 4.0 许可协议。"
    assert f'data-attribution="{preview}"' in zh
    client.set_cookie("hub_lang", "en")
    en = client.get("/upload/").text
    assert "Attribution-ShareAlike 4.0 International" in en and "non-commercial purposes only" in en


def test_course_page_prints_the_attribution_line(client: FlaskClient, uploader: dict[str, str]) -> None:
    course = _post(client, uploader).json
    client.post(f"/api/v1/courses/{course['id']}/lessons", json={"title": "配方法"}, headers=uploader)
    assert client.post(f"/api/v1/courses/{course['id']}/publish", headers=uploader).status_code == 200
    page = client.get(f"/courses/{course['id']}")
    line = (
        f"《一元二次方程》，作者：王老师（海淀实验小学），来源：http://localhost/courses/{course['id']}，"
        "采用 CC BY-SA 4.0 许可协议。"
    )
    assert line in page.text
    assert 'href="https://creativecommons.org/licenses/by-sa/4.0/" rel="license"' in page.text
    english = client.get(f"/courses/{course['id']}", headers={"Accept-Language": "en"}).text
    assert (
        f"“一元二次方程” by 王老师, 海淀实验小学, from http://localhost/courses/{course['id']}, "
        "licensed under CC BY-SA 4.0." in english
    )
    public_domain = _post(client, uploader, license="CC0-1.0", teacher="").json
    client.post(f"/api/v1/courses/{public_domain['id']}/lessons", json={"title": "配方法"}, headers=uploader)
    client.post(f"/api/v1/courses/{public_domain['id']}/publish", headers=uploader)
    assert "作者：海淀实验小学，" in client.get(f"/courses/{public_domain['id']}").text
    assert "已贡献到公共领域（CC0 1.0）" in client.get(f"/courses/{public_domain['id']}").text
