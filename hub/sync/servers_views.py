"""``/admin/servers/``: the upstream's admins see the school servers that mirror it (same service as the API)."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hub.accounts.auth import current_user
from hub.db import request_session
from hub.sync import servers

blueprint = Blueprint("servers", __name__, url_prefix="/admin/servers")


@blueprint.get("/")
def servers_page() -> Response | str:
    user = current_user()
    if user is None:
        return redirect(url_for("accounts.login", next=request.path))
    servers.require_admin(user)
    days = current_app.extensions["hub.settings"].silent_days
    found = servers.list_school_servers(request_session(), days)
    return render_template(
        "sync/servers.html",
        servers=found,
        silent_days=days,
        silent_count=sum(1 for s in found if s.alert != "ok"),
        timezone=current_app.extensions["hub.settings"].timezone,
    )
