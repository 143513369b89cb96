"""What the harvest formats share: absolute URLs, licence URLs, grade and subject labels."""

from __future__ import annotations

from typing import Any

from flask import current_app, request, url_for

# SPDX id → the licence deed: what schema.org `license` and Dublin Core `rights` expect (a URL).
LICENSE_URLS = {
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC-BY-NC-4.0": "https://creativecommons.org/licenses/by-nc/4.0/",
    "CC-BY-NC-SA-4.0": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "CC-BY-ND-4.0": "https://creativecommons.org/licenses/by-nd/4.0/",
    "CC-BY-NC-ND-4.0": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
}


def base_url() -> str:
    """Where clients reach the hub: HUB_PUBLIC_URL when set (behind a proxy the request's host may be an
    internal one), else the request's own root."""
    public = current_app.extensions["hub.settings"].public_url.rstrip("/")
    return public or request.url_root.rstrip("/")


def absolute_url(endpoint: str, **values: Any) -> str:
    path = url_for(endpoint, **values)
    return base_url() + path.removeprefix(request.script_root)
