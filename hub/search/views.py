"""The HTML search page: a plain GET form, results, facet links and paging; no JavaScript."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from pydantic import ValidationError

from hub.accounts.auth import current_user
from hub.db import request_session
from hub.errors import invalid_from_pydantic
from hub.search import SearchEngine, services
from hub.search.api import SearchQuery
from hub.vocab import CATEGORIES, GRADE_NAMES, SUBJECTS

blueprint = Blueprint("search", __name__)

KIND_LABELS = {"video": "视频 Video", "audio": "音频 Audio", "document": "文档 Document", "image": "图片 Image"}
TYPE_LABELS = {"course": "课程 Course", "lesson": "课时 Lesson"}
LANGUAGE_LABELS = {"zh": "中文", "en": "English"}
FACET_TITLES = {
    "type": "类型 Type",
    "category": "类别 Category",
    "subject": "学科 Subject",
    "grade": "年级 Grade",
    "edition": "教材版本 Edition",
    "language": "语言 Language",
    "kind": "资源 Kind",
    "school": "学校 School",
    "license": "许可 Licence",
}


def facet_label(name: str, value: str, school_names: dict[str, str]) -> str:
    if name == "subject":
        return " ".join(SUBJECTS.get(value, (value, "")))
    if name == "grade":
        return GRADE_NAMES.get(int(value), value) if value.isdigit() else value
    if name == "category":
        return " ".join(CATEGORIES.get(value, (value, "")))
    if name == "kind":
        return KIND_LABELS.get(value, value)
    if name == "type":
        return TYPE_LABELS.get(value, value)
    if name == "language":
        return LANGUAGE_LABELS.get(value, value)
    if name == "school":
        return school_names.get(value, value)
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
    return render_template(
        "search/results.html",
        page=page,
        query=query,
        args=args,
        facet_titles=FACET_TITLES,
        facet_label=facet_label,
        without=lambda name: {k: v for k, v in args.items() if k != name},
    )
