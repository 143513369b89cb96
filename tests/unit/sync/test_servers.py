"""The upstream sees its school servers (API and page), and a school server's pages say where teachers are."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import create_app
from hub.accounts.models import ApiToken
from hub.db import get_database, utcnow
from hub.sync import counts, services
from hub.sync import manifest as mf
from hub.sync.models import ServerReport
from tests.conftest import Accounts, hub_settings
from tests.unit.sync.conftest import Upstream

REPORT = {
    "via": "pull",
    "manifest_version": 3,
    "applied_version": 2,
    "courses": 1,
    "storage_used": 5 * 1024**3,
    "storage_free": 40 * 1024**3,
    "storage_budget": 0,
    "host_name": "shancun",
}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _sign_in(app: Flask, email: str) -> FlaskClient:
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    signed = browser.post("/login", data={"email": email, "password": "a long password", "csrf_token": token})
    assert signed.status_code == 302
    return browser


@pytest.fixture
def admin(make: Accounts) -> dict[str, str]:
    bureau = make.school("通渭县教育局", "urban")
    return make.bearer(make.user("admin@bureau.cn", bureau, "admin", password="a long password"))


def _servers(client: FlaskClient, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/sync/servers", headers=admin)
    assert answer.status_code == 200, answer.text
    return {item["school"]["name"]: item for item in answer.get_json()["items"]}


def test_a_school_server_reports_and_the_upstream_lists_it(
    client: FlaskClient, db: Session, make: Accounts, up: Upstream, admin: dict[str, str]
) -> None:
    server = make.bearer(make.user("server@shancun.example", up.rural, "teacher"), "sync")
    # Before it ever reports: listed from its sync token and subscription, never in touch.
    before = _servers(client, admin)["山村小学"]
    assert before["alert"] == "never" and before["last_contact"] is None
    assert [s["kind"] for s in before["subscriptions"]] == ["course"]
    assert before["subscriptions"][0]["course_title"] == "一元二次方程"

    answer = client.post("/api/v1/sync/status", json=REPORT, headers=server)
    assert answer.status_code == 200, answer.text
    assert answer.get_json()["school"]["name"] == "山村小学"
    key = mf.generate_private_key()
    services.issue_manifest(db, up.rural, private_key=key, lifetime=3600)
    db.commit()
    counts.receive_counts(
        db,
        up.rural,
        counts.CountReportIn.model_validate(
            {"id": "a" * 32, "counts": [{"sha256": up.subscribed[0], "day": utcnow().date().isoformat(), "count": 4}]}
        ),
        counts.CountLimits(max_rows=1000, daily=5000, max_age_days=366),
    )

    item = _servers(client, admin)["山村小学"]
    assert item["alert"] == "ok"
    assert item["manifest_acknowledged"] == 3 and item["manifest_applied"] == 2
    assert item["manifest_issued"] == 1
    assert item["storage_used"] == 5 * 1024**3 and item["storage_free"] == 40 * 1024**3
    assert item["host_name"] == "shancun" and item["reported_via"] == "pull"
    assert item["last_counts_report"]["downloads"] == 4
    assert item["school"]["county"] == "海淀区"  # Accounts.school's county


def test_a_server_silent_for_more_than_silent_days_is_marked(
    client: FlaskClient, db: Session, make: Accounts, up: Upstream, admin: dict[str, str]
) -> None:
    server = make.bearer(make.user("server@shancun.example", up.rural, "teacher"), "sync")
    assert client.post("/api/v1/sync/status", json=REPORT, headers=server).status_code == 200
    days = client.application.extensions["hub.settings"].silent_days
    assert days == 7  # the default
    # Its last report and its token's last use, 8 days ago.
    long_ago = utcnow() - timedelta(days=days + 1)
    db.expire_all()
    db.get_one(ServerReport, up.rural.id).reported_at = long_ago
    for token in db.scalars(select(ApiToken).where(ApiToken.kind == "sync")):
        token.last_used_at = long_ago
    db.commit()
    item = _servers(client, admin)["山村小学"]
    assert item["alert"] == "silent"
    assert datetime.fromisoformat(item["last_contact"]) == long_ago.replace(microsecond=long_ago.microsecond)


def test_the_list_is_for_admins_only(client: FlaskClient, make: Accounts, up: Upstream) -> None:
    teacher = make.bearer(make.user("t@shancun.example", up.rural, "teacher"))
    server = make.bearer(make.user("server@shancun.example", up.rural, "admin"), "sync")
    assert client.get("/api/v1/sync/servers").status_code == 401
    assert client.get("/api/v1/sync/servers", headers=teacher).status_code == 403
    # A school server's sync token reads no other school server, even its admin's.
    assert client.get("/api/v1/sync/servers", headers=server).status_code == 403
    # And only a sync token reports a state.
    assert client.post("/api/v1/sync/status", json=REPORT, headers=teacher).status_code == 403
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "get" in paths["/api/v1/sync/servers"] and "post" in paths["/api/v1/sync/status"]


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("zh", ["学校服务器", "失联", "上次联系", "已用 5.0 GB", "shancun.local"]),
        ("en", ["School servers", "Silent", "Last contact", "5.0 GB used"]),
    ],
)
def test_the_page_lists_school_servers_in_both_languages(
    app: Flask, db: Session, make: Accounts, up: Upstream, admin: dict[str, str], language: str, words: list[str]
) -> None:
    server = make.bearer(make.user("server@shancun.example", up.rural, "teacher"), "sync")
    assert app.test_client().post("/api/v1/sync/status", json=REPORT, headers=server).status_code == 200
    db.expire_all()
    db.get_one(ServerReport, up.rural.id).reported_at = utcnow() - timedelta(days=30)
    for token in db.scalars(select(ApiToken).where(ApiToken.kind == "sync")):
        token.last_used_at = None
    db.commit()
    browser = _sign_in(app, "admin@bureau.cn")
    assert 'href="/admin/servers/"' in browser.get("/").text  # in the admin navigation
    page = browser.get("/admin/servers/", headers={"Accept-Language": language})
    assert page.status_code == 200
    for word in words:
        assert word in page.text, word
    assert "山村小学" in page.text


def test_the_page_is_for_admins(app: Flask, make: Accounts, up: Upstream) -> None:
    make.user("t@shancun.example", up.rural, "teacher", password="a long password")
    assert app.test_client().get("/admin/servers/").status_code == 302  # to sign-in
    assert _sign_in(app, "t@shancun.example").get("/admin/servers/").status_code == 403


# -- the school server's side -------------------------------------------------------------


@pytest.fixture
def mirror(hub_env: dict[str, str]) -> Any:
    key = mf.public_key_text(mf.generate_private_key())
    app = create_app(
        {**hub_settings(hub_env), "HUB_UPSTREAM_URL": "https://hub.example.cn/", "HUB_UPSTREAM_PUBLIC_KEY": key}
    )
    yield app
    get_database(app).engine.dispose()


def test_every_page_of_a_school_server_says_so_with_the_last_sync_in_local_time(mirror: Flask) -> None:
    client = mirror.test_client()
    for path in ("/", "/courses", "/search?q=x", "/login"):
        page = client.get(path, headers={"Accept-Language": "zh"}).text
        assert "本校服务器 · 尚未同步" in page, path
        assert 'href="https://hub.example.cn/"' in page  # the upstream, absolute
    with get_database(mirror).session() as db:
        run = services.start_run(db, "pull")
        services.finish_run(db, run, "ok")
        run.finished_at = datetime(2026, 12, 1, 14, 5, tzinfo=UTC)  # 22:05 in Beijing (HUB_TIMEZONE)
        failed = services.start_run(db, "pull")
        services.finish_run(db, failed, "failed", "cut")  # later, but not a sync
        db.commit()
    page = client.get("/", headers={"Accept-Language": "zh"}).text
    assert "本校服务器 · 上次同步 2026-12-01 22:05" in page
    english = client.get("/", headers={"Accept-Language": "en"}).text
    assert "School server · last synced 2026-12-01 22:05" in english
    assert 'href="/admin/servers/"' not in english


def test_an_upstream_shows_no_school_server_line(client: FlaskClient) -> None:
    page = client.get("/", headers={"Accept-Language": "zh"}).text
    assert "本校服务器" not in page


def test_the_settings_file_is_below_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.config import ConfigError, Settings, write_settings_file

    write_settings_file(tmp_path, {"HUB_PAGE_SIZE": "7", "HUB_SILENT_DAYS": "3"})
    monkeypatch.delenv("HUB_PAGE_SIZE", raising=False)
    assert Settings.load({"HUB_DATA_DIR": str(tmp_path)}).page_size == 7
    monkeypatch.setenv("HUB_PAGE_SIZE", "9")
    settings = Settings.load({"HUB_DATA_DIR": str(tmp_path)})
    assert (settings.page_size, settings.silent_days) == (9, 3)
    (tmp_path / "hub.conf").write_text("HUB_DATA_DIR=/elsewhere\n")
    with pytest.raises(ConfigError, match=r"hub\.conf, line 1"):
        Settings.load({"HUB_DATA_DIR": str(tmp_path)})
