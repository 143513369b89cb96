"""/admin/sync/ shows run times in HUB_TIMEZONE, not UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy.orm import Session

from hub.sync import services
from tests.conftest import Accounts


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_run_times_are_local(app: Flask, db: Session, make: Accounts) -> None:
    assert app.extensions["hub.settings"].timezone == "Asia/Shanghai"  # the default: UTC+8
    make.user("admin@shancun.cn", make.school("山村小学", "rural"), "admin", password="a long password")
    run = services.start_run(db, "pull")
    run.started_at = datetime(2026, 12, 1, 14, 5, tzinfo=UTC)  # 22:05 in Beijing
    db.commit()
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "admin@shancun.cn", "password": "a long password", "csrf_token": token})
    page = browser.get("/admin/sync/", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "22:05" in page.text and "14:05" not in page.text
    assert "(Asia/Shanghai)" in page.text


def test_admins_find_the_sync_and_schools_pages_in_the_header(app: Flask, make: Accounts) -> None:
    make.user("admin@shancun.cn", make.school("山村小学", "rural"), "admin", password="a long password")
    browser = app.test_client()
    assert 'href="/admin/sync/"' not in browser.get("/").text  # not for anonymous readers
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "admin@shancun.cn", "password": "a long password", "csrf_token": token})
    home = browser.get("/").text
    assert 'href="/admin/sync/"' in home and 'href="/admin/schools/"' in home


def test_the_page_forms_need_their_csrf_token_and_a_mirror(app: Flask, make: Accounts) -> None:
    make.user("admin@shancun.cn", make.school("山村小学", "rural"), "admin", password="a long password")
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "admin@shancun.cn", "password": "a long password", "csrf_token": token})
    for path, form in (("/admin/sync/pull", {}), ("/admin/sync/subscriptions", {"course": "1"})):
        assert browser.post(path, data=form).status_code == 400  # no token: refused before anything runs
    token = _csrf(browser.get("/admin/sync/").text)
    refused = browser.post("/admin/sync/pull", data={"csrf_token": token}, headers={"Accept-Language": "en"})
    assert refused.status_code == 409 and "not a school server" in refused.text  # this hub mirrors nothing
    assert browser.post("/admin/sync/subscriptions", data={"csrf_token": token}).status_code == 422
