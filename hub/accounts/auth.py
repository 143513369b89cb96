"""Who is asking: a bearer token (API clients, school servers) or a login session (browsers).

A session cookie carries the user's ``session_generation`` from sign-in; every request
compares it with the database, so bumping it (sign-out, a new password, deactivation)
ends every session of that user at once, copies of the cookie included. Sign-out thus
signs a person out everywhere: the price of needing no session table, and what a
teacher on a shared school computer wants anyway.

Tokens have a kind. A "user" token is the API as its user. A "sync" token is a school
server's: it is accepted only by the sync API (and the blob downloads a pull makes),
and only it may do what a school server writes (download counts, subscriptions).
"""

from __future__ import annotations

from flask import Flask, g, request, session

from hub.accounts import services
from hub.accounts.models import User
from hub.db import request_session
from hub.errors import HubError, PermissionDenied, Unauthorized
from hub.i18n import N_
from hub.web import csrf

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
SYNC_BLUEPRINT = "sync_api"
SYNC_READ_ENDPOINTS = {"media_api.download_blob"}
"""Outside the sync API, what a school server's pull reads with its sync token (large blobs, with Range)."""


def current_user() -> User | None:
    """The signed-in user, or None for anonymous readers; cached per request."""
    if "user" not in g:
        # Set first: an error page rendered for a refused credential asks again and
        # must get "anonymous", not the same error inside the error handler.
        g.user = None
        g.credential = None
        g.user = _load_user()
    user: User | None = g.user
    return user


def require_user() -> User:
    user = current_user()
    if user is None:
        raise Unauthorized(N_("Sign in, or send an API token as Authorization: Bearer <token>."))
    return user


def require_sync_client() -> User:
    """The user of the school server asking with a sync token; anyone else is refused (403)."""
    user = require_user()
    if g.credential != "sync":
        raise PermissionDenied(
            N_(
                "Only a school server's sync token may do this "
                "(create one on this hub: hub token create EMAIL --kind sync)."
            )
        )
    return user


def _load_user() -> User | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(N_("Use Authorization: Bearer <token>."))
        return _token_user(token.strip())
    user_id = session.get("user_id")
    if user_id is None:
        return None
    user = request_session().get(User, user_id)
    # A cookie from before generations existed counts as generation 0 (see migration 0006).
    if user is None or not user.active or session.get("generation", 0) != user.session_generation:
        session.clear()
        return None
    if request.path.startswith("/api/") and request.method in _UNSAFE:
        # A browser sends the session cookie on its own, so a cookie-authenticated
        # API write must prove it came from our pages (X-CSRFToken header).
        csrf.protect()
    g.credential = "session"
    return user


def _token_user(token: str) -> User:
    db = request_session()
    row = services.live_token(db, token)
    if row.kind == "sync" and request.blueprint != SYNC_BLUEPRINT and request.endpoint not in SYNC_READ_ENDPOINTS:
        raise PermissionDenied(N_("This is a school server's sync token: it works only with the sync API."))
    if services.record_token_use(row):
        # Committed now, alone: the request may only read, and a write later in it
        # commits its own work.
        db.commit()
    g.credential = row.kind
    return row.user


def login(user: User) -> None:
    session.clear()  # a fresh session on sign-in: no fixation
    session["user_id"] = user.id
    session["generation"] = user.session_generation
    session.permanent = True


def logout() -> None:
    """End the signed-in user's sessions everywhere (every copy of the cookie), then this one."""
    user = current_user()
    if user is not None and g.credential == "session":
        services.end_sessions(user)
        request_session().commit()
    session.clear()


def init_app(app: Flask) -> None:
    @app.before_request
    def _bearer_first() -> None:
        # Whether or not the view asks who is there: a refused or misplaced token is
        # answered as such (401, 403), not quietly served the anonymous page.
        if "Authorization" in request.headers:
            current_user()

    def page_user() -> User | None:
        # A page shows who is signed in; a refused credential has already been answered
        # by the view (or is being, on this very error page): here it reads as anonymous.
        try:
            return current_user()
        except HubError:
            return None

    @app.context_processor
    def _user() -> dict[str, object]:
        return {"current_user": page_user}
