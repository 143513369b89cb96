"""Sign-in with sessions and CSRF-protected forms."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Accounts


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def test_sign_in_and_out(app: Flask, make: Accounts) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    make.user("t@rural.cn", make.school("通渭县第一小学", "rural"), "teacher", password="correct horse")
    client = app.test_client()
    token = _csrf(client.get("/login").text)

    wrong = client.post("/login", data={"email": "t@rural.cn", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    assert "邮箱或密码不正确" in wrong.text  # pages speak the reader's language (Chinese by default)

    signed_in = client.post(
        "/login",
        data={"email": "T@rural.cn", "password": "correct horse", "csrf_token": token, "next": "//evil.example/x"},
    )
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/"  # no open redirect
    home = client.get("/")
    assert "t@rural.cn" in home.text
    assert client.post("/logout", data={"csrf_token": _csrf(home.text)}).status_code == 302
    assert "t@rural.cn" not in client.get("/").text


def test_form_posts_without_csrf_token_are_refused(app: Flask, make: Accounts) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    make.user("t@rural.cn", make.school("通渭县第一小学", "rural"), "teacher", password="correct horse")
    client: FlaskClient = app.test_client()
    response = client.post("/login", data={"email": "t@rural.cn", "password": "correct horse"})
    assert response.status_code == 400
    assert "表单已过期" in response.text
    as_json = client.post(
        "/login", data={"email": "t@rural.cn", "password": "correct horse"}, headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 400
    assert as_json.json["error"]["code"] == "csrf_failed"
    assert "t@rural.cn" not in client.get("/").text


def test_session_cookie_api_writes_need_the_csrf_header(app: Flask, make: Accounts) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    make.user("up@x.cn", make.school(), "uploader", password="correct horse")
    client = app.test_client()
    token = _csrf(client.get("/login").text)
    client.post("/login", data={"email": "up@x.cn", "password": "correct horse", "csrf_token": token})
    body = {"title": "t", "subject": "math", "grades": [1], "language": "zh", "license": "CC0-1.0"}
    forged = client.post("/api/v1/courses", json=body)
    assert forged.status_code == 400
    assert forged.json["error"]["code"] == "csrf_failed"
    page_token = _csrf(client.get("/").text)
    assert client.post("/api/v1/courses", json=body, headers={"X-CSRFToken": page_token}).status_code == 201
