"""Harvesting a hub on loopback with real clients from PyPI, over HTTP.

Sickle (an OAI-PMH harvester used by libraries and aggregators) harvests ``/oai``;
extruct (the metadata extractor behind many crawlers) reads the pages' JSON-LD;
the sitemap is read with an XML parser; Chromium opens a page whose title tries to
break out of the JSON-LD block, under the hub's Content-Security-Policy.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import extruct
import pytest
import requests
from sickle import Sickle, oaiexceptions
from sickle.iterator import OAIResponseIterator

from hub import create_app
from hub.db import get_database
from tests.conftest import COURSE, Accounts, hub_settings
from tests.functional.conftest import LiveServer
from tests.support.browser import CHROMIUM
from tests.support.courses import seed_course

pytestmark = pytest.mark.slow

EVIL = "</script><script>window.pwned = 1</script>"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


class CountingSickle(Sickle):
    """Sickle, counting the HTTP requests it makes (one per page of a list)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[dict[str, str]] = []

    def harvest(self, **kwargs: str) -> Any:
        self.requests.append(dict(kwargs))
        return super().harvest(**kwargs)


@dataclass
class Hub:
    server: LiveServer
    auth: dict[str, str]
    public: set[int] = field(default_factory=set)
    hidden: set[int] = field(default_factory=set)  # drafts: never in a harvest
    deleted: set[int] = field(default_factory=set)  # withdrawn or deleted after publication
    chinese: set[int] = field(default_factory=set)
    seeded: Any = None

    @property
    def oai(self) -> str:
        return f"{self.server.url}/oai"

    def ident(self, course_id: int) -> str:
        return f"oai:127.0.0.1:course/{course_id}"

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.server.api(path), headers=self.auth, timeout=30, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def hub(module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    env = {**module_env, "HUB_OAI_PAGE_SIZE": "2"}  # small pages: every list needs resumption
    app = create_app(hub_settings(env))
    try:
        with get_database(app).session() as db:
            make = Accounts(db)
            haidian = make.school("海淀实验小学")
            shanghai = make.school("上海第一中学")
            auths = [make.bearer(make.user(f"up{i}@school.cn", s)) for i, s in enumerate((haidian, shanghai))]
            seeded = seed_course(app.extensions["hub.storage"], db, haidian.id, title=EVIL)
    finally:
        get_database(app).engine.dispose()
    server = LiveServer(env, tmp_path_factory.mktemp("harvest"))
    try:
        site = Hub(server, auths[0], seeded=seeded)
        site.public.add(seeded.course_id)

        def course(auth: dict[str, str], publish: bool = True, **fields: Any) -> int:
            site.auth = auth
            made: int = site.api("POST", "/courses", json={**COURSE, **fields})["id"]
            site.api("POST", f"/courses/{made}/lessons", json={"title": "第一课", "unit": "第一单元"})
            if publish:
                site.api("POST", f"/courses/{made}/publish")
            return made

        for i in range(3):
            site.public.add(course(auths[0], title=f"数学课程{i}"))
        for i in range(2):
            made = course(auths[1], title=f"古诗{i}", subject="chinese", edition="统编版", grades=[3])
            site.public.add(made)
            site.chinese.add(made)
        site.hidden.add(course(auths[0], publish=False, title="草稿"))
        withdrawn = course(auths[1], title="已撤回")
        site.api("POST", f"/courses/{withdrawn}/withdraw")
        removed = course(auths[1], title="已删除")
        site.api("POST", f"/courses/{removed}/withdraw")
        site.api("DELETE", f"/courses/{removed}")
        site.deleted |= {withdrawn, removed}
        site.auth = auths[0]
        yield site
    finally:
        server.process.stop()


def test_a_harvest_returns_every_public_course_and_nothing_else(hub: Hub) -> None:
    sickle = CountingSickle(hub.oai)
    identify = sickle.Identify()
    assert identify.deletedRecord == "persistent"
    assert identify.granularity == "YYYY-MM-DDThh:mm:ssZ"
    assert identify.baseURL == hub.oai

    sickle.requests.clear()
    records = list(sickle.ListRecords(metadataPrefix="oai_dc", ignore_deleted=True))
    assert {r.header.identifier for r in records} == {hub.ident(c) for c in hub.public}
    assert len(records) == len(hub.public)  # each once
    # 8 records (6 public, 2 deleted) two to a page: the harvest resumed three times.
    assert len(sickle.requests) == 4 and all("resumptionToken" in r for r in sickle.requests[1:])
    titles = {r.metadata["title"][0] for r in records}
    assert EVIL in titles and "数学课程0" in titles
    assert not titles & {"草稿", "已撤回", "已删除"}

    everything = {h.identifier: h.deleted for h in sickle.ListIdentifiers(metadataPrefix="oai_dc")}
    assert everything == {hub.ident(c): c in hub.deleted for c in hub.public | hub.deleted}

    record = sickle.GetRecord(identifier=hub.ident(hub.seeded.course_id), metadataPrefix="oai_dc")
    assert record.metadata["publisher"] == ["海淀实验小学"]
    assert set(record.metadata["format"]) == {"application/pdf", "audio/mp4", "image/jpeg", "video/mp4"}
    assert f"{hub.server.url}/courses/{hub.seeded.course_id}" in record.metadata["identifier"]

    lom = sickle.GetRecord(identifier=hub.ident(hub.seeded.course_id), metadataPrefix="lom")
    assert EVIL in lom.metadata["string"] and "school" in lom.metadata["value"]
    lom_harvest = {r.header.identifier for r in sickle.ListRecords(metadataPrefix="lom", ignore_deleted=True)}
    assert lom_harvest == {hub.ident(c) for c in hub.public}


def test_posted_requests_harvest_the_same(hub: Hub) -> None:
    by_get = {h.identifier for h in Sickle(hub.oai).ListIdentifiers(metadataPrefix="oai_dc")}
    by_post = {h.identifier for h in Sickle(hub.oai, http_method="POST").ListIdentifiers(metadataPrefix="oai_dc")}
    assert by_get == by_post and len(by_get) == len(hub.public | hub.deleted)


def test_sets_by_subject_and_by_school(hub: Hub) -> None:
    sickle = Sickle(hub.oai)
    specs = {s.setSpec: s.setName for s in sickle.ListSets()}
    assert specs["subject:chinese"].startswith("语文")
    assert {"subject", "school", "subject:math"} <= set(specs)
    chinese = {h.identifier for h in sickle.ListIdentifiers(metadataPrefix="oai_dc", set="subject:chinese")}
    assert chinese == {hub.ident(c) for c in hub.chinese}
    school = next(spec for spec, name in specs.items() if name == "上海第一中学")
    listed = {h.identifier for h in sickle.ListIdentifiers(metadataPrefix="oai_dc", set=school)}
    assert listed == {hub.ident(c) for c in hub.chinese | hub.deleted}


def test_an_incremental_harvest_returns_only_what_changed(hub: Hub) -> None:
    sickle = Sickle(hub.oai)
    time.sleep(1.1)  # datestamps have whole seconds
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(oaiexceptions.NoRecordsMatch):
        list(sickle.ListIdentifiers(metadataPrefix="oai_dc", **{"from": since}))
    changed, lesson_changed = sorted(hub.public - {hub.seeded.course_id} - hub.chinese)[:2]
    hub.api("PATCH", f"/courses/{changed}", json={"summary": "新的简介"})
    hub.api("POST", f"/courses/{lesson_changed}/lessons", json={"title": "新加的一课"})
    hub.api("POST", f"/courses/{changed}/withdraw")
    hub.api("POST", f"/courses/{changed}/publish")
    records = list(sickle.ListRecords(metadataPrefix="oai_dc", **{"from": since}))
    assert {r.header.identifier for r in records} == {hub.ident(changed), hub.ident(lesson_changed)}
    assert not any(r.header.deleted for r in records)
    by_id = {r.header.identifier: r for r in records}
    assert by_id[hub.ident(changed)].metadata["description"] == ["新的简介"]
    # Until a second before the changes: every other record, and not the two that moved on.
    before = (datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ") - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    older = {h.identifier for h in sickle.ListIdentifiers(metadataPrefix="oai_dc", until=before)}
    assert older == {hub.ident(c) for c in hub.public | hub.deleted} - {hub.ident(changed), hub.ident(lesson_changed)}
    with pytest.raises(oaiexceptions.NoRecordsMatch):
        list(sickle.ListIdentifiers(metadataPrefix="oai_dc", until="2000-01-01"))


def test_every_protocol_error_reaches_the_harvester(hub: Hub) -> None:
    sickle = Sickle(hub.oai)
    deleted = hub.ident(min(hub.deleted))
    cases: list[tuple[type[Exception], dict[str, str]]] = [
        (oaiexceptions.BadVerb, {"verb": "ListEverything"}),
        (oaiexceptions.BadArgument, {"verb": "ListRecords"}),
        (oaiexceptions.BadArgument, {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "last week"}),
        (oaiexceptions.BadResumptionToken, {"verb": "ListRecords", "resumptionToken": "forged"}),
        (oaiexceptions.CannotDisseminateFormat, {"verb": "ListRecords", "metadataPrefix": "marc21"}),
        (oaiexceptions.IdDoesNotExist, {"verb": "GetRecord", "identifier": "oai:x.org:1", "metadataPrefix": "oai_dc"}),
        (
            oaiexceptions.IdDoesNotExist,
            {"verb": "GetRecord", "identifier": hub.ident(min(hub.hidden)), "metadataPrefix": "oai_dc"},
        ),
        (
            oaiexceptions.NoRecordsMatch,
            {"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "set": "subject:physics"},
        ),
    ]
    for error, params in cases:
        with pytest.raises(error):
            OAIResponseIterator(sickle, params)
    # Sickle names this one NoMetadataFormat and looks up "NoMetadataFormats" (the protocol's
    # code), so it raises its generic OAIError: check the code on the wire as well.
    with pytest.raises(oaiexceptions.OAIError):
        list(sickle.ListMetadataFormats(identifier=deleted))
    answer = requests.get(hub.oai, params={"verb": "ListMetadataFormats", "identifier": deleted}, timeout=10)
    error = ET.fromstring(answer.content).find("{http://www.openarchives.org/OAI/2.0/}error")  # noqa: S314
    assert error is not None and error.get("code") == "noMetadataFormats"


def test_pages_carry_json_ld_that_extruct_reads(hub: Hub) -> None:
    seeded = hub.seeded
    url = f"{hub.server.url}/courses/{seeded.course_id}"
    found = extruct.extract(requests.get(url, timeout=10).text, base_url=url, syntaxes=["json-ld"])["json-ld"]
    (course,) = found
    assert course["@type"] == "LearningResource" and course["name"] == EVIL
    assert course["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"
    assert course["author"]["name"] == "海淀实验小学"

    url = f"{hub.server.url}/lessons/{seeded.lesson_ids[0]}"
    (lesson,) = extruct.extract(requests.get(url, timeout=10).text, base_url=url, syntaxes=["json-ld"])["json-ld"]
    assert lesson["isPartOf"]["@id"] == f"{hub.server.url}/courses/{seeded.course_id}"
    assert lesson["educationalLevel"] == ["九年级"]
    sizes = {e["encodingFormat"]: e["contentSize"] for e in lesson["encoding"] if "360p" in e["name"]}
    assert sizes == {"video/mp4": "60000 B"}
    for encoding in lesson["encoding"]:
        # GET (streamed, not read): on S3 storage the URL redirects to a presigned GET.
        with requests.get(encoding["contentUrl"], stream=True, timeout=10) as blob:
            assert blob.status_code == 200
            assert int(blob.headers["Content-Length"]) == int(encoding["contentSize"].removesuffix(" B"))


def test_the_sitemap_names_public_pages_and_robots_names_the_sitemap(hub: Hub) -> None:
    robots = requests.get(f"{hub.server.url}/robots.txt", timeout=10).text
    sitemap_url = next(line.split(" ", 1)[1] for line in robots.splitlines() if line.startswith("Sitemap:"))
    assert sitemap_url == f"{hub.server.url}/sitemap.xml"
    root = ET.fromstring(requests.get(sitemap_url, timeout=10).content)  # noqa: S314
    locs = {u.findtext(f"{SITEMAP}loc") for u in root.iter(f"{SITEMAP}url")}
    courses = {int(loc.rsplit("/", 1)[1]) for loc in locs if loc and "/courses/" in loc}
    assert courses == hub.public
    for loc in locs:
        assert requests.get(loc or "", timeout=10).status_code == 200  # every page named is public


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.usefixtures("no_csp_violations")
def test_a_title_cannot_break_out_of_the_json_ld(hub: Hub, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        for path in (f"/courses/{hub.seeded.course_id}", f"/lessons/{hub.seeded.lesson_ids[0]}"):
            page.goto(f"{hub.server.url}{path}")
            blocks = page.eval_on_selector_all(
                'script[type="application/ld+json"]', "els => els.map(e => JSON.parse(e.textContent))"
            )
            assert len(blocks) == 1
            assert EVIL in (blocks[0]["name"], blocks[0].get("isPartOf", {}).get("name"))
            assert page.evaluate("window.pwned") is None
    finally:
        context.close()
