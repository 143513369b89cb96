"""Sessions, sign-in limits and token kinds over real HTTP, across two web server processes on one database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Accounts
from tests.functional.conftest import LiveServer

PASSWORD = "correct horse"


@pytest.fixture
def servers(hub_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {**hub_env, "HUB_LOGIN_MAX_FAILURES": "3"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = LiveServer(env, tmp_path / "a")
    try:
        second = LiveServer(env, tmp_path / "b")
    except BaseException:
        first.process.stop()
        raise
    yield first, second
    first.process.stop()
    second.process.stop()


def _sign_in(server: LiveServer, email: str, password: str) -> tuple[requests.Session, requests.Response]:
    """A new browser: fetch the form (its CSRF token and session cookie), then post it."""
    browser = requests.Session()
    form = browser.get(f"{server.url}/login", timeout=10)
    match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert match
    answer = browser.post(
        f"{server.url}/login",
        data={"email": email, "password": password, "csrf_token": match.group(1)},
        headers={"Accept-Language": "en"},
        allow_redirects=False,
        timeout=10,
    )
    return browser, answer


def _signed_in(server: LiveServer, browser: requests.Session) -> bool:
    return browser.get(f"{server.url}/upload/", allow_redirects=False, timeout=10).status_code == 200


def test_sign_out_on_one_server_ends_a_copied_cookie_on_the_other(
    servers: tuple[LiveServer, LiveServer], make: Accounts
) -> None:
    first, second = servers
    make.user("up@haidian.cn", make.school(), "uploader", password=PASSWORD)
    browser, answer = _sign_in(first, "up@haidian.cn", PASSWORD)
    assert answer.status_code == 302
    copy = requests.Session()
    copy.cookies.set("session", browser.cookies["session"])
    assert _signed_in(second, copy)
    home = browser.get(f"{first.url}/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', home)
    assert token
    signed_out = browser.post(
        f"{first.url}/logout", data={"csrf_token": token.group(1)}, allow_redirects=False, timeout=10
    )
    assert signed_out.status_code == 302
    assert not _signed_in(second, copy)
    assert not _signed_in(first, copy)


def test_guessing_is_limited_across_processes_and_cookies(
    servers: tuple[LiveServer, LiveServer], make: Accounts
) -> None:
    first, second = servers
    make.user("t@rural.cn", make.school("山村小学", "rural"), "teacher", password=PASSWORD)
    for n in range(3):
        server = servers[n % 2]
        assert _sign_in(server, "t@rural.cn", f"guess {n}")[1].status_code == 401
    for server in (first, second):
        _browser, refused = _sign_in(server, "t@rural.cn", PASSWORD)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0


def test_token_kinds_over_http(servers: tuple[LiveServer, LiveServer], make: Accounts) -> None:
    server = servers[0]
    rural = make.school("山村小学", "rural")
    sync = make.bearer(make.user("server@rural.cn", rural, "teacher"), kind="sync")
    teacher = make.bearer(make.user("t@rural.cn", rural, "teacher"))
    report = {"id": "c" * 32, "counts": []}
    assert requests.post(server.api("/sync/counts"), json=report, headers=teacher, timeout=10).status_code == 403
    assert requests.post(server.api("/sync/counts"), json=report, headers=sync, timeout=10).status_code == 200
    assert requests.get(server.api("/courses"), headers=sync, timeout=10).status_code == 403
    assert requests.get(server.api("/courses"), headers=teacher, timeout=10).status_code == 200
