"""Who is asking: a bearer token (API clients) or a login session (browsers)."""

from __future__ import annotations

from flask import Flask, g, request, session

from hub.accounts import services
from hub.accounts.models import User
from hub.db import request_session
from hub.errors import Unauthorized
from hub.i18n import N_
from hub.web import csrf

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def current_user() -> User | None:
    """The signed-in user, or None for anonymous readers; cached per request."""
    if "user" not in g:
        g.user = _load_user()
    user: User | None = g.user
    return user


def require_user() -> User:
    user = current_user()
    if user is None:
        raise Unauthorized(N_("Sign in, or send an API token as Authorization: Bearer <token>."))
    return user


def _load_user() -> User | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Use Authorization: Bearer <token>.")
        return services.authenticate_token(request_session(), token.strip())
    user_id = session.get("user_id")
    if user_id is None:
        return None
    user = request_session().get(User, user_id)
    if user is None or not user.active:
        session.clear()
        return None
    if request.path.startswith("/api/") and request.method in _UNSAFE:
        # A browser sends the session cookie on its own, so a cookie-authenticated
        # API write must prove it came from our pages (X-CSRFToken header).
        csrf.protect()
    return user


def login(user: User) -> None:
    session.clear()  # a fresh session on sign-in: no fixation
    session["user_id"] = user.id
    session.permanent = True


def logout() -> None:
    session.clear()


def init_app(app: Flask) -> None:
    @app.context_processor
    def _user() -> dict[str, object]:
        return {"current_user": current_user}
