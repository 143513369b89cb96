"""The admin page of a school server's sync: state, the run in progress, the run log."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.errors import PermissionDenied
from hub.i18n import N_
from hub.sync.client import status

blueprint = Blueprint("sync", __name__, url_prefix="/admin/sync")


@blueprint.get("/")
def admin_page() -> Response | str:
    user = current_user()
    if user is None:
        return redirect(url_for("accounts.login", next=request.path))
    if not user.is_admin:
        raise PermissionDenied(N_("Only admins can see the sync page."))
    info = status(current_app._get_current_object())  # type: ignore[attr-defined]
    running = any(run["status"] == "running" for run in info["runs"])
    return render_template(
        "sync/admin.html",
        info=info,
        running=running,
        upstream=current_app.extensions["hub.settings"].upstream_url,
        timezone=current_app.extensions["hub.settings"].timezone,
    )
