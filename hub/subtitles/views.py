"""What lesson pages need from subtitles: where a link into a transcript starts the player.

A search hit inside a transcript links to ``/lessons/<id>?t=<seconds>&m=<material>``; the
lesson page then asks for ``#t=<seconds>`` (a media fragment) on that material's media
URLs, so the browser starts there without any JavaScript.
"""

from __future__ import annotations

from flask import Blueprint, request, url_for

from hub.inputs import parse_int

blueprint = Blueprint("subtitles", __name__)

MAX_START = 24 * 3600


def start_seconds(material_id: int) -> int | None:
    """The `?t=` of this request when it is for `material_id` (or names no material)."""
    seconds = parse_int(request.args.get("t"), high=MAX_START)
    wanted = request.args.get("m")
    if seconds is None or (wanted is not None and parse_int(wanted) != material_id):
        return None
    return seconds


def lesson_url(lesson_id: int, time: int | None = None, material: int | None = None) -> str:
    """The lesson page; with `time`, one that starts `material`'s player there."""
    if time is None or material is None:
        return url_for("catalog.lesson_page", lesson_id=lesson_id)
    return url_for("catalog.lesson_page", lesson_id=lesson_id, t=time, m=material) + f"#material-{material}"


@blueprint.app_context_processor
def _media_start() -> dict[str, object]:
    def media_start(material_id: int) -> str:
        """`#t=N` for the media URLs of the material a transcript link points into, else ""."""
        seconds = start_seconds(material_id)
        return f"#t={seconds}" if seconds else ""

    return {"media_start": media_start, "lesson_url": lesson_url}
