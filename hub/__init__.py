"""OER Hub: an open educational resource sharing hub.

:func:`create_app` only wires things together; each feature package brings its
own models, services, HTML views and JSON API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # every hub.* import runs this file: Flask loads only when an app is built
    from flask import Flask

    from hub.config import Settings


def create_app(config: Mapping[str, Any] | None = None, *, web: bool = True) -> Flask:
    """Build the app; ``config`` holds ``HUB_*`` overrides on top of the environment.

    ``web=False`` leaves out what only serves requests (pages, API, their hooks and
    translations), and so their imports: commands that serve nothing, above all
    ``hub sync pull`` and ``hub bundle import`` run from cron, start in a fraction
    of the time.
    """
    from flask import Flask

    # Its session hooks raise the page generation on every commit that changes what pages
    # show, in every process that commits (web, workers, commands), not only where pages are served.
    import hub.pagecache  # noqa: F401
    from hub import jobs, search
    from hub.config import Settings
    from hub.db import Database
    from hub.media.ffmpeg import MediaLimits
    from hub.media.sandbox import Sandbox
    from hub.media.storage.factory import make_storage

    settings = Settings.load(config)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_SORT_KEYS=False,
        # CSRF tokens last as long as the session: a teacher filling a form on
        # a slow link should not lose it to a one-hour timer.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Chinese stays readable in JSON
    app.extensions["hub.settings"] = settings

    database = Database(settings.database_url)
    database.init_app(app)
    app.extensions["hub.storage"] = make_storage(settings)
    app.extensions["hub.media_limits"] = MediaLimits(
        max_duration_s=settings.media_max_duration,
        max_width=settings.media_max_width,
        max_height=settings.media_max_height,
        max_streams=settings.media_max_streams,
        max_image_pixels=settings.media_max_image_pixels,
        timeout_s=settings.media_timeout,
        max_job_s=settings.media_max_job_time,
        sandbox=Sandbox(
            mode=settings.decoder_sandbox,
            memory_mb=settings.decoder_memory_mb,
            max_file_mb=settings.decoder_max_file_mb,
            processes=settings.decoder_processes,
            work_dir=settings.work_dir,
        ),
    )
    jobs.init_app(app, settings, database)
    search.init_app(app, settings)
    if web:
        _init_web(app, settings)
    return app


def _init_web(app: Flask, settings: Settings) -> None:
    """Pages and the JSON API, with the request hooks and translations they use."""
    from hub import api, errors, i18n, inputs, security, uploads, web
    from hub.accounts import api as accounts_api
    from hub.accounts import auth
    from hub.accounts import views as account_views
    from hub.catalog import api as catalog_api
    from hub.catalog import review_api, review_views
    from hub.catalog import views as catalog_views
    from hub.harvest import views as harvest_views
    from hub.media import api as media_api
    from hub.media import views as media_views
    from hub.reach import api as reach_api
    from hub.reach import beacon as reach_beacon
    from hub.reach import views as reach_views
    from hub.search import api as search_api
    from hub.search import views as search_views
    from hub.subtitles import api as subtitles_api
    from hub.subtitles import views as subtitles_views
    from hub.sync import api as sync_api
    from hub.sync import banner as sync_banner
    from hub.sync import servers_api, servers_views
    from hub.sync import views as sync_views
    from hub.textbooks import api as textbooks_api
    from hub.textbooks import browse_views as textbook_browse
    from hub.textbooks import views as textbooks_views
    from hub.web import csrf

    inputs.init_app(app)  # first: the id converter must be in place before any route is added
    csrf.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    uploads.init_app(app)
    i18n.init_app(app, settings)
    web.init_app(app)
    security.init_app(app, settings)
    sync_banner.init_app(app, settings)

    for blueprint in (
        api.blueprint,
        accounts_api.blueprint,
        catalog_api.blueprint,
        review_api.blueprint,
        media_api.blueprint,
        search_api.blueprint,
        sync_api.blueprint,
        subtitles_api.blueprint,
        servers_api.blueprint,
        textbooks_api.blueprint,
        reach_api.blueprint,
    ):
        app.register_blueprint(blueprint)
        # The API checks CSRF itself, only for cookie sessions (hub.accounts.auth):
        # a bearer token is never sent by a browser on its own.
        csrf.exempt(blueprint)
    app.register_blueprint(catalog_views.blueprint)
    app.register_blueprint(review_views.blueprint)
    app.register_blueprint(search_views.blueprint)
    app.register_blueprint(account_views.blueprint)
    app.register_blueprint(media_views.blueprint)
    app.register_blueprint(sync_views.blueprint)
    app.register_blueprint(subtitles_views.blueprint)
    app.register_blueprint(servers_views.blueprint)
    app.register_blueprint(reach_views.blueprint)
    app.register_blueprint(harvest_views.blueprint)
    app.register_blueprint(textbook_browse.blueprint)
    app.register_blueprint(reach_beacon.blueprint)
    app.register_blueprint(textbooks_views.blueprint)
    # Harvesters POST OAI-PMH requests form-encoded, without a session or a CSRF token.
    csrf.exempt(harvest_views.blueprint)
