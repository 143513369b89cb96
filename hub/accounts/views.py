"""Sign-in and sign-out pages (sessions + CSRF-protected forms)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts import auth, services
from hub.db import request_session
from hub.errors import Unauthorized

blueprint = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never bounce a signed-in teacher to another host.
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("catalog.home")


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        return render_template("accounts/login.html", next=request.args.get("next", ""), error="")
    email = request.form.get("email", "")
    try:
        user = services.authenticate_password(request_session(), email, request.form.get("password", ""))
    except Unauthorized as exc:
        return render_template(
            "accounts/login.html", next=request.form.get("next", ""), error=exc.localized(), email=email
        ), 401
    auth.login(user)
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> Response:
    auth.logout()
    return redirect(url_for("catalog.home"))
