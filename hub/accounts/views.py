"""Sign-in and sign-out pages (sessions + CSRF-protected forms)."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts import auth, services
from hub.accounts.models import School, User
from hub.config import Settings
from hub.db import request_session
from hub.errors import Invalid, TooManyRequests, Unauthorized
from hub.i18n import N_
from hub.inputs import parse_int, safe_next

blueprint = Blueprint("accounts", __name__)


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    if request.method != "POST":  # GET, and HEAD (Flask routes it here): never a sign-in attempt
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
    return redirect(_landing(user, request.form.get("next")))


def _landing(user: User, target: str | None) -> str:
    """Where a sign-in lands: the page ``next=`` names, else the user's own start page.

    The header's sign-in link carries the page it was on, which for most is the
    home page; an uploader signs in to upload, so "/" means their dashboard.
    """
    if user.role == "uploader" and (not target or target == url_for("catalog.home")):
        return url_for("uploads.dashboard")
    return safe_next(target)


@blueprint.post("/logout")
def logout() -> Response:
    auth.logout()
    return redirect(url_for("catalog.home"))


# -- schools and pairings (the bureau's admins) ---------------------------------------


def _admin() -> Response | None:
    """A redirect to sign-in for anonymous readers; PermissionDenied for non-admins; None for admins."""
    user = auth.current_user()
    if user is None:
        return redirect(url_for("accounts.login", next=request.path))
    services.require_admin(user)
    return None


def _form_school(name: str) -> School:
    school_id = parse_int(request.form.get(name), low=1)
    if school_id is None:
        raise Invalid(N_("Choose a school."), {name: N_("This field is required")})
    return services.get_school(request_session(), school_id)


@blueprint.get("/admin/schools/")
def schools_page() -> Response | str:
    if (login := _admin()) is not None:
        return login
    listings = services.list_schools(request_session())
    return render_template(
        "accounts/schools.html",
        listings=listings,
        famous=[item.school for item in listings if item.school.kind == "famous"],
        rural=[item.school for item in listings if item.school.kind == "rural"],
    )


@blueprint.post("/admin/schools/pairings")
def pair_schools() -> Response:
    if (login := _admin()) is not None:
        return login
    session = request_session()
    services.pair_schools(session, _form_school("famous"), _form_school("rural"))
    session.commit()
    return redirect(url_for("accounts.schools_page"))


@blueprint.post("/admin/schools/pairings/delete")
def unpair_schools() -> Response:
    if (login := _admin()) is not None:
        return login
    session = request_session()
    services.unpair_schools(session, _form_school("famous"), _form_school("rural"))
    session.commit()
    return redirect(url_for("accounts.schools_page"))
