"""The HTML search page: a plain GET form, results, facet links and paging; no JavaScript."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask_babel import lazy_gettext
from pydantic import ValidationError

from hub import i18n
from hub.accounts.auth import current_user
from hub.db import request_session
from hub.errors import invalid_from_pydantic
from hub.search import SearchEngine, services
from hub.search.api import SearchQuery
from hub.textbooks import browse

blueprint = Blueprint("search", __name__)

FACET_TITLES = {
    "type": lazy_gettext("Type"),
    "category": lazy_gettext("Category"),
    "subject": lazy_gettext("Subject"),
    "grade": lazy_gettext("Grade"),
    "edition": lazy_gettext("Textbook edition"),
    "language": lazy_gettext("Language"),
    "kind": lazy_gettext("Kind"),
    "school": lazy_gettext("School"),
    "license": lazy_gettext("Licence"),
    "textbook": lazy_gettext("Textbook"),
    "chapter": lazy_gettext("Chapter"),
}


def facet_label(name: str, value: str, names: dict[str, dict[str, str]]) -> str:
    """How a facet value reads: codes by their label; schools, textbooks and chapters by the names looked up."""
    if name == "subject":
        return i18n.subject_label(value)
    if name == "grade":
        return i18n.grade_label(int(value)) if value.isdigit() else value
    if name == "category":
        return i18n.category_label(value)
    if name in ("kind", "type"):
        return i18n.label(name, value)
    if name == "language":
        return i18n.LANGUAGE_NAMES.get(value, value)
    if name in names:
        return names[name].get(value, value)
    return value


@blueprint.get("/search")
def search_page() -> str:
    args = {k: v for k, v in request.args.items() if v != "" or k == "q"}
    try:
        query = SearchQuery.model_validate(args)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    engine: SearchEngine = current_app.extensions["hub.search"]
    page = services.search(request_session(), engine, current_user(), query.params())
    args.pop("page", None)
    # Textbook and chapter facets are keys: the page shows the names (those counted and those chosen).
    books, chapters = browse.facet_names(
        request_session(),
        [*page.facets.get("textbook", {}), *([query.textbook] if query.textbook else [])],
        [*page.facets.get("chapter", {}), *([query.chapter] if query.chapter else [])],
    )
    return render_template(
        "search/results.html",
        page=page,
        query=query,
        args=args,
        facet_titles=FACET_TITLES,
        facet_label=facet_label,
        facet_names={"school": page.school_names, "textbook": books, "chapter": chapters},
        without=lambda name: {k: v for k, v in args.items() if k != name},
    )
