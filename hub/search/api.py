"""JSON search API: ``GET /api/v1/search`` and ``GET /api/v1/search/suggest``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Blueprint, current_app
from pydantic import BaseModel, ConfigDict, Field, model_validator

import hub.api
from hub.accounts.auth import current_user
from hub.api import operation
from hub.catalog.schemas import SchoolRef
from hub.db import request_session
from hub.inputs import Id
from hub.search import SearchEngine, services
from hub.search.query import FILTERS, MAX_PAGE, SearchParams
from hub.subtitles.views import lesson_url
from hub.vocab import CategoryCode, LanguageCode, LicenseId, SubjectCode

blueprint = Blueprint("search_api", __name__, url_prefix=hub.api.PREFIX)

# Longer than any real query; longer input is refused with a clear message
# instead of being analysed (and searched) for nothing.
MAX_QUERY_CHARS = 1000


class _DropEmpty(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_any(cls, data: Any) -> Any:
        # ?subject=&grade= is what a form sends for "any".
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != "" or k == "q"}
        return data


class SearchQuery(_DropEmpty):
    q: Annotated[str, Field(max_length=MAX_QUERY_CHARS, description="Words, Chinese or English, or pinyin")] = ""
    type: Literal["course", "lesson"] | None = None
    category: CategoryCode | None = None
    subject: SubjectCode | None = None
    grade: Annotated[int, Field(ge=1, le=9)] | None = None
    edition: Annotated[str, Field(max_length=50, description="Textbook edition, e.g. 人教版")] | None = None
    language: LanguageCode | None = None
    kind: Literal["video", "audio", "document", "image"] | None = None
    school: Id | None = None
    license: LicenseId | None = None
    textbook: (
        Annotated[
            str, Field(max_length=100, description="A textbook's key (GET /api/v1/textbooks), e.g. renjiao-math-3-1")
        ]
        | None
    ) = None
    chapter: (
        Annotated[
            str,
            Field(
                max_length=151,
                pattern=r"^[^/]+/[^/]+$",
                description="A chapter as its facet names it, book key/chapter key: renjiao-math-3-1/2",
            ),
        ]
        | None
    ) = None
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    per_page: Annotated[int, Field(ge=1, le=50)] = 20

    def params(self) -> SearchParams:
        filters = tuple((name, str(value)) for name in FILTERS if (value := getattr(self, name)) is not None)
        return SearchParams(q=self.q, filters=filters, page=self.page, per_page=self.per_page)


class CourseRef(BaseModel):
    id: int
    title: str
    category: str
    subject: str
    grades: list[int]
    edition: str
    volume: str
    language: str
    license: str
    school: SchoolRef


class SearchHitOut(BaseModel):
    type: Literal["course", "lesson"]
    id: int
    title: str
    snippet: str = Field(description="HTML: the summary, escaped, with <mark> around matches")
    title_html: str = Field(description="HTML: the title, escaped, with <mark> around matches")
    course: CourseRef
    unit: str | None = None
    time: int | None = Field(
        default=None, description="Lessons found by their subtitles: the second the words are spoken at"
    )
    url: str | None = Field(default=None, description="The lesson page, starting the player at `time` when given")
    position: int | None = None
    score: float


class SearchOut(BaseModel):
    total: int
    page: int
    per_page: int
    hits: list[SearchHitOut]
    facets: dict[str, dict[str, int]]
    suggestion: str | None = Field(description="A corrected query when this one found little")
    relaxed: bool = Field(description="No document had every word; these have some of them")
    notice: str = ""


class SuggestQuery(_DropEmpty):
    q: Annotated[str, Field(max_length=100)] = ""
    limit: Annotated[int, Field(ge=1, le=20)] = 8


class SuggestionOut(BaseModel):
    type: str
    id: int
    title: str
    course: int


class SuggestOut(BaseModel):
    suggestions: list[SuggestionOut]


def _engine() -> SearchEngine:
    engine: SearchEngine = current_app.extensions["hub.search"]
    return engine


def course_ref(hit: services.SearchHit) -> CourseRef:
    course = hit.course
    return CourseRef(
        id=course.id,
        title=course.title,
        category=course.category,
        subject=course.subject,
        grades=course.grades,
        edition=course.edition,
        volume=course.volume,
        language=course.language,
        license=course.license,
        school=SchoolRef(id=course.school.id, name=course.school.name),
    )


@operation(blueprint, "/search", "GET", summary="Search courses and lessons", query=SearchQuery, response=SearchOut)
def search(query: SearchQuery) -> SearchOut:
    page = services.search(request_session(), _engine(), current_user(), query.params())
    return SearchOut(
        total=page.total,
        page=page.page,
        per_page=page.per_page,
        hits=[
            SearchHitOut(
                type="lesson" if hit.type == "lesson" else "course",
                id=hit.id,
                title=hit.title,
                snippet=hit.snippet,
                title_html=hit.title_html,
                course=course_ref(hit),
                unit=hit.lesson.unit if hit.lesson is not None else None,
                position=hit.lesson.position if hit.lesson is not None else None,
                score=round(hit.score, 4),
                time=hit.time,
                url=lesson_url(hit.id, hit.time, hit.material) if hit.type == "lesson" else None,
            )
            for hit in page.hits
        ],
        facets=page.facets,
        suggestion=page.suggestion,
        relaxed=page.relaxed,
        notice=page.notice,
    )


@operation(blueprint, "/search/suggest", "GET", summary="Autocomplete titles", query=SuggestQuery, response=SuggestOut)
def suggest(query: SuggestQuery) -> SuggestOut:
    found = services.suggest(request_session(), _engine(), current_user(), query.q, query.limit)
    return SuggestOut(suggestions=[SuggestionOut(type=s.type, id=s.id, title=s.title, course=s.course) for s in found])
