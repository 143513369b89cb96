"""OAI-PMH through Flask's test client: records follow the catalog, every protocol error answers as the protocol says.

The harvest by a real client (Sickle) over HTTP is in tests/functional/test_harvest.py.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app
from hub.db import get_database
from hub.harvest.models import HarvestRecord
from hub.media.models import Rendition
from tests.conftest import Accounts, hub_settings
from tests.support.courses import seed_course

NS = {
    "o": "http://www.openarchives.org/OAI/2.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "oai_dc": "http://www.openarchives.org/OAI/2.0/oai_dc/",
    "lom": "http://ltsc.ieee.org/xsd/LOM",
}
ID = "oai:localhost:course/{}"


@pytest.fixture
def schools(make: Accounts) -> dict[str, Any]:
    haidian = make.school("海淀实验小学", "famous")
    shanghai = make.school("上海第一中学", "famous")
    return {
        "haidian": haidian.id,
        "shanghai": shanghai.id,
        "up": make.bearer(make.user("up@haidian.cn", haidian, "uploader")),
        "up2": make.bearer(make.user("up@shyz.cn", shanghai, "uploader")),
    }


def _course(client: FlaskClient, auth: dict[str, str], body: dict[str, Any], *, publish: bool = True) -> int:
    course = client.post("/api/v1/courses", json=body, headers=auth)
    assert course.status_code == 201, course.json
    course_id: int = course.json["id"]  # type: ignore[index]
    lesson = client.post(f"/api/v1/courses/{course_id}/lessons", json={"title": "配方法"}, headers=auth)
    assert lesson.status_code == 201
    if publish:
        assert client.post(f"/api/v1/courses/{course_id}/publish", headers=auth).status_code == 200
    return course_id


def ask(client: FlaskClient, method: str, params: dict[str, Any]) -> Any:
    """An OAI-PMH request as harvesters send it: a query string, or a form-encoded POST body."""
    return client.post("/oai", data=params) if method == "POST" else client.get("/oai", query_string=params)


def parse(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314  (the hub's own answer under test, not untrusted input)


def oai(client: FlaskClient, method: str = "GET", **params: str) -> ET.Element:
    response = ask(client, method, params)
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    return parse(response.data)


def error_code(root: ET.Element) -> str | None:
    error = root.find("o:error", NS)
    return None if error is None else error.get("code")


def identifiers(root: ET.Element) -> dict[str, bool]:
    """identifier → deleted, of a ListIdentifiers or ListRecords answer."""
    return {
        h.findtext("o:identifier", namespaces=NS) or "": h.get("status") == "deleted"
        for h in root.iter(f"{{{NS['o']}}}header")
    }


def test_identify_declares_persistent_deletions_and_second_granularity(client: FlaskClient) -> None:
    root = oai(client, verb="Identify")
    assert error_code(root) is None
    identify = root.find("o:Identify", NS)
    assert identify is not None
    assert identify.findtext("o:protocolVersion", namespaces=NS) == "2.0"
    assert identify.findtext("o:baseURL", namespaces=NS) == "http://localhost/oai"
    assert identify.findtext("o:deletedRecord", namespaces=NS) == "persistent"
    assert identify.findtext("o:granularity", namespaces=NS) == "YYYY-MM-DDThh:mm:ssZ"
    assert "@" in (identify.findtext("o:adminEmail", namespaces=NS) or "")
    request = root.find("o:request", NS)
    assert request is not None and request.get("verb") == "Identify"


def test_a_record_follows_its_course_from_publication_to_deletion(
    client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any], db: Session
) -> None:
    auth = schools["up"]
    draft = _course(client, auth, course_body, publish=False)
    assert error_code(oai(client, verb="ListIdentifiers", metadataPrefix="oai_dc")) == "noRecordsMatch"
    assert error_code(oai(client, verb="GetRecord", identifier=ID.format(draft), metadataPrefix="oai_dc")) == (
        "idDoesNotExist"
    )

    assert client.post(f"/api/v1/courses/{draft}/publish", headers=auth).status_code == 200
    record = oai(client, verb="GetRecord", identifier=ID.format(draft), metadataPrefix="oai_dc")
    dc = record.find(".//oai_dc:dc", NS)
    assert dc is not None
    assert dc.findtext("dc:title", namespaces=NS) == course_body["title"]
    assert dc.findtext("dc:publisher", namespaces=NS) == "海淀实验小学"
    assert dc.findtext("dc:identifier", namespaces=NS) == f"http://localhost/courses/{draft}"
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in [e.text for e in dc.findall("dc:rights", NS)]
    assert {e.text for e in dc.findall("dc:subject", NS)} >= {"数学", "Mathematics", "九年级"}
    assert [s.text for s in record.iter(f"{{{NS['o']}}}setSpec")] == ["subject:math", f"school:{schools['haidian']}"]

    def stamp() -> datetime:
        db.expire_all()
        row = db.get(HarvestRecord, draft)
        assert row is not None
        return row.datestamp

    published = stamp()
    lesson = client.post(f"/api/v1/courses/{draft}/lessons", json={"title": "公式法"}, headers=auth)
    assert lesson.status_code == 201
    after_lesson = stamp()
    assert after_lesson > published  # a change below the course is a change of the record

    assert client.post(f"/api/v1/courses/{draft}/withdraw", headers=auth).status_code == 200
    gone = oai(client, verb="GetRecord", identifier=ID.format(draft), metadataPrefix="oai_dc")
    header = gone.find(".//o:header", NS)
    assert header is not None and header.get("status") == "deleted"
    assert gone.find(".//o:metadata", NS) is None
    assert error_code(oai(client, verb="ListMetadataFormats", identifier=ID.format(draft))) == "noMetadataFormats"

    assert client.delete(f"/api/v1/courses/{draft}", headers=auth).status_code == 204
    listed = identifiers(oai(client, verb="ListIdentifiers", metadataPrefix="oai_dc"))
    assert listed == {ID.format(draft): True}  # persistent: the deletion stays listed


def test_withdrawn_then_republished_is_live_again(
    client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any]
) -> None:
    auth = schools["up"]
    course = _course(client, auth, course_body)
    assert client.post(f"/api/v1/courses/{course}/withdraw", headers=auth).status_code == 200
    assert identifiers(oai(client, verb="ListIdentifiers", metadataPrefix="oai_dc")) == {ID.format(course): True}
    assert client.post(f"/api/v1/courses/{course}/publish", headers=auth).status_code == 200
    assert identifiers(oai(client, verb="ListIdentifiers", metadataPrefix="oai_dc")) == {ID.format(course): False}


def test_media_changes_move_the_datestamp_and_progress_does_not(app: Flask, db: Session, make: Accounts) -> None:
    seeded = seed_course(app.extensions["hub.storage"], db, make.school().id)
    record = db.get(HarvestRecord, seeded.course_id)
    assert record is not None and not record.deleted
    first = record.datestamp
    rendition = db.scalars(select(Rendition).where(Rendition.status == "processing")).one()
    rendition.progress = 50  # a running transcode's heartbeat: not a change of the record
    db.commit()
    db.refresh(record)
    assert record.datestamp == first
    rendition.status = "failed"
    db.commit()
    db.refresh(record)
    assert record.datestamp > first


def test_records_list_by_set_and_by_date(
    client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any], db: Session
) -> None:
    math = _course(client, schools["up"], course_body)
    chinese = _course(
        client, schools["up2"], {**course_body, "subject": "chinese", "edition": "统编版", "title": "古诗三首"}
    )

    def listed(**params: str) -> set[str]:
        root = oai(client, verb="ListIdentifiers", metadataPrefix="oai_dc", **params)
        return set(identifiers(root)) if error_code(root) is None else {error_code(root) or ""}

    assert listed(set="subject:math") == {ID.format(math)}
    assert listed(set="subject:chinese") == {ID.format(chinese)}
    assert listed(set=f"school:{schools['shanghai']}") == {ID.format(chinese)}
    assert listed(set="subject") == listed(set="school") == {ID.format(math), ID.format(chinese)}
    assert listed(set="subject:physics") == {"noRecordsMatch"}
    assert listed(set="grade:9") == {"noRecordsMatch"}

    sets = oai(client, verb="ListSets")
    specs = {s.findtext("o:setSpec", namespaces=NS) for s in sets.iter(f"{{{NS['o']}}}set")}
    assert specs == {
        "subject",
        "subject:math",
        "subject:chinese",
        "school",
        *(f"school:{schools[k]}" for k in ("haidian", "shanghai")),
    }

    # from/until are inclusive to their granularity (seconds, or whole days).
    record = db.get(HarvestRecord, math)
    assert record is not None
    second = record.datestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ID.format(math) in listed(until=second)
    assert ID.format(math) in listed(**{"from": second})
    day = record.datestamp.date()
    assert listed(**{"from": day.isoformat(), "until": day.isoformat()}) == {ID.format(math), ID.format(chinese)}
    tomorrow = (day + timedelta(days=1)).isoformat()
    assert listed(**{"from": tomorrow}) == {"noRecordsMatch"}


def test_post_answers_as_get(client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any]) -> None:
    course = _course(client, schools["up"], course_body)
    got = oai(client, verb="GetRecord", identifier=ID.format(course), metadataPrefix="oai_dc")
    posted = oai(client, "POST", verb="GetRecord", identifier=ID.format(course), metadataPrefix="oai_dc")
    for root in (got, posted):
        root.remove(root.find("o:responseDate", NS))  # type: ignore[arg-type]
    assert ET.tostring(got) == ET.tostring(posted)


def test_resumption_tokens_page_through_and_refuse_forgeries(
    hub_env: dict[str, str], schools: dict[str, Any], course_body: dict[str, Any]
) -> None:
    small = create_app({**hub_settings(hub_env), "HUB_OAI_PAGE_SIZE": "2"})
    try:
        client = small.test_client()
        made = {ID.format(_course(client, schools["up"], {**course_body, "title": f"课{i}"})) for i in range(5)}
        seen: list[str] = []
        root = oai(client, verb="ListRecords", metadataPrefix="oai_dc")
        cursors = []
        while True:
            seen += identifiers(root)
            token = root.find(".//o:resumptionToken", NS)
            if token is None or not token.text:
                break
            assert token.get("completeListSize") == "5"
            cursors.append(token.get("cursor"))
            root = oai(client, verb="ListRecords", resumptionToken=token.text)
        assert token is not None and token.get("cursor") == "4"  # the last page closes the list
        assert cursors == ["0", "2"]
        assert sorted(seen) == sorted(made)

        first = oai(client, verb="ListIdentifiers", metadataPrefix="oai_dc").find(".//o:resumptionToken", NS)
        assert first is not None and first.text
        forged = first.text[:-2] + ("AA" if not first.text.endswith("AA") else "BB")
        assert error_code(oai(client, verb="ListIdentifiers", resumptionToken=forged)) == "badResumptionToken"
        other_hub = create_app({**hub_settings(hub_env), "HUB_SECRET_KEY": "another hub's key"})
        try:
            answer = oai(other_hub.test_client(), verb="ListIdentifiers", resumptionToken=first.text)
            assert error_code(answer) == "badResumptionToken"
        finally:
            get_database(other_hub).engine.dispose()
    finally:
        get_database(small).engine.dispose()


ERRORS: list[tuple[dict[str, Any], str]] = [
    ({}, "badVerb"),
    ({"verb": "ListEverything"}, "badVerb"),
    ({"verb": ["Identify", "Identify"]}, "badVerb"),
    ({"verb": "Identify", "metadataPrefix": "oai_dc"}, "badArgument"),
    ({"verb": "ListRecords"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": ["oai_dc", "oai_dc"]}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "yesterday"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2026-12-03T10:00:00"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2026-02-30"}, "badArgument"),
    ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2026-12-04", "until": "2026-12-03"}, "badArgument"),
    (
        {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2026-12-01", "until": "2026-12-03T10:00:00Z"},
        "badArgument",
    ),
    ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "resumptionToken": "x"}, "badArgument"),
    ({"verb": "GetRecord", "identifier": ID.format(1)}, "badArgument"),
    ({"verb": "ListRecords", "resumptionToken": "not-a-token"}, "badResumptionToken"),
    ({"verb": "ListSets", "resumptionToken": "x"}, "badResumptionToken"),
    ({"verb": "ListRecords", "metadataPrefix": "marc21"}, "cannotDisseminateFormat"),
    ({"verb": "ListIdentifiers", "metadataPrefix": "oai_lom"}, "cannotDisseminateFormat"),
    ({"verb": "GetRecord", "identifier": "{live}", "metadataPrefix": "oai_ddc"}, "cannotDisseminateFormat"),
    ({"verb": "GetRecord", "identifier": "oai:elsewhere.org:course/1", "metadataPrefix": "oai_dc"}, "idDoesNotExist"),
    ({"verb": "GetRecord", "identifier": ID.format(999999), "metadataPrefix": "oai_dc"}, "idDoesNotExist"),
    ({"verb": "GetRecord", "identifier": ID.format("1x"), "metadataPrefix": "oai_dc"}, "idDoesNotExist"),
    ({"verb": "ListMetadataFormats", "identifier": ID.format(999999)}, "idDoesNotExist"),
    ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2999-01-01"}, "noRecordsMatch"),
    ({"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "set": "school:999999"}, "noRecordsMatch"),
    ({"verb": "ListMetadataFormats", "identifier": "{deleted}"}, "noMetadataFormats"),
]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_protocol_error(
    client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any], method: str
) -> None:
    live = _course(client, schools["up"], course_body)
    deleted = _course(client, schools["up"], course_body)
    assert client.post(f"/api/v1/courses/{deleted}/withdraw", headers=schools["up"]).status_code == 200
    for params, code in ERRORS:
        values = {
            k: v.format(live=ID.format(live), deleted=ID.format(deleted)) if isinstance(v, str) else v
            for k, v in params.items()
        }
        response = ask(client, method, values)
        assert response.status_code == 200
        root = parse(response.data)
        assert error_code(root) == code, (params, response.data.decode())
        request = root.find("o:request", NS)
        assert request is not None and request.text == "http://localhost/oai"
        if code in ("badVerb", "badArgument"):
            assert request.attrib == {}, params  # the protocol: no arguments echoed from an illegal request
        assert [child.tag.split("}")[1] for child in root] == ["responseDate", "request", "error"]
    assert {code for _, code in ERRORS} == {
        "badArgument",
        "badResumptionToken",
        "badVerb",
        "cannotDisseminateFormat",
        "idDoesNotExist",
        "noRecordsMatch",
        "noMetadataFormats",
    }  # every error of the protocol but noSetHierarchy (this repository has sets)


def test_list_metadata_formats(client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any]) -> None:
    course = _course(client, schools["up"], course_body)
    for params in ({}, {"identifier": ID.format(course)}):
        root = oai(client, verb="ListMetadataFormats", **params)
        assert [f.findtext("o:metadataPrefix", namespaces=NS) for f in root.iter(f"{{{NS['o']}}}metadataFormat")] == [
            "oai_dc",
            "lom",
        ]


def test_lom_places_grades_subject_licence_and_school(
    client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any]
) -> None:
    course = _course(client, schools["up"], {**course_body, "grades": [8, 9], "teacher": "王老师; 李老师"})
    root = oai(client, verb="GetRecord", identifier=ID.format(course), metadataPrefix="lom")
    lom = root.find(".//lom:lom", NS)
    assert lom is not None
    assert lom.findtext("lom:general/lom:title/lom:string", namespaces=NS) == course_body["title"]
    assert lom.findtext("lom:general/lom:identifier/lom:entry", namespaces=NS) == f"http://localhost/courses/{course}"
    assert lom.findtext("lom:educational/lom:typicalAgeRange/lom:string", namespaces=NS) == "13-15"
    assert lom.findtext("lom:educational/lom:context/lom:value", namespaces=NS) == "school"
    rights = lom.findtext("lom:rights/lom:description/lom:string", namespaces=NS) or ""
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in rights
    cards = [e.text or "" for e in lom.iterfind("lom:lifeCycle/lom:contribute/lom:entity", NS)]
    assert "FN:海淀实验小学" in cards[0].splitlines()
    assert "FN:王老师\\; 李老师" in cards[1].splitlines()  # a vCard value escapes its semicolons
    taxa = {
        c.findtext("lom:purpose/lom:value", namespaces=NS): c.findtext("lom:taxonPath/lom:taxon/lom:id", namespaces=NS)
        for c in lom.iterfind("lom:classification", NS)
        if c.findtext("lom:purpose/lom:value", namespaces=NS) == "discipline"
    }
    assert taxa == {"discipline": "math"}
    levels = [t.text for t in lom.iterfind("lom:classification/lom:taxonPath/lom:taxon/lom:id", NS)]
    assert levels == ["math", "8", "9"]


def test_a_change_after_a_harvest_is_all_the_next_one_sees(
    client: FlaskClient, schools: dict[str, Any], course_body: dict[str, Any]
) -> None:
    auth = schools["up"]
    old = _course(client, auth, course_body)
    changed = _course(client, auth, course_body)
    time.sleep(1.1)  # datestamps have whole seconds: the next harvest starts a second later
    since = (datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.patch(f"/api/v1/courses/{changed}", json={"title": "改过的标题"}, headers=auth).status_code == 200
    root = oai(client, verb="ListRecords", metadataPrefix="oai_dc", **{"from": since})
    assert set(identifiers(root)) == {ID.format(changed)}
    assert ID.format(old) not in identifiers(root)
