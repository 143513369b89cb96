"""The line every page of a school server shows: "本校服务器 · 上次同步 <local time>".

Teachers on a school's LAN cannot tell the school's copy from the internet hub
by its look; this line tells them where they are and how fresh the copy is,
and links the upstream (absolute: it is another site, reached over the internet).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g
from sqlalchemy.exc import SQLAlchemyError

from hub.config import Settings
from hub.db import request_session
from hub.sync.servers import last_synced


def init_app(app: Flask, settings: Settings) -> None:
    upstream = settings.upstream_url.rstrip("/")

    def school_server() -> dict[str, Any] | None:
        if not upstream:
            return None
        if "school_server" not in g:
            # One query per page; the run log stays short (a few runs a night).
            try:
                synced = last_synced(request_session())
            except SQLAlchemyError:  # an error page about the database itself must still render
                synced = None
            g.school_server = {"upstream": upstream, "last_synced": synced}
        info: dict[str, Any] = g.school_server
        return info

    @app.context_processor
    def _banner() -> dict[str, object]:
        return {"school_server": school_server}
