"""The school server's content page (/admin/sync/): choose what to mirror, pull now, watch it arrive.

Adapters only: each view parses the form or query, calls one function of
hub.sync.content and renders or redirects (POST, then a redirect back to the
page with its filters, so a reload never sends a form twice).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.config import Settings
from hub.db import request_session, utcnow
from hub.errors import Invalid, PermissionDenied
from hub.i18n import N_
from hub.inputs import parse_int
from hub.sync import calendar, content
from hub.vocab import GRADE_NAMES, SUBJECTS

blueprint = Blueprint("sync", __name__, url_prefix="/admin/sync")

REFRESH_SECONDS = 5
"""How often the page reloads itself while a pull runs (the run log is written every few seconds)."""


def _admin() -> Response | None:
    """A redirect to sign-in for anonymous readers; PermissionDenied for non-admins; None for admins."""
    user = current_user()
    if user is None:
        return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
    if not user.is_admin:
        raise PermissionDenied(N_("Only admins can see the sync page."))
    return None


def _settings() -> Settings:
    settings: Settings = current_app.extensions["hub.settings"]
    return settings


def _filters(source: Any) -> dict[str, Any]:
    """The catalog filters of a query or form: unknown values are dropped, not refused (a stale link still works)."""
    subject = source.get("subject", "")
    return {
        "subject": subject if subject in SUBJECTS else None,
        "grade": parse_int(source.get("grade", ""), low=1, high=9),
        "school": parse_int(source.get("school", ""), low=1),
    }


def _back(**extra: Any) -> Response:
    filters = {k: v for k, v in _filters(request.form).items() if v}
    return redirect(url_for("sync.admin_page", **filters, **extra), code=303)


@blueprint.get("/")
def admin_page() -> ResponseReturnValue:
    if (login := _admin()) is not None:
        return login
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    page = content.overview(app, **_filters(request.args), refresh=bool(request.args.get("refresh")))
    return render_template(
        "sync/admin.html",
        page=page,
        timezone=_settings().timezone,
        refresh=REFRESH_SECONDS if page.running or page.starting else None,
        SUBJECTS=SUBJECTS,
        GRADES=list(GRADE_NAMES),
        notice=request.args.get("done", ""),
    )


@blueprint.post("/subscriptions")
def subscribe() -> Response:
    if (login := _admin()) is not None:
        return login
    # Which form it is shows in its fields: a course, a paired school, or grades for the
    # subject the page is filtered by (sent with the filters kept).
    form = request.form
    if (course := parse_int(form.get("course", ""), low=1)) is not None:
        content.subscribe(_settings(), course=course)
    elif "grade_min" in form and form.get("subject") in SUBJECTS:
        low = parse_int(form.get("grade_min", ""), low=1, high=9) or 1
        high = parse_int(form.get("grade_max", ""), low=1, high=9) or 9
        if low > high:
            raise Invalid(N_("The first grade must not be above the last."), {"grade_min": N_("above the last")})
        content.subscribe(_settings(), subject=form["subject"], grades=(low, high))
    elif (school := parse_int(form.get("paired", ""), low=1)) is not None:
        content.subscribe(_settings(), paired_with=school)
    else:
        raise Invalid(N_("Choose a course, a subject with grades, or a paired school to subscribe to."))
    return _back(done="subscribed")


@blueprint.post("/subscriptions/<int:subscription_id>/delete")
def unsubscribe(subscription_id: int) -> Response:
    if (login := _admin()) is not None:
        return login
    content.unsubscribe(_settings(), subscription_id)
    return _back(done="unsubscribed")


@blueprint.post("/pull")
def pull_now() -> Response:
    if (login := _admin()) is not None:
        return login
    content.start_pull(current_app._get_current_object())  # type: ignore[attr-defined]
    return _back(done="pulling")


# -- teaching calendars (hub.sync.calendar) ------------------------------------------------


def _today() -> date:
    from hub.sync.client import local_zone

    return utcnow().astimezone(local_zone(_settings())).date()


@blueprint.get("/calendar")
def calendar_page() -> ResponseReturnValue:
    if (login := _admin()) is not None:
        return login
    views, books = calendar.overview(request_session(), _today(), _settings().sync_weeks_ahead)
    return render_template(
        "sync/calendar.html",
        views=views,
        books=books,
        ahead=_settings().sync_weeks_ahead,
        upstream=_settings().upstream_url,
        notice=request.args.get("done", ""),
    )


def _calendar_back(done: str, key: str = "") -> Response:
    anchor = f"#book-{key}" if key else ""
    return redirect(url_for("sync.calendar_page", done=done) + anchor, code=303)


def _start_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(N_("A date is YYYY-MM-DD, e.g. 2026-09-01."), {"start": N_("invalid")}) from None


@blueprint.post("/calendar")
def calendar_set() -> Response:
    if (login := _admin()) is not None:
        return login
    key = request.form.get("textbook", "").strip()
    session = request_session()
    calendar.set_calendar(session, key, _start_date(request.form.get("start", "")))
    session.commit()
    return _calendar_back("saved", key)


@blueprint.post("/calendar/<key>/weeks")
def calendar_weeks(key: str) -> Response:
    if (login := _admin()) is not None:
        return login
    weeks = {name.removeprefix("week-"): value for name, value in request.form.items() if name.startswith("week-")}
    session = request_session()
    calendar.set_weeks(session, key, weeks)
    session.commit()
    return _calendar_back("weeks", key)


@blueprint.post("/calendar/<key>/delete")
def calendar_delete(key: str) -> Response:
    if (login := _admin()) is not None:
        return login
    session = request_session()
    calendar.delete_calendar(session, key)
    session.commit()
    return _calendar_back("deleted")


@blueprint.post("/calendar/subscribe")
def calendar_subscribe() -> Response:
    if (login := _admin()) is not None:
        return login
    key = request.form.get("textbook", "").strip()
    if not key:
        raise Invalid(N_("A textbook key is 1 to 100 characters."), {"textbook": N_("invalid")})
    content.subscribe(_settings(), textbook=key)
    return _calendar_back("subscribed", key)
