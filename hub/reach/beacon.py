"""The lesson page's play beacon: `POST /plays`, sent by hub/static/player.js with navigator.sendBeacon.

A play is the player reaching 10 s or a quarter of the media (player.js decides, the
server only counts); the page sends the material and a random id this browser keeps
(localStorage), and hub.reach.services counts it once per device, material and day.

A form post, not JSON under /api: sendBeacon sends a form body without a preflight,
and no API client has a reason to report plays. Exempt from the CSRF token for the
reason the data-saver switch is (a token would put a session cookie on every
anonymous lesson page); a same-origin check refuses cross-site posts. Answered 204
whether or not the play counted: the page has nothing to show, and nobody learns
from the answer whether a device was seen before.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, request

from hub.accounts.auth import current_user
from hub.db import request_session
from hub.errors import Invalid, NotFound, PermissionDenied, Text
from hub.i18n import N_
from hub.inputs import clamp_int
from hub.media.views import same_origin
from hub.reach import services
from hub.web import csrf

blueprint = Blueprint("reach_beacon", __name__)

_DEVICE = re.compile(r"[0-9A-Za-z_-]{16,64}")


@blueprint.post("/plays")
def play_beacon() -> Response:
    if not same_origin():
        raise PermissionDenied(N_("Plays are only counted from this site's pages."))
    material = _number(request.form.get("material", ""))
    device = request.form.get("device", "")
    fields: dict[str, str] = {}
    if material < 1:
        fields["material"] = Text(N_("a material id"))
    if not _DEVICE.fullmatch(device):
        fields["device"] = Text(N_("16 to 64 letters, digits, - or _"))
    if fields:
        raise Invalid(N_("This play report cannot be read."), fields=fields)
    if not services.playable(request_session(), material):
        raise NotFound(N_("There is no such video or audio."))
    actor = current_user()
    counting = services.Counting.for_app(current_app, actor.school_id if actor is not None else None)
    services.record_play(counting, material, device)
    return Response(status=204, headers={"Cache-Control": "no-store"})


csrf.exempt(play_beacon)


def _number(text: str) -> int:
    try:
        return clamp_int(text, cap=2**31 - 1)  # an integer column's ids: past it, no such material
    except ValueError:
        return 0
