"""Sessions end on the server: sign-out, a new password and deactivation refuse every copy of the cookie."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.accounts import services
from hub.accounts.models import User
from tests.conftest import Accounts

PASSWORD = "correct horse"


@pytest.fixture
def teacher(app: Flask, make: Accounts) -> User:
    app.config["WTF_CSRF_ENABLED"] = False  # these tests are about sessions; CSRF has its own
    return make.user("t@rural.cn", make.school("通渭县第一小学", "rural"), "teacher", password=PASSWORD)


def _sign_in(app: Flask, email: str = "t@rural.cn", password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 302, response.text
    return client


def _copy(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of the session cookie (stolen, or a second tab's export)."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def _signed_in(client: FlaskClient, email: str = "t@rural.cn") -> bool:
    return email in client.get("/", headers={"Accept-Language": "en"}).text


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app: Flask, teacher: User) -> None:
    browser = _sign_in(app)
    copy = _copy(app, browser)
    assert _signed_in(copy)  # the copy works while the session lives
    assert browser.post("/logout").status_code == 302
    assert not _signed_in(browser)
    assert not _signed_in(copy)
    assert copy.get("/upload/").status_code == 302  # sent to sign in: not a signed-in page


def test_sign_out_ends_the_users_other_sessions_too(app: Flask, teacher: User) -> None:
    phone, computer = _sign_in(app), _sign_in(app)
    assert _signed_in(phone) and _signed_in(computer)
    phone.post("/logout")
    assert not _signed_in(computer)
    again = _sign_in(app)  # signing in afterwards works as before
    assert _signed_in(again)


def test_a_new_password_ends_the_sessions_signed_in_with_the_old_one(
    app: Flask, teacher: User, db: Session, make: Accounts
) -> None:
    browser = _sign_in(app)
    services.change_password(db, services.get_user_by_email(db, "t@rural.cn"), "a new long password")
    db.commit()
    assert not _signed_in(browser)
    refused = app.test_client().post("/login", data={"email": "t@rural.cn", "password": PASSWORD})
    assert refused.status_code == 401
    assert _signed_in(_sign_in(app, password="a new long password"))


def test_deactivation_refuses_sessions_tokens_and_sign_in(
    app: Flask, teacher: User, db: Session, make: Accounts
) -> None:
    browser = _sign_in(app)
    headers = make.bearer(teacher)
    client = app.test_client()
    assert client.get("/api/v1/courses", headers=headers).status_code == 200
    user = services.get_user_by_email(db, "t@rural.cn")
    assert services.deactivate_user(db, user) == 1
    db.commit()

    assert not _signed_in(browser)
    assert client.get("/api/v1/courses", headers=headers).status_code == 401
    refused = app.test_client().post(
        "/login", data={"email": "t@rural.cn", "password": PASSWORD}, headers={"Accept-Language": "en"}
    )
    assert refused.status_code == 401 and "deactivated" in refused.text

    services.activate_user(db, user)
    db.commit()
    assert _signed_in(_sign_in(app))
    # Reactivation does not bring back what deactivation revoked.
    assert client.get("/api/v1/courses", headers=headers).status_code == 401


def test_sign_in_records_when(app: Flask, teacher: User, db: Session) -> None:
    assert teacher.last_login_at is None
    _sign_in(app)
    db.expire_all()
    assert services.get_user_by_email(db, "t@rural.cn").last_login_at is not None
