"""/admin/sync/ shows run times in HUB_TIMEZONE, not UTC."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from hub import create_app
from hub.db import get_database
from hub.sync import client, services
from hub.sync import manifest as mf
from tests.conftest import Accounts, hub_settings
from tests.support.chinese import english_words


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


@pytest.fixture
def school_server(hub_env: dict[str, str]) -> Iterator[Flask]:
    """A school server whose upstream's port is closed: nothing listens there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    upstream = {
        "HUB_UPSTREAM_URL": f"http://127.0.0.1:{port}",
        "HUB_UPSTREAM_PUBLIC_KEY": mf.public_key_text(mf.generate_private_key()),
        "HUB_UPSTREAM_TOKEN": "t",
    }
    app = create_app({**hub_settings(hub_env), **upstream})
    yield app
    get_database(app).engine.dispose()


def test_an_unreachable_upstream_is_said_in_chinese_on_the_page(school_server: Flask) -> None:
    """A pull against a closed port, the catalog that cannot be fetched, a subscription that cannot be sent."""
    report = client.pull(school_server, client.PullOptions(), out=io.StringIO())
    assert report.status == "failed" and "refused the connection" in report.message
    with get_database(school_server).session() as session:
        make = Accounts(session)
        make.user("admin@shancun.cn", make.school("山村小学", "rural"), "admin", password="a long password")
    browser = school_server.test_client()
    token = _csrf(browser.get("/login").text)
    browser.post("/login", data={"email": "admin@shancun.cn", "password": "a long password", "csrf_token": token})
    zh = {"Accept-Language": "zh-CN"}
    page = browser.get("/admin/sync/", headers=zh).text
    # The run's summary under its technical details, and why the catalog is not shown.
    assert page.count("上级平台拒绝连接（它是否在运行？）") >= 2, page
    assert not english_words(page), english_words(page)
    form = {"csrf_token": _csrf(page), "course": "1"}
    refused = browser.post("/admin/sync/subscriptions", data=form, headers=zh)
    assert refused.status_code >= 400 and "上级平台拒绝连接" in refused.text, refused.text
    assert not english_words(refused.text), english_words(refused.text)
    english = browser.get("/admin/sync/", headers={"Accept-Language": "en"}).text
    assert "the upstream refused the connection (is it running?)" in english
    assert "ConnectionRefusedError" not in page + english  # the socket's words are the technician's, not the page's
