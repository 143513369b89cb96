"""Queries against a small index built without a database: matching, ranking, facets, snippets."""

from __future__ import annotations

from hub.search.analysis import analyze_query
from hub.search.query import QueryEngine, SearchParams, highlight


def titles(queries: QueryEngine, q: str, **filters: str) -> list[str]:
    from tests.unit.search.conftest import CATALOG

    names = {f"course:{c.id}": c.title for c in CATALOG}
    names.update({f"lesson:{lesson.id}": lesson.title for c in CATALOG for lesson in c.lessons})
    result = queries.run(SearchParams(q=q, filters=tuple(filters.items())))
    return [names[hit.key] for hit in result.hits]


def test_substring_of_a_chinese_word_is_found(queries: QueryEngine) -> None:
    assert titles(queries, "二次方程")[0] == "一元二次方程"


def test_word_the_segmenter_does_not_split_is_found(queries: QueryEngine) -> None:
    assert titles(queries, "古诗")[0] == "古诗三首"


def test_traditional_characters_find_simplified_titles(queries: QueryEngine) -> None:
    assert titles(queries, "古詩三首")[0] == "古诗三首"
    assert titles(queries, "一元二次方程")[0] == "一元二次方程"


def test_pinyin_full_and_initials(queries: QueryEngine) -> None:
    assert "人教版数学九年级上册" in titles(queries, "shuxue")
    assert "古诗三首" in titles(queries, "gushi")
    assert "人教版数学五年级上册" in titles(queries, "sx")


def test_english_stemming(queries: QueryEngine) -> None:
    assert titles(queries, "quadratic equation")[0] == "Quadratic equations"


def test_title_matches_rank_above_summary_matches(queries: QueryEngine) -> None:
    found = titles(queries, "photosynthesis", type="lesson")
    assert found[:2] == ["Photosynthesis", "Cell structure"]


def test_textbook_query_ranks_the_textbook_lessons_first(queries: QueryEngine) -> None:
    found = titles(queries, "人教版 五年级 分数", type="lesson")
    assert found[0] == "分数的意义"
    assert "分数的再认识" not in found  # 北师大版, not 人教版


def test_filters_facets_and_paging(queries: QueryEngine) -> None:
    result = queries.run(SearchParams(q="分数", filters=(("type", "lesson"),)))
    assert result.total == 2
    assert result.facets["edition"] == {"人教版": 1, "北师大版": 1}
    assert result.facets["grade"] == {"5": 2}
    assert result.facets["school"] == {"1": 1, "2": 1}
    only = queries.run(SearchParams(q="分数", filters=(("type", "lesson"), ("edition", "北师大版"))))
    assert only.total == 1 and only.facets["edition"] == {"北师大版": 1}
    first = queries.run(SearchParams(q="", page=1, per_page=3))
    second = queries.run(SearchParams(q="", page=2, per_page=3))
    assert first.total == second.total == 16
    assert not {h.key for h in first.hits} & {h.key for h in second.hits}
    beyond = queries.run(SearchParams(q="分数", page=50))
    assert beyond.total > 0 and beyond.hits == []


def test_kind_and_unknown_filter_values_match_nothing(queries: QueryEngine) -> None:
    videos = queries.run(SearchParams(q="", filters=(("kind", "video"), ("type", "lesson"))))
    assert videos.total == 4
    assert queries.run(SearchParams(q="方程", filters=(("edition", "no-such-edition"),))).total == 0


def test_did_you_mean_for_misspelt_english_and_unknown_chinese(queries: QueryEngine) -> None:
    assert queries.run(SearchParams(q="photosinthesis")).suggestion == "photosynthesis"
    assert queries.run(SearchParams(q="quadratic equasions")).suggestion == "quadratic equations"
    assert queries.run(SearchParams(q="photosynthesis")).suggestion is None


def test_no_document_with_every_word_relaxes_to_some(queries: QueryEngine) -> None:
    result = queries.run(SearchParams(q="photosynthesis 古诗"))
    assert result.relaxed and result.total > 0


def test_autocomplete_prefixes(queries: QueryEngine) -> None:
    keys = [h.key for h in queries.suggest_titles("photo")]
    assert keys[0] == "lesson:501"
    assert "lesson:101" in [h.key for h in queries.suggest_titles("一元")]
    assert "lesson:201" in [h.key for h in queries.suggest_titles("gus")]
    assert queries.suggest_titles("") == []


def test_highlight_marks_original_characters_and_escapes() -> None:
    units = analyze_query("古诗")
    assert highlight("學習三首古詩。", units) == "學習三首<mark>古詩</mark>。"
    assert highlight("<b>古诗</b>", units) == "&lt;b&gt;<mark>古诗</mark>&lt;/b&gt;"
    english = analyze_query("equation")
    assert highlight("Solving Equations.", english) == "Solving <mark>Equations</mark>."
    long = "前言。" * 100 + "一元二次方程" + "后记。" * 100
    snippet = highlight(long, analyze_query("二次方程"), max_chars=60)
    assert snippet.startswith("…") and snippet.endswith("…") and "<mark>二次方程</mark>" in snippet
    # Bigrams found apart are marked one by one.
    assert highlight("方程的二次项", analyze_query("二次方程")) == "<mark>方程</mark>的<mark>二次</mark>项"


def test_pinyin_marks_the_chinese_it_reads_as() -> None:
    assert highlight("认识分数单位", analyze_query("fenshu")) == "认识<mark>分数</mark>单位"
    assert highlight("分数的意义", analyze_query("fen shu")) == "<mark>分数</mark>的意义"
    assert highlight("用配方法解方程", analyze_query("peifang")) == "用<mark>配方</mark>法解方程"
    # Typed without the list marks, in Chinese or pinyin: the listed words are marked.
    assert highlight("第一单元 时、分、秒", analyze_query("时分秒")) == "第一单元 <mark>时、分、秒</mark>"
    assert highlight("第一单元 时、分、秒", analyze_query("shifen")) == "第一单元 <mark>时、分</mark>、秒"
