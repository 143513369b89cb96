"""Pairing is data the bureau manages: `hub school pair|unpair|list` and /api/v1/schools/.../pairings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import Pairing, School
from hub.cli import main
from hub.sync.models import Subscription
from tests.conftest import Accounts

FAMOUS = "海淀实验小学"
RURAL = "山村小学"


@pytest.fixture
def schools(make: Accounts) -> dict[str, School]:
    return {
        "famous": make.school(FAMOUS, "famous"),
        "rural": make.school(RURAL, "rural"),
        "urban": make.school("城关小学", "urban"),
    }


@pytest.fixture
def hub(hub_env: dict[str, str], schools: dict[str, School]) -> CliRunner:
    return CliRunner(env=hub_env)


def _run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args))


def _pairs(db: Session) -> set[tuple[int, int]]:
    db.expire_all()
    return {(p.famous_school_id, p.rural_school_id) for p in db.scalars(select(Pairing))}


def test_pair_then_subscribe_paired_with_then_unpair(hub: CliRunner, db: Session, schools: dict[str, School]) -> None:
    famous, rural = schools["famous"], schools["rural"]
    refused = _run(hub, "sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS)
    assert refused.exit_code == 1 and "not paired" in refused.output

    paired = _run(hub, "school", "pair", FAMOUS, RURAL)
    assert paired.exit_code == 0, paired.output
    assert f'--paired-with "{FAMOUS}"' in paired.stderr  # says what the school server runs next
    assert _pairs(db) == {(famous.id, rural.id)}
    assert _run(hub, "school", "pair", FAMOUS, RURAL).exit_code == 0  # idempotent
    assert _pairs(db) == {(famous.id, rural.id)}

    subscribed = _run(hub, "sync", "subscribe", "--school", RURAL, "--paired-with", FAMOUS)
    assert subscribed.exit_code == 0, subscribed.output
    assert db.scalar(select(Subscription.paired_school_id).where(Subscription.school_id == rural.id)) == famous.id

    unpaired = _run(hub, "school", "unpair", FAMOUS, RURAL)
    assert unpaired.exit_code == 0, unpaired.output
    assert "1 subscription(s) ended" in unpaired.output
    assert _pairs(db) == set()
    assert db.scalars(select(Subscription).where(Subscription.school_id == rural.id)).all() == []

    again = _run(hub, "school", "unpair", FAMOUS, RURAL)
    assert again.exit_code == 1 and "not paired" in again.output


@pytest.mark.parametrize(
    ("famous", "rural", "says"),
    [
        (RURAL, FAMOUS, "joins a famous school to a rural school"),  # wrong order
        (FAMOUS, "城关小学", "urban"),
        (FAMOUS, "没有这所学校", "No school named"),
    ],
)
def test_pair_refuses_what_is_not_a_famous_and_a_rural_school(
    hub: CliRunner, db: Session, famous: str, rural: str, says: str
) -> None:
    result = _run(hub, "school", "pair", famous, rural)
    assert result.exit_code == 1
    assert says in result.output and "Traceback" not in result.output
    assert _pairs(db) == set()


def test_list_shows_kind_region_county_and_pairings(hub: CliRunner) -> None:
    assert _run(hub, "school", "pair", FAMOUS, RURAL).exit_code == 0
    listed = _run(hub, "school", "list")
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert rows[0] == ["name", "kind", "region", "county", "paired with"]
    by_name = {row[0]: row[1:] for row in rows[1:]}
    assert by_name == {
        FAMOUS: ["famous", "北京市", "海淀区", RURAL],
        RURAL: ["rural", "北京市", "海淀区", FAMOUS],
        "城关小学": ["urban", "北京市", "海淀区", "-"],
    }


# -- the API ---------------------------------------------------------------------------


@pytest.fixture
def admin(make: Accounts, schools: dict[str, School]) -> dict[str, str]:
    return make.bearer(make.user("admin@bureau.cn", schools["urban"], "admin"))


def test_api_pairs_lists_and_unpairs(client: FlaskClient, admin: dict[str, str], schools: dict[str, School]) -> None:
    famous, rural = schools["famous"], schools["rural"]
    created = client.post(f"/api/v1/schools/{rural.id}/pairings", json={"school": famous.id}, headers=admin)
    assert created.status_code == 201, created.json
    assert created.json is not None
    assert [p["name"] for p in created.json["paired"]] == [FAMOUS]  # either order

    listed = client.get("/api/v1/schools", headers=admin)
    assert listed.status_code == 200
    assert listed.json is not None
    by_name = {item["name"]: item for item in listed.json["items"]}
    assert [p["id"] for p in by_name[FAMOUS]["paired"]] == [rural.id]
    assert by_name[RURAL]["county"] == "海淀区" and by_name[RURAL]["kind"] == "rural"

    one = client.get(f"/api/v1/schools/{famous.id}/pairings", headers=admin)
    assert one.json is not None and [p["name"] for p in one.json["paired"]] == [RURAL]

    assert client.delete(f"/api/v1/schools/{famous.id}/pairings/{rural.id}", headers=admin).status_code == 204
    gone = client.delete(f"/api/v1/schools/{famous.id}/pairings/{rural.id}", headers=admin)
    assert gone.status_code == 404 and gone.json is not None and gone.json["error"]["code"] == "not_found"


def _error(response: Any) -> dict[str, Any]:
    assert response.json is not None and set(response.json) == {"error"}, response.data
    detail: dict[str, Any] = response.json["error"]
    assert set(detail) == {"code", "message", "fields"}
    return detail


def test_api_is_for_admins_with_the_standard_error_shape(
    client: FlaskClient, make: Accounts, admin: dict[str, str], schools: dict[str, School]
) -> None:
    famous, rural, urban = schools["famous"], schools["rural"], schools["urban"]
    uploader = make.bearer(make.user("up@famous.cn", famous, "uploader"))
    for headers, status in (({}, 401), (uploader, 403)):
        for response in (
            client.get("/api/v1/schools", headers=headers),
            client.get(f"/api/v1/schools/{famous.id}/pairings", headers=headers),
            client.post(f"/api/v1/schools/{famous.id}/pairings", json={"school": rural.id}, headers=headers),
            client.delete(f"/api/v1/schools/{famous.id}/pairings/{rural.id}", headers=headers),
        ):
            assert response.status_code == status
            _error(response)

    wrong_kinds = client.post(f"/api/v1/schools/{famous.id}/pairings", json={"school": urban.id}, headers=admin)
    assert wrong_kinds.status_code == 422 and _error(wrong_kinds)["code"] == "invalid"
    unknown = client.post(f"/api/v1/schools/{famous.id}/pairings", json={"school": 10**9}, headers=admin)
    assert unknown.status_code == 404 and _error(unknown)["code"] == "not_found"
    extra = client.post(f"/api/v1/schools/{famous.id}/pairings", json={"school": rural.id, "x": 1}, headers=admin)
    assert extra.status_code == 422


def test_openapi_documents_the_pairing_endpoints(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").json
    assert document is not None
    paths = document["paths"]
    assert set(paths["/api/v1/schools/{school_id}/pairings"]) == {"get", "post"}
    assert set(paths["/api/v1/schools/{school_id}/pairings/{other_id}"]) == {"delete"}
    assert "get" in paths["/api/v1/schools"]
    post = paths["/api/v1/schools/{school_id}/pairings"]["post"]
    assert post["security"] == [{"bearer": []}] and "201" in post["responses"]


# -- the admin page ----------------------------------------------------------------------


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


@pytest.mark.parametrize(
    ("language", "words"),
    [("zh", ["学校与结对", "乡村学校", "解除结对"]), ("en", ["Schools and pairings", "Rural school", "Unpair"])],
)
def test_admin_page_pairs_and_unpairs(
    app: Flask, make: Accounts, db: Session, schools: dict[str, School], language: str, words: list[str]
) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    make.user("admin@bureau.cn", schools["urban"], "admin", password="a long password")
    browser = app.test_client()
    headers = {"Accept-Language": language}
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "admin@bureau.cn", "password": "a long password", "csrf_token": token})
    page = browser.get("/admin/schools/", headers=headers)
    assert page.status_code == 200
    famous, rural = schools["famous"], schools["rural"]
    form = {"famous": str(famous.id), "rural": str(rural.id), "csrf_token": _csrf(page.text)}
    assert browser.post("/admin/schools/pairings", data={**form, "csrf_token": "forged"}).status_code == 400
    assert _pairs(db) == set()
    assert browser.post("/admin/schools/pairings", data=form).status_code == 302
    assert _pairs(db) == {(famous.id, rural.id)}
    page = browser.get("/admin/schools/", headers=headers)
    assert all(word in page.text for word in words), page.text
    assert browser.post("/admin/schools/pairings/delete", data=form).status_code == 302
    assert _pairs(db) == set()
    bad = browser.post("/admin/schools/pairings", data={**form, "rural": "²"}, headers=headers)
    assert bad.status_code == 422


def test_admin_page_is_for_admins(app: Flask, make: Accounts, schools: dict[str, School]) -> None:
    assert app.test_client().get("/admin/schools/").status_code == 302  # to sign-in
    make.user("t@rural.cn", schools["rural"], "teacher", password="a long password")
    teacher = app.test_client()
    token = _csrf(teacher.get("/login").text)
    signed_in = teacher.post("/login", data={"email": "t@rural.cn", "password": "a long password", "csrf_token": token})
    assert signed_in.status_code == 302
    assert teacher.get("/admin/schools/").status_code == 403
    form = {"famous": str(schools["famous"].id), "rural": str(schools["rural"].id)}
    fresh = _csrf(teacher.get("/").text)  # a sign-in starts a new session, with its own token
    assert teacher.post("/admin/schools/pairings", data={**form, "csrf_token": fresh}).status_code == 403
