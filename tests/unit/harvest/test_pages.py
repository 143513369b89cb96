"""The sitemap, robots.txt and the JSON-LD of course and lesson pages, through Flask's test client."""

from __future__ import annotations

import gzip
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub import create_app
from hub.db import get_database
from tests.conftest import Accounts, hub_settings
from tests.support.courses import seed_course

SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
EVIL = '</script><script>alert("x")</script>'


def _course(client: FlaskClient, auth: dict[str, str], body: dict[str, Any], *, publish: bool = True) -> int:
    course = client.post("/api/v1/courses", json=body, headers=auth)
    assert course.status_code == 201, course.json
    course_id: int = course.json["id"]  # type: ignore[index]
    lesson = client.post(f"/api/v1/courses/{course_id}/lessons", json={"title": "配方法"}, headers=auth)
    assert lesson.status_code == 201
    if publish:
        assert client.post(f"/api/v1/courses/{course_id}/publish", headers=auth).status_code == 200
    return course_id


def _locs(body: bytes) -> list[str]:
    root = ET.fromstring(body)  # noqa: S314  (the hub's own answer under test)
    assert root.tag == f"{SITEMAP}urlset"
    for url in root.iter(f"{SITEMAP}url"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", url.findtext(f"{SITEMAP}lastmod") or "")
    return [u.findtext(f"{SITEMAP}loc") or "" for u in root.iter(f"{SITEMAP}url")]


def test_the_sitemap_lists_public_courses_and_lessons_only(
    client: FlaskClient, make: Accounts, course_body: dict[str, Any]
) -> None:
    auth = make.bearer(make.user("up@haidian.cn", make.school()))
    public = _course(client, auth, course_body)
    draft = _course(client, auth, course_body, publish=False)
    withdrawn = _course(client, auth, course_body)
    assert client.post(f"/api/v1/courses/{withdrawn}/withdraw", headers=auth).status_code == 200
    response = client.get("/sitemap.xml")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    locs = _locs(response.data)
    assert f"http://localhost/courses/{public}" in locs
    assert not [loc for loc in locs if loc.endswith((f"/courses/{draft}", f"/courses/{withdrawn}"))]
    assert len([loc for loc in locs if "/lessons/" in loc]) == 1  # the public course's one lesson

    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots.mimetype == "text/plain"
    assert "Sitemap: http://localhost/sitemap.xml" in robots.text


def test_a_big_sitemap_becomes_an_index(hub_env: dict[str, str], make: Accounts, course_body: dict[str, Any]) -> None:
    app = create_app({**hub_settings(hub_env), "HUB_SITEMAP_MAX_URLS": "2"})
    try:
        client = app.test_client()
        auth = make.bearer(make.user("up@haidian.cn", make.school()))
        for _ in range(3):
            _course(client, auth, course_body)
        index = ET.fromstring(client.get("/sitemap.xml").data)  # noqa: S314
        assert index.tag == f"{SITEMAP}sitemapindex"
        parts = [s.findtext(f"{SITEMAP}loc") or "" for s in index.iter(f"{SITEMAP}sitemap")]
        assert len(parts) == 4  # 3 courses and 3 lessons, 2 to a file
        locs = []
        for part in parts:
            response = client.get(part.removeprefix("http://localhost"))
            assert response.status_code == 200
            locs += _locs(response.data)
        assert len(locs) == len(set(locs)) == 6
        assert client.get("/sitemap.xml?courses=3").status_code == 404
        assert client.get("/sitemap.xml?lessons=x").status_code == 404
    finally:
        get_database(app).engine.dispose()


def _jsonld(html: str) -> list[dict[str, Any]]:
    blocks = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    return [json.loads(b) for b in blocks]


def test_pages_describe_themselves_and_no_title_escapes_the_data_block(
    app: Flask, client: FlaskClient, db: Session, make: Accounts
) -> None:
    seeded = seed_course(app.extensions["hub.storage"], db, make.school().id, title=EVIL)
    html = client.get(f"/courses/{seeded.course_id}").text
    assert EVIL not in html and "alert" in html  # there, but escaped
    (course,) = _jsonld(html)
    assert course["@type"] == "LearningResource" and course["learningResourceType"] == "Course"
    assert course["name"] == EVIL  # the JSON still says exactly the title
    assert course["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"
    assert course["educationalLevel"] == ["九年级"] and course["inLanguage"] == "zh"
    assert course["author"] == {"@type": "Organization", "name": "海淀实验小学"}
    assert [p["@id"] for p in course["hasPart"]] == [f"http://localhost/lessons/{i}" for i in seeded.lesson_ids]

    (lesson,) = _jsonld(client.get(f"/lessons/{seeded.lesson_ids[0]}").text)
    assert lesson["isPartOf"]["@id"] == f"http://localhost/courses/{seeded.course_id}"
    assert {
        "@type": "AlignmentObject",
        "alignmentType": "teaches",
        "targetName": "第二十一章",
        "educationalFramework": "人教版 数学 九年级上册",
    } in lesson["educationalAlignment"]
    assert lesson["teaches"] == "第二十一章"
    encodings = {e["contentUrl"].rsplit("/", 1)[1]: e for e in lesson["encoding"]}
    assert set(encodings) == {seeded.by_role[p] for p in ("video-360p", "video-240p", "audio", "poster")}
    assert encodings[seeded.by_role["video-240p"]]["contentSize"] == "30000 B"
    assert encodings[seeded.by_role["audio"]]["encodingFormat"] == "audio/mp4"


def test_drafts_carry_no_description(app: Flask, client: FlaskClient, db: Session, make: Accounts) -> None:
    school = make.school()
    seeded = seed_course(app.extensions["hub.storage"], db, school.id, status="draft")
    auth = make.bearer(make.user("up@haidian.cn", school))
    page = client.get(f"/courses/{seeded.course_id}", headers=auth)
    assert page.status_code == 200
    assert _jsonld(page.text) == []


def test_harvest_answers_travel_gzipped(client: FlaskClient, make: Accounts, course_body: dict[str, Any]) -> None:
    auth = make.bearer(make.user("up@haidian.cn", make.school()))
    for _ in range(3):
        _course(client, auth, course_body)
    for path in ("/oai?verb=ListRecords&metadataPrefix=oai_dc", "/sitemap.xml"):
        plain = client.get(path)
        packed = client.get(path, headers={"Accept-Encoding": "gzip"})
        assert packed.headers["Content-Encoding"] == "gzip", path
        assert len(packed.data) < len(plain.data) / 2
        unpacked = gzip.decompress(packed.data)
        # The same document, but for the OAI-PMH responseDate (a second may have passed).
        assert re.sub(rb"<responseDate>.*?</responseDate>", b"", unpacked) == re.sub(
            rb"<responseDate>.*?</responseDate>", b"", plain.data
        )
