"""Sign-in and sign-out pages (sessions + CSRF-protected forms)."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts import auth, services
from hub.config import Settings
from hub.db import request_session
from hub.errors import TooManyRequests, Unauthorized
from hub.inputs import safe_next

blueprint = Blueprint("accounts", __name__)


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    if request.method == "GET":
        return render_template("accounts/login.html", next=request.args.get("next", ""), error="")
    email = request.form.get("email", "")
    settings: Settings = current_app.extensions["hub.settings"]
    limits = services.LoginLimits(
        settings.login_max_failures, settings.login_max_failures_per_address, settings.login_window
    )
    session = request_session()
    try:
        user = services.sign_in(
            session, email, request.form.get("password", ""), address=request.remote_addr, limits=limits
        )
    except (Unauthorized, TooManyRequests) as exc:
        page = render_template(
            "accounts/login.html", next=request.form.get("next", ""), error=exc.localized(), email=email
        )
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else {}
        return page, exc.status, headers
    session.commit()
    auth.login(user)
    return redirect(safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> Response:
    auth.logout()
    return redirect(url_for("catalog.home"))
