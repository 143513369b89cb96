"""Headers that tell the browser what a page may do, and cookies that stay on https.

Every response carries them, pages, JSON and blobs alike:

- a Content-Security-Policy. Pages get a strict one: scripts and styles only
  from this hub's static files (the templates hold no inline script, style or
  event handler, so no nonce is needed), media and images also from the S3
  endpoint blob downloads are redirected to, no plugins, no <base>, forms
  posting only here. Anything else (JSON, blobs, static files) is not a
  document to run: `default-src 'none'` and a sandbox, so a file opened in a
  tab can run nothing even if a browser took it for HTML.
- `frame-ancestors 'none'` and `X-Frame-Options: DENY` (for browsers before
  CSP 2): no page can be framed, so the upload and publish forms cannot be
  overlaid by another site (clickjacking).
- `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`: page
  addresses (a search, a draft's lesson) are not sent to S3 or to another site;
  our own forms keep their Referer, which Flask-WTF checks on https.

Cookies (the session, the language, the data-saver switch, and any to come)
get `Secure` when the hub is reached over https: always when HUB_PUBLIC_URL is
https, otherwise per request. Behind a reverse proxy that terminates TLS the
hub sees plain http; it believes the proxy's X-Forwarded-Proto (and -For,
-Host) only for the HUB_TRUSTED_PROXIES proxies the deployer names, never by
default: a header any client can send must not decide what the hub trusts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from hub.config import Settings
    from hub.media.storage import Storage

log = logging.getLogger(__name__)

# A blob name no blob has: presigning it only tells where the storage sends browsers.
_PROBE_KEY = "0" * 64

NOT_A_DOCUMENT = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
"""The policy of everything that is not a page: nothing in it may load or run."""


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL (no user info, path or query), else None."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host:
        return None
    return f"{parts.scheme}://{host}".lower()


def storage_origin(storage: Storage, settings: Settings) -> str | None:
    """The origin browsers are redirected to for blob bytes (S3), or None when the hub sends them.

    Asked of the storage itself (a presigned URL is computed locally, with no request),
    so AWS's virtual-hosted bucket names, MinIO behind a path and a test server all come
    out right. Raises when the storage cannot presign now (no credentials yet).
    """
    url = storage.presigned_url(_PROBE_KEY)
    if url is None:
        return None
    return origin_of(url) or origin_of(settings.s3_endpoint_url)


def page_policy(media_origins: Iterable[str], own_origins: Iterable[str]) -> str:
    """The Content-Security-Policy of HTML pages.

    `media_origins` may serve images, audio and video (the S3 endpoint); `own_origins`
    are other addresses of this hub (HUB_PUBLIC_URL) that scripts and forms may reach.
    """
    media_origins, own_origins = list(media_origins), list(own_origins)
    media = " ".join(["'self'", *dict.fromkeys(media_origins)])
    own = " ".join(["'self'", *dict.fromkeys(own_origins)])
    # stream.js fetches the media's byte ranges itself (Media Source Extensions): the S3 origin too.
    fetched = " ".join(["'self'", *dict.fromkeys([*own_origins, *media_origins])])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media}",
            # blob: the MediaSource object URL stream.js gives the lesson page's players (MSE).
            f"media-src {media} blob:",
            f"connect-src {fetched}",
            f"form-action {own}",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


class _Policies:
    """The page policy, computed on the first request (S3 may need credentials to presign)."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self._page: str | None = None

    def page(self) -> str:
        if self._page is None:
            own = [o for o in [origin_of(self.settings.public_url)] if o]
            try:
                media = storage_origin(self.storage, self.settings)
            except Exception:
                # Not kept: the next request asks again. Until then S3 media is refused by
                # the browser, which is also what happens to the download that cannot presign.
                log.exception("could not tell the S3 origin for the Content-Security-Policy")
                return page_policy([], own)
            self._page = page_policy([media] if media else [], own)
        return self._page


def https_only(settings: Settings) -> bool:
    """Whether the deployer says the hub is reached over https (HUB_PUBLIC_URL)."""
    return settings.public_url.lower().startswith("https://")


def _reached_over_https(settings: Settings) -> bool:
    return https_only(settings) or request.is_secure


def security_headers(response: Response, policies: _Policies, settings: Settings) -> Response:
    headers = response.headers
    # setdefault throughout: a view that knows better may send its own.
    policy = policies.page() if response.mimetype == "text/html" else NOT_A_DOCUMENT
    headers.setdefault("Content-Security-Policy", policy)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if settings.hsts_max_age and _reached_over_https(settings):
        # Browsers ignore it over plain http, so a LAN school server reached by IP is unaffected.
        headers.setdefault("Strict-Transport-Security", f"max-age={settings.hsts_max_age}")
    return response


def _with_secure(cookie: str) -> str:
    attributes = cookie.split(";")[1:]
    if any(a.strip().lower() == "secure" for a in attributes):
        return cookie
    return f"{cookie}; Secure"


class SecureCookies:
    """WSGI middleware: every Set-Cookie gets `Secure` on https requests (or always).

    Below Flask rather than an after_request hook, because the session cookie is
    written after those hooks, and so that a cookie a future view sets is covered too.
    """

    def __init__(self, app: WSGIApplication, *, always: bool) -> None:
        self.app = app
        self.always = always

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.always and environ.get("wsgi.url_scheme") != "https":
            return self.app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            secured = [(k, _with_secure(v) if k.lower() == "set-cookie" else v) for k, v in headers]
            return start_response(status, secured, exc_info)

        return self.app(environ, start)


def init_app(app: Flask, settings: Settings) -> None:
    if https_only(settings):
        app.config["SESSION_COOKIE_SECURE"] = True
    wsgi: Any = SecureCookies(app.wsgi_app, always=https_only(settings))
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        # Outermost, so the cookie middleware and Flask see the client's scheme and host.
        wsgi = ProxyFix(wsgi, x_for=n, x_proto=n, x_host=n)
    app.wsgi_app = wsgi  # type: ignore[method-assign]
    policies = _Policies(settings, app.extensions["hub.storage"])
    app.extensions["hub.security_policies"] = policies

    @app.after_request
    def _security_headers(response: Response) -> Response:
        return security_headers(response, policies, settings)
