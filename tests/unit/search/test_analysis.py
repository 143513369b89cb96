"""Analysis: folding, bigrams + words, stemming, pinyin, and query parsing that never fails."""

from __future__ import annotations

import pytest

from hub.search import analysis


def test_folding_keeps_length_and_meets_both_scripts() -> None:
    for text in ("數學 古詩三首", "ＭＡＴＨ　Ｇｒａｄｅ５", "一元二次方程 Quadratic"):
        assert len(analysis.fold(text)) == len(text)
    assert analysis.fold("數學 古詩三首") == "数学 古诗三首"
    assert analysis.fold("ＭＡＴＨ　Ｇｒａｄｅ５") == "math grade5"


def test_chinese_terms_are_bigrams_plus_long_words() -> None:
    terms = analysis.analyze("一元二次方程")
    assert {"一元", "元二", "二次", "次方", "方程"} <= set(terms)
    assert "一元二次方程" in terms  # the whole word ranks exact matches higher
    # jieba alone splits 古诗三首 as 古 + 诗三首; the bigrams still have 古诗.
    assert "古诗" in analysis.analyze("古诗三首")
    assert set(analysis.analyze("古诗", unigrams=True)) == {"古诗", "古", "诗"}


def test_english_is_stemmed_without_stop_words() -> None:
    assert analysis.analyze("The Quadratic Equations") == ["quadrat", "equat"]
    assert analysis.analyze("equation") == analysis.analyze("equations")


def test_pinyin_full_and_initials_of_words_and_subwords() -> None:
    assert {"shuxue", "sx"} <= set(analysis.pinyin_terms("数学"))
    terms = set(analysis.pinyin_terms("古诗三首"))
    assert {"gushi", "gs", "gushisanshou", "gsss"} <= terms
    assert analysis.pinyin_terms("Photosynthesis") == []


def test_query_syntax_emoji_and_junk_are_just_ignored() -> None:
    units = analysis.analyze_query("\"古诗 AND( title:*方程* 😀 ) ' OR 1=1; --")
    texts = [u.text for u in units]
    assert texts == ["古诗", "title", "方程", "1", "1"]
    assert analysis.analyze_query("") == []
    assert analysis.analyze_query("😀🎉 ！？") == []
    assert analysis.analyze_query("the") != []  # only stop words: still a query


def test_queries_are_bounded() -> None:
    units = analysis.analyze_query("方程 " * 5000)
    assert len(units) == 12
    assert len(analysis.analyze_query("长" * 10_000)[0].required) < 1000


def test_traditional_query_becomes_simplified_terms() -> None:
    (unit,) = analysis.analyze_query("古詩")
    assert unit.required == ("古诗",)


def test_pinyin_grams_are_the_syllable_pairs_of_every_chinese_run() -> None:
    assert analysis.pinyin_grams("配方法 and 勾股") == ["pei'fang", "fang'fa", "gou'gu"]
    # The reading of a polyphonic character comes from its word: 银行 is yin hang.
    assert "yin'hang" in analysis.pinyin_grams("去银行")
    assert set(analysis.pinyin_grams("分数", unigrams=True)) == {"fen'shu", "fen", "shu"}


def test_a_chinese_run_goes_on_across_list_marks() -> None:
    # A chapter named 时、分、秒 has what 时分秒 and its pinyin need, and 秒 alone as before.
    terms = analysis.analyze("第一单元 时、分、秒")
    assert {"时分", "分秒", "秒"} <= set(terms)
    assert "元时" not in terms  # a space still ends the run
    assert {"shi'fen", "fen'miao"} <= set(analysis.pinyin_grams("时、分、秒"))
    # Each run whole, full and initials, beside the text's: sfm, not only dydysfm.
    assert {"shifenmiao", "sfm"} <= set(analysis.pinyin_terms("第一单元 时、分、秒"))
    # And the listed words run together (shifen, fenmiao): they rank the chapter above 四十分钟.
    assert {"shifen", "sf", "fenmiao", "fm"} <= set(analysis.pinyin_terms("时、分、秒"))
    # Typed with the marks, it is one unit, the same as without them.
    (unit,) = analysis.analyze_query("时、分、秒")
    assert (unit.text, unit.required) == ("时分秒", ("时分", "分秒"))
    # ， ends a thought: no bigram across it.
    assert "时分" not in analysis.analyze("时，分")


def test_split_pinyin_reads_letters_as_syllables() -> None:
    assert analysis.split_pinyin("fenshu") == [("fen", "shu")]
    assert set(analysis.split_pinyin("fangan")) == {("fang", "an"), ("fan", "gan")}
    assert analysis.split_pinyin("xi'an") == [("xi", "an")]
    assert analysis.split_pinyin("photo") == []
    assert analysis.split_pinyin("fs") == []
    assert analysis.split_pinyin("fensh", partial=True) == [("fen", "sh")]
    assert len(analysis.split_pinyin("a" * 39)) <= analysis.MAX_SPELLINGS  # bounded however it is typed


@pytest.mark.parametrize(
    ("typed", "text", "grams"),
    [
        ("fen shu", "fen shu", (("fen'shu",),)),
        ("fenshu", "fenshu", (("fen'shu",),)),
        ("yi yuan er ci", "yi yuan er ci", (("yi'yuan", "yuan'er", "er'ci"),)),
    ],
)
def test_syllables_typed_apart_are_one_unit(typed: str, text: str, grams: tuple[tuple[str, ...], ...]) -> None:
    (unit,) = analysis.analyze_query(typed)
    assert unit.text == text
    assert unit.spellings[: len(grams)] == grams
    assert unit.pinyin == text.replace(" ", "")


def test_english_words_stay_english_and_initials_have_no_reading() -> None:
    first, second = analysis.analyze_query("photosynthesis fs")
    assert first.required == ("photosynthesi",) and first.spellings == ()
    assert second.spellings == () and second.pinyin == "fs"


def test_the_syllable_table_covers_pypinyins_characters() -> None:
    import unicodedata

    from pypinyin import pinyin_dict  # type: ignore[import-untyped]

    readings = set()
    for value in set(pinyin_dict.pinyin_dict.values()):
        for reading in value.split(","):
            plain = "".join(c for c in unicodedata.normalize("NFD", reading) if not unicodedata.combining(c))
            readings.add(plain.replace("u\u0308", "v"))
    # Interjections written with a lone consonant (嗯 n, 呣 m, 哼 hng) are not typed as search words.
    readings = {r for r in readings if r.isascii() and r.isalpha() and r not in {"m", "n", "ng", "hm", "hng", "r"}}
    assert readings - analysis.PINYIN_SYLLABLES == set()
