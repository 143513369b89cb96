"""How pages travel over a 2G link: gzip, Vary and cache headers, versioned static URLs.

A small ``after_request`` instead of an extension, because what must *not* be
touched matters as much as what is compressed: blob downloads (already
compressed media, Range requests whose byte offsets refer to the stored file),
streamed responses (a course ZIP being built) and anything that already has a
``Content-Encoding``. Text above ~500 bytes is gzipped at level 6: a typical
page shrinks 4–8×, and the CPU cost (~0.1 ms per 10 KB) is nothing beside the
seconds each kilobyte costs at 256 kbit/s.

Cache headers: an anonymous page is the same for everyone who sends the same
language and encoding, so it may be cached briefly by the browser and shared
proxies (``public, max-age=60``); a page or JSON answer for a signed-in user
(session or bearer token), one that sets a cookie, and any error or redirect is
``private, no-store``, and every answer that depends on who asks says
``Vary: Authorization, Cookie``. Static files carry a content hash in their
URL (``hub.css?v=1a2b3c4d``), so they can be cached for a year and a new
stylesheet is still picked up at once.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g, request, session
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Request, Response

from hub import pagecache

csrf = CSRFProtect()

COMPRESSIBLE = {
    "text/html",
    "text/css",
    "text/plain",
    "text/javascript",
    "application/javascript",
    "application/json",
    "image/svg+xml",
    # OAI-PMH answers and sitemaps (hub.harvest): repetitive markup that shrinks ~10×.
    "text/xml",
    "application/xml",
}
MIN_COMPRESS_BYTES = 500  # below this the gzip header and a round of deflate win nothing
MAX_COMPRESS_BYTES = 4 * 1024 * 1024  # bigger bodies are downloads, not pages: never buffer them
PAGE_MAX_AGE = 60
STATIC_MAX_AGE = 365 * 24 * 3600


def _accepts_gzip() -> bool:
    return request.accept_encodings["gzip"] > 0


def _add_vary(response: Response, *names: str) -> None:
    for name in names:
        response.vary.add(name)


def compress(response: Response) -> Response:
    if (
        response.mimetype not in COMPRESSIBLE
        or response.status_code < 200
        or response.status_code in (204, 206, 304)
        or "Content-Encoding" in response.headers
        or "Content-Range" in response.headers
        or request.method == "HEAD"
    ):
        return response
    if request.endpoint == "static" and response.direct_passthrough:
        # send_file hands over a file wrapper; a small stylesheet or script is read once.
        if (response.content_length or MAX_COMPRESS_BYTES) >= MAX_COMPRESS_BYTES:
            return response
        response.direct_passthrough = False
    elif response.is_streamed:
        return response
    _add_vary(response, "Accept-Encoding")
    if not _accepts_gzip():
        return response
    body = response.get_data()
    if len(body) < MIN_COMPRESS_BYTES:
        return response
    # mtime=0: the same page compresses to the same bytes (stable for caches and tests).
    response.set_data(gzip.compress(body, compresslevel=6, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    etag, weak = response.get_etag()
    if etag:
        # The compressed body is a different representation: it needs its own validator.
        response.set_etag(f"{etag}-gzip", weak=bool(weak))
    return response


def _cache_headers(response: Response) -> None:
    if request.endpoint == "static":
        if request.args.get("v"):
            response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}, immutable"
        return
    if "Cache-Control" in response.headers:
        return  # the view decided, Vary included (blob downloads, course ZIPs, sync)
    html = response.mimetype == "text/html"
    # Who asks decides what an answer holds (a draft, the user's name, a 404 instead of
    # a file): a cache must not hand one reader's copy to another with other credentials.
    _add_vary(response, "Authorization", "Cookie")
    if html:
        _add_vary(response, "Accept-Language")  # every page is in the reader's language
    # Credentials sent make an answer personal even where the view never looked at them:
    # this hook cannot tell, and a signed-in page in a shared cache is the leak to avoid.
    # The session cookie is written after this hook, so ask the session, not the headers.
    personal = (
        g.get("user") is not None
        or "Authorization" in request.headers
        or current_app.config["SESSION_COOKIE_NAME"] in request.cookies
        or session.modified
        or "Set-Cookie" in response.headers
    )
    if personal or request.method not in ("GET", "HEAD") or response.status_code != 200:
        response.headers["Cache-Control"] = "private, no-store"
        return
    if html:
        response.headers["Cache-Control"] = f"public, max-age={PAGE_MAX_AGE}"
    if request.method == "GET" and not response.is_streamed and not response.direct_passthrough:
        # The same for every anonymous reader with this URL, language and data saver:
        # hub.pagecache may keep it (it checks the final headers for Set-Cookie again).
        request.environ[pagecache.STORE] = True


class StaticVersions:
    """A short content hash per static file, recomputed when the file changes (mtime)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._known: dict[str, tuple[float, str]] = {}

    def version(self, filename: str) -> str | None:
        path = (self.folder / filename).resolve()
        if not path.is_relative_to(self.folder.resolve()) or not path.is_file():
            return None
        mtime = path.stat().st_mtime
        known = self._known.get(filename)
        if known is None or known[0] != mtime:
            known = (mtime, hashlib.sha256(path.read_bytes()).hexdigest()[:10])
            self._known[filename] = known
        return known[1]


def init_app(app: Flask) -> None:
    versions = StaticVersions(Path(app.static_folder or "static"))

    @app.url_defaults
    def _static_version(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = versions.version(values["filename"])
            if version:
                values["v"] = version

    @app.after_request
    def _light(response: Response) -> Response:
        _cache_headers(response)
        return compress(response)

    settings = app.extensions["hub.settings"]
    if settings.page_cache_mb:
        from hub.db import get_database
        from hub.i18n import COOKIE, locale_of
        from hub.media.views import DATA_SAVER_COOKIE, data_saver_of
        from hub.textbooks.browse_views import COOKIE as TEXTBOOK_COOKIE

        def key_of(request: Request) -> tuple[str, ...]:
            return (locale_of(request), "saver" if data_saver_of(request) else "")

        store = pagecache.Store(settings.page_cache_mb * 1024 * 1024, PAGE_MAX_AGE)
        app.extensions["hub.page_cache"] = store
        app.wsgi_app = pagecache.PageCache(  # type: ignore[method-assign]
            app.wsgi_app,
            generation=pagecache.generation_reader(get_database(app).engine),
            store=store,
            key_of=key_of,
            # Preference cookies, kept in the key; any other cookie skips the cache.
            cookies=(COOKIE, DATA_SAVER_COOKIE, TEXTBOOK_COOKIE),
        )


def serve(app: Flask, host: str, port: int, *, threads: int = 8, connections: int = 1000) -> None:
    """Serve ``app`` with waitress in this process, tuned for slow downloads and big uploads (hub.serving)."""
    from hub.serving import serve_in_process

    serve_in_process(app, threads=threads, connections=connections, host=host, port=port)
