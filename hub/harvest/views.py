"""``/oai`` (OAI-PMH), ``/sitemap.xml`` and ``/robots.txt``: parse, call the service, serialise.

These answers are the same for every reader: no session, no cookie, no language.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import NotFound

from hub.db import request_session
from hub.harvest import jsonld, oai, services
from hub.harvest.metadata import absolute_url

blueprint = Blueprint("harvest", __name__)

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
XML = "application/xml; charset=utf-8"


@blueprint.app_template_global()
def course_learning_resource(course: Any, lessons: Any) -> dict[str, Any] | None:
    return jsonld.course_resource(course, lessons)


@blueprint.app_template_global()
def lesson_learning_resource(lesson: Any) -> dict[str, Any] | None:
    return jsonld.lesson_resource(lesson)


@blueprint.route("/oai", methods=["GET", "POST"])
def oai_pmh() -> Response:
    settings = current_app.extensions["hub.settings"]
    # POST carries the arguments form-encoded (the protocol's only POST form); the
    # query string of a POST is not an OAI argument list.
    source = request.form if request.method == "POST" else request.args
    repo = oai.Repository(
        name=settings.oai_repository_name,
        base_url=absolute_url("harvest.oai_pmh"),
        admin_email=settings.oai_admin_email or f"webmaster@{request.host.split(':')[0]}",
        repository_id=oai.repository_id(settings.oai_repository_id, settings.public_url, request.host),
        course_url=lambda course_id: absolute_url("catalog.course_page", course_id=course_id),
        page_size=settings.oai_page_size,
        secret_key=current_app.config["SECRET_KEY"],
    )
    body = oai.respond(request_session(), repo, source.to_dict(flat=False))
    return Response(body, mimetype="text/xml", content_type="text/xml; charset=utf-8")


def _lastmod(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _urlset(rows: list[tuple[str, datetime]]) -> str:
    lines = [f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{SITEMAP_NS}">']
    for loc, lastmod in rows:
        lines.append(f"<url><loc>{escape(loc)}</loc><lastmod>{_lastmod(lastmod)}</lastmod></url>")
    lines.append("</urlset>\n")
    return "\n".join(lines)


@blueprint.get("/sitemap.xml")
def sitemap() -> Response:
    """Public course and lesson pages with their last change; an index of pages past 50,000 URLs.

    ``?courses=N`` / ``?lessons=N`` is page N (from 1) of one kind, linked from the index.
    """
    session = request_session()
    per_file = current_app.extensions["hub.settings"].sitemap_max_urls
    counts = services.sitemap_counts(session)
    kind = next((k for k in ("courses", "lessons") if k in request.args), None)
    if kind is None and counts.courses + counts.lessons > per_file:
        lines = [f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{SITEMAP_NS}">']
        for name, total in (("courses", counts.courses), ("lessons", counts.lessons)):
            for page in range(1, -(-total // per_file) + 1):
                loc = absolute_url("harvest.sitemap", **{name: page})
                lines.append(f"<sitemap><loc>{escape(loc)}</loc></sitemap>")
        lines.append("</sitemapindex>\n")
        return Response("\n".join(lines), content_type=XML)
    rows: list[tuple[str, datetime]] = []
    if kind is None:
        courses = services.sitemap_courses(session, 0, per_file)
        lessons = services.sitemap_lessons(session, 0, per_file)
    else:
        number = request.args.get(kind, "")
        if not (number.isascii() and number.isdigit() and 1 <= int(number) <= 10**6):
            raise NotFound()
        offset = (int(number) - 1) * per_file
        courses = [] if kind == "lessons" else services.sitemap_courses(session, offset, per_file)
        lessons = [] if kind == "courses" else services.sitemap_lessons(session, offset, per_file)
    rows.extend((absolute_url("catalog.course_page", course_id=i), when) for i, when in courses)
    rows.extend((absolute_url("catalog.lesson_page", lesson_id=i), when) for i, when in lessons)
    if kind is not None and not rows:
        raise NotFound()
    return Response(_urlset(rows), content_type=XML)


@blueprint.get("/robots.txt")
def robots() -> Response:
    # Crawlers may read every page; the API (and with it every media download) is for
    # programs and people, not for crawlers spending a slow link on gigabytes of video.
    text = f"User-agent: *\nDisallow: /api/\n\nSitemap: {absolute_url('harvest.sitemap')}\n"
    return Response(text, content_type="text/plain; charset=utf-8")
