"""Search through the app: services, the JSON API and the HTML page, with a real database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.catalog.models import Course
from hub.search import SearchEngine, services
from tests.conftest import Accounts


class Catalog:
    """Courses made through the API, indexed the way the worker does it."""

    def __init__(self, client: FlaskClient, make: Accounts, db: Session, engine: SearchEngine) -> None:
        self.client, self.db, self.engine = client, db, engine
        school = make.school()
        self.auth = make.bearer(make.user("up@x.cn", school, "uploader"))
        self.other_school = make.school("乡村小学", "rural")

    def course(self, body: dict[str, Any], lessons: list[dict[str, str]], publish: bool = True) -> int:
        created = self.client.post("/api/v1/courses", json=body, headers=self.auth)
        assert created.status_code == 201, created.get_json()
        course_id: int = created.get_json()["id"]
        for lesson in lessons:
            response = self.client.post(f"/api/v1/courses/{course_id}/lessons", json=lesson, headers=self.auth)
            assert response.status_code == 201
        if publish:
            assert self.client.post(f"/api/v1/courses/{course_id}/publish", headers=self.auth).status_code == 200
        self.index(course_id)
        return course_id

    def index(self, course_id: int) -> None:
        self.db.expire_all()
        services.index_course(self.db, self.engine, course_id)

    def search(self, **params: Any) -> dict[str, Any]:
        response = self.client.get("/api/v1/search", query_string=params)
        assert response.status_code == 200, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body


@pytest.fixture
def catalog(
    client: FlaskClient, make: Accounts, db: Session, engine: SearchEngine, course_body: dict[str, Any]
) -> Catalog:
    cat = Catalog(client, make, db, engine)
    cat.course(
        course_body,
        [
            {"title": "一元二次方程的解法", "summary": "配方法与公式法", "unit": "第二十一章"},
            {"title": "二次函数", "summary": "抛物线的图像"},
        ],
    )
    cat.course(
        {**course_body, "title": "统编版语文三年级上册", "subject": "chinese", "grades": [3], "edition": "统编版"},
        [{"title": "古诗三首", "summary": "《山行》《赠刘景文》《夜书所见》"}],
    )
    cat.course(
        {
            **course_body,
            "title": "Grade 7 Biology",
            "subject": "biology",
            "grades": [7],
            "language": "en",
            "edition": "",
            "volume": "",
            "summary": "Plants and cells",
        },
        [{"title": "Photosynthesis", "summary": "How green plants make food from light."}],
    )
    return cat


def test_search_api_shape_and_chinese_cases(catalog: Catalog) -> None:
    body = catalog.search(q="二次方程")
    assert body["total"] >= 1 and body["page"] == 1
    # The course titled 一元二次方程 first, then its lesson 一元二次方程的解法.
    first_two = [(h["type"], h["title"]) for h in body["hits"][:2]]
    assert first_two == [("course", "一元二次方程"), ("lesson", "一元二次方程的解法")]
    hit = body["hits"][1]
    assert hit["title_html"] == "一元<mark>二次方程</mark>的解法"
    assert hit["unit"] == "第二十一章"
    assert hit["course"]["title"] == "一元二次方程" and hit["course"]["school"]["name"]
    assert body["facets"]["subject"] == {"math": body["total"]}
    assert catalog.search(q="古詩")["hits"][0]["title"] == "古诗三首"
    assert "古诗三首" in [h["title"] for h in catalog.search(q="gushi")["hits"]]
    assert catalog.search(q="photosinthesis")["suggestion"] == "photosynthesis"


def test_drafts_and_withdrawn_courses_never_appear(catalog: Catalog, course_body: dict[str, Any]) -> None:
    draft = catalog.course({**course_body, "title": "草稿课程光合作用"}, [{"title": "光合作用草稿"}], publish=False)
    assert catalog.search(q="光合作用")["total"] == 0
    course_id = catalog.search(q="古诗")["hits"][0]["course"]["id"]
    assert catalog.client.post(f"/api/v1/courses/{course_id}/withdraw", headers=catalog.auth).status_code == 200
    # Before the worker updates the index, hydration already hides it...
    assert catalog.search(q="古诗")["hits"] == []
    catalog.index(course_id)
    # ...and after, the index no longer has it.
    assert catalog.search(q="古诗")["total"] == 0
    # Even the owning school sees drafts in the catalog, not in search.
    own = catalog.client.get("/api/v1/search", query_string={"q": "草稿"}, headers=catalog.auth)
    assert own.get_json()["total"] == 0
    assert draft


def test_edits_reach_the_index(catalog: Catalog) -> None:
    course_id = catalog.search(q="Photosynthesis")["hits"][0]["course"]["id"]
    patched = catalog.client.patch(
        f"/api/v1/courses/{course_id}", json={"title": "Grade 8 Life Science"}, headers=catalog.auth
    )
    assert patched.status_code == 200
    catalog.index(course_id)
    assert catalog.search(q="life science", type="course")["hits"][0]["title"] == "Grade 8 Life Science"


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},
        {"q": '"'},
        {"q": '"古诗'},
        {"q": "*"},
        {"q": "AND("},
        {"q": "title:古诗"},
        {"q": "古诗 OR (方程 AND NOT"},
        {"q": "😀 古诗 🎉 equations ＡＢＣ"},
        {"q": "' OR 1=1; DROP TABLE course; --"},
        {"q": "%' UNION SELECT * FROM user_account --"},
        {"q": "方程", "page": 999},
        {"q": "\x1f\u200b"},  # NUL is refused before any view (tests/unit/test_inputs.py)
    ],
)
def test_bad_input_answers_with_results_never_500(catalog: Catalog, params: dict[str, Any]) -> None:
    body = catalog.search(**params)
    assert isinstance(body["hits"], list) and body["total"] >= 0


@pytest.mark.parametrize(
    "params",
    [
        {"q": "长" * 10_000},
        {"subject": "alchemy"},
        {"grade": 12},
        {"grade": "five"},
        {"page": 0},
        {"page": 10**9},
        {"language": "fr"},
        {"kind": "hologram"},
    ],
)
def test_bad_parameters_are_a_clear_422(client: FlaskClient, engine: SearchEngine, params: dict[str, Any]) -> None:
    response = client.get("/api/v1/search", query_string=params)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid" and error["fields"]


def test_unknown_free_text_filters_match_nothing(catalog: Catalog) -> None:
    assert catalog.search(q="方程", edition="不存在的版本")["total"] == 0
    assert catalog.search(q="方程", school=99999)["total"] == 0


def test_suggest_endpoint(catalog: Catalog) -> None:
    response = catalog.client.get("/api/v1/search/suggest", query_string={"q": "photo"})
    assert response.status_code == 200
    suggestions = response.get_json()["suggestions"]
    assert suggestions[0]["title"] == "Photosynthesis"
    assert len(response.data) < 500  # small enough for every keystroke on a slow link
    assert catalog.client.get("/api/v1/search/suggest", query_string={"q": "一元"}).get_json()["suggestions"]
    assert catalog.client.get("/api/v1/search/suggest", query_string={"q": ""}).get_json() == {"suggestions": []}


def test_html_page_without_javascript(catalog: Catalog) -> None:
    page = catalog.client.get("/search", query_string={"q": "古詩", "subject": ""})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # Its one script (autocomplete) is an enhancement from a file: the form above searches without it.
    scripts = re.findall(r"<script[^>]*>", html)
    assert len(scripts) == 1 and 'src="/static/search-suggest.js' in scripts[0], scripts
    assert '<form method="get" action="/search"' in html
    assert "<mark>古诗</mark>三首" in html
    assert 'name="q" value="古詩"' in html
    assert "subject=chinese" in html  # a facet link
    empty = catalog.client.get("/search")
    assert empty.status_code == 200
    bad = catalog.client.get("/search", query_string={"grade": "x"}, headers={"Accept": "text/html"})
    assert bad.status_code == 422


def test_check_reports_missing_stale_and_extra(catalog: Catalog, db: Session, engine: SearchEngine) -> None:
    assert services.check(db, engine).ok
    course = db.scalars(select(Course).where(Course.title == "Grade 7 Biology")).one()
    course.title = "Grade 7 Biology (new)"
    db.commit()
    report = services.check(db, engine)
    assert report.stale and not report.missing
    rebuilt = services.rebuild(db, engine)
    assert rebuilt.documents == report.expected
    assert services.check(db, engine).ok
    engine.index.destroy()
    report = services.check(db, engine)
    assert report.state.status == "missing" and len(report.missing) == report.expected


def test_missing_or_corrupt_index_is_rebuilt_in_the_background(catalog: Catalog, engine: SearchEngine) -> None:
    engine.index.destroy()
    first = catalog.search(q="古诗")
    assert first["total"] == 0 and first["notice"]
    engine.wait_for_rebuild(30)
    assert catalog.search(q="古诗")["total"] >= 1

    generation = engine.index.root / engine.index.current_generation()
    for path in generation.iterdir():
        if path.suffix in (".toc", ".seg") or path.name.startswith("_MAIN"):
            path.write_bytes(b"not an index")
    engine.index.close()
    # Overwritten behind the hub's back: no commit or index update tells the page cache.
    catalog.client.application.extensions["hub.page_cache"].clear()
    engine._last_attempt = -1e9  # the retry pause is for failures, not for this test
    assert catalog.search(q="古诗")["notice"]
    engine.wait_for_rebuild(30)
    assert catalog.search(q="古诗")["total"] >= 1


def test_a_missing_index_is_rebuilt_by_the_worker_task(catalog: Catalog, engine: SearchEngine, db: Session) -> None:
    engine.index.destroy()
    course_id = db.scalars(select(Course.id)).first()
    assert course_id is not None
    catalog.index(course_id)
    assert engine.index.state().ok
    assert catalog.search(q="古诗")["total"] >= 1


def test_damaged_segment_files_answer_with_a_notice_not_a_500(catalog: Catalog, engine: SearchEngine) -> None:
    generation = engine.index.root / engine.index.current_generation()
    for path in generation.iterdir():
        if path.suffix not in (".toc", ".json") and path.is_file():
            path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    engine.index.close()
    engine.query.bitmaps.clear()
    body = catalog.search(q="古诗")
    assert body["notice"] or body["total"] >= 0
    engine.wait_for_rebuild(30)
    assert catalog.search(q="古诗")["total"] >= 1


def test_cli_check_and_rebuild(catalog: Catalog, engine: SearchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from hub.search import cli

    app: Flask = catalog.client.application
    monkeypatch.setattr(cli, "_app", lambda: app)
    runner = CliRunner()
    checked = runner.invoke(cli.search_cli, ["check"])
    assert checked.exit_code == 0, checked.output
    assert "missing: 0" in checked.output and "stale: 0" in checked.output
    engine.index.destroy()
    checked = runner.invoke(cli.search_cli, ["check"])
    assert checked.exit_code == 1 and "index: missing" in checked.output
    rebuilt = runner.invoke(cli.search_cli, ["rebuild"])
    assert rebuilt.exit_code == 0 and "search index rebuilt: 7 documents" in rebuilt.output, rebuilt.output
    assert runner.invoke(cli.search_cli, ["check"]).exit_code == 0


def test_every_filter_through_the_api_matches_its_facet_count(catalog: Catalog) -> None:
    import io

    lesson = catalog.search(q="Photosynthesis", type="lesson")["hits"][0]
    sheet = catalog.client.post(
        f"/api/v1/lessons/{lesson['id']}/materials",
        data={"title": "叶绿体观察记录单", "file": (io.BytesIO(b"%PDF-1.4\n" + b"x" * 3000), "sheet.pdf")},
        headers=catalog.auth,
    )
    assert sheet.status_code == 201
    catalog.index(lesson["course"]["id"])
    everything = catalog.search(q="", per_page=50)
    facets = everything["facets"]
    assert set(facets) == {
        *("type", "category", "subject", "grade", "edition", "language", "kind", "school", "license"),
        *("textbook", "chapter"),
    }
    assert facets["kind"] == {"document": 2}  # the lesson and its course
    checked = 0
    for name, counts in facets.items():
        for value, count in counts.items():
            found = catalog.search(q="", per_page=50, **{name: value})
            assert found["total"] == count, (name, value)
            for hit in found["hits"]:
                course = hit["course"]
                expected = {
                    "type": hit["type"],
                    "category": course["category"],
                    "subject": course["subject"],
                    "edition": course["edition"],
                    "language": course["language"],
                    "school": str(course["school"]["id"]),
                    "license": course["license"],
                }.get(name)
                if name == "grade":
                    assert int(value) in course["grades"]
                elif expected is not None:
                    assert expected == value, (name, value, hit)
            checked += 1
    assert checked >= 15
    # A material's title finds its lesson.
    assert "Photosynthesis" in [h["title"] for h in catalog.search(q="叶绿体")["hits"]]


def test_pinyin_initials_through_the_api(catalog: Catalog) -> None:
    assert "古诗三首" in [h["title"] for h in catalog.search(q="gsss")["hits"]]
    assert "一元二次方程的解法" in [h["title"] for h in catalog.search(q="yyecfc")["hits"]]


def test_a_deleted_course_leaves_the_index_through_its_queued_task(
    catalog: Catalog, db: Session, engine: SearchEngine
) -> None:
    from hub.jobs import INDEX_COURSE, Outbox
    from hub.search.query import SearchParams

    course_id = catalog.search(q="古诗")["hits"][0]["course"]["id"]
    assert catalog.client.post(f"/api/v1/courses/{course_id}/withdraw", headers=catalog.auth).status_code == 200
    # The worker has not run since: the index still holds the course when it is deleted.
    assert engine.query.run(SearchParams(q="古诗")).total > 0
    assert catalog.client.delete(f"/api/v1/courses/{course_id}", headers=catalog.auth).status_code == 204
    db.expire_all()
    last = db.scalars(select(Outbox).where(Outbox.task == INDEX_COURSE).order_by(Outbox.id.desc())).first()
    assert last is not None and last.args == [course_id]
    services.index_course(db, engine, course_id)  # what the worker does with that row
    assert engine.query.run(SearchParams(q="古诗")).total == 0
    assert services.check(db, engine).ok


def test_the_batch_task_indexes_each_course_it_names(app: Flask, catalog: Catalog, engine: SearchEngine) -> None:
    """`hub.search.index_courses` (one per synced transaction of courses) does what index_course does, for each."""
    import workers.search
    from hub.search.query import SearchParams

    ids = sorted({hit["course"]["id"] for q in ("二次方程", "古诗") for hit in catalog.search(q=q)["hits"]})
    assert len(ids) == 2
    for course_id in ids:
        response = catalog.client.post(f"/api/v1/courses/{course_id}/withdraw", headers=catalog.auth)
        assert response.status_code == 200
    assert engine.query.run(SearchParams(q="古诗")).total > 0  # no worker has run yet
    with app.app_context():
        workers.search.index_courses.run(ids)
    assert engine.query.run(SearchParams(q="古诗")).total == 0
    assert engine.query.run(SearchParams(q="二次方程")).total == 0
    assert services.check(catalog.db, engine).ok


# Issue 18, "search that forgives": each way a teacher types pinyin on a phone, and
# the Chinese it stands for. Each form must find everything the Chinese finds.
PINYIN_FORMS = [
    ("fen shu", "分数"),  # syllables with spaces
    ("yi yuan er ci", "一元二次"),
    ("fenshu", "分数"),  # without spaces
    ("yiyuanerci", "一元二次"),
    ("peifang", "配方"),  # the beginning of a longer word (配方法)
    ("peifangfa", "配方法"),
    ("gougu", "勾股"),  # of 勾股定理
    ("shifen", "时分"),  # the beginning of a chapter named 时、分、秒, without the marks
    ("时分秒", "时、分、秒"),
]


@pytest.fixture
def textbook(catalog: Catalog, course_body: dict[str, Any]) -> Catalog:
    catalog.course(
        {**course_body, "title": "人教版数学五年级下册", "grades": [5]},
        [
            {"title": "分数的意义", "summary": "认识分数单位。", "unit": "第四单元 分数的意义和性质"},
            {"title": "约分", "summary": "把一个分数化成和它相等的最简分数。"},
        ],
    )
    catalog.course(
        {**course_body, "title": "人教版数学八年级下册", "grades": [8]},
        [{"title": "勾股定理的证明", "summary": "赵爽弦图。", "unit": "第十七章 勾股定理"}],
    )
    catalog.course(
        {**course_body, "title": "人教版数学三年级上册", "grades": [3]},
        [{"title": "认识钟表", "summary": "看钟面读出时间。", "unit": "第一单元 时、分、秒"}],
    )
    return catalog


def _found(db: Session, engine: SearchEngine, q: str) -> set[tuple[str, int]]:
    from hub.search.query import SearchParams

    page = services.search(db, engine, None, SearchParams(q=q, per_page=50))
    assert not page.relaxed
    return {(hit.type, hit.id) for hit in page.hits}


@pytest.mark.parametrize(("typed", "chinese"), PINYIN_FORMS)
def test_pinyin_forms_find_what_the_chinese_finds(
    textbook: Catalog, db: Session, engine: SearchEngine, typed: str, chinese: str
) -> None:
    wanted = _found(db, engine, chinese)
    assert wanted, chinese
    assert wanted <= _found(db, engine, typed)


def test_pinyin_finds_summaries_and_chapter_names(textbook: Catalog, db: Session, engine: SearchEngine) -> None:
    titles = {hit.title for hit in services.search(db, engine, None, _params("zuijian fenshu")).hits}
    assert titles == {"约分"}  # 最简分数 is only in its summary
    titles = {hit.title for hit in services.search(db, engine, None, _params("xingzhi")).hits}
    assert "分数的意义" in titles  # 性质 is only in its chapter (unit) name


def test_pinyin_initials_find_the_titles(textbook: Catalog, db: Session, engine: SearchEngine) -> None:
    titles = [hit.title for hit in services.search(db, engine, None, _params("fs")).hits]
    assert "分数的意义" in titles
    # Initials are of titles and chapter names (not summaries): fs finds each lesson
    # whose title or chapter says 分数.
    named = {(h.type, h.id) for h in services.search(db, engine, None, _params("分数")).hits if "分数" in h.title}
    assert named and named <= _found(db, engine, "fs")
    assert "认识钟表" in [hit.title for hit in services.search(db, engine, None, _params("sfm")).hits]
    # The beginning of a long word's initials: 一元二次 of 一元二次方程.
    assert "一元二次方程的解法" in [hit.title for hit in services.search(db, engine, None, _params("yyec")).hits]


def _params(q: str) -> Any:
    from hub.search.query import SearchParams

    return SearchParams(q=q)


def test_pinyin_with_a_space_through_http(textbook: Catalog) -> None:
    body = textbook.search(q="fen shu")
    assert body["relaxed"] is False
    assert "分数的意义" in [h["title"] for h in body["hits"]]
    page = textbook.client.get("/search", query_string={"q": "fen shu"}, headers={"Accept-Language": "zh-CN"})
    html = page.get_data(as_text=True)
    assert "没有同时包含全部关键词的结果" not in html
    assert "<mark>分数</mark>的意义" in html  # the Chinese the pinyin read as is marked
    suggestions = textbook.client.get("/api/v1/search/suggest", query_string={"q": "fen sh"}).get_json()
    assert "分数的意义" in [s["title"] for s in suggestions["suggestions"]]
    suggestions = textbook.client.get("/api/v1/search/suggest", query_string={"q": "gougudingl"}).get_json()
    assert [s["title"] for s in suggestions["suggestions"]] == ["勾股定理的证明"]


@pytest.mark.parametrize(
    ("language", "partial", "nothing"),
    [
        ("en", "No result has every word", "Nothing found."),
        ("zh-CN", "没有同时包含全部关键词的结果", "没有找到"),
    ],
)
def test_an_empty_result_never_claims_partial_matches(
    catalog: Catalog, language: str, partial: str, nothing: str
) -> None:
    # Two words the index has never seen: the relaxed (any-word) search finds nothing either.
    body = catalog.search(q="xyzzy qwvbk")
    assert body["total"] == 0 and body["relaxed"] is False
    html = catalog.client.get(
        "/search", query_string={"q": "xyzzy qwvbk"}, headers={"Accept-Language": language}
    ).get_data(as_text=True)
    assert partial not in html
    assert nothing in html
    # When some words match, it is still said.
    relaxed = catalog.client.get(
        "/search", query_string={"q": "古诗 xyzzy"}, headers={"Accept-Language": language}
    ).get_data(as_text=True)
    assert partial in relaxed
