"""Text analysis for Chinese and English: the same functions serve indexing and queries.

Why this shape:

- **Folding** first. Traditional characters become simplified, full-width Latin
  becomes ASCII, and everything is lower-cased, so 數學, 数学, ＭＡＴＨ and math
  each meet their other spelling. The table is character for character
  (``str.translate``), which keeps offsets: the highlighter finds matches in
  the folded text and marks the same positions in the original.
- **CJK bigrams** give recall that does not depend on a dictionary: every
  substring of two or more characters a teacher types is found (二次方程 in
  一元二次方程, 古诗 in 古诗三首) because all of its bigrams are in the index.
- **Words** from a segmenter (rjieba, the Rust port of jieba, with an education
  vocabulary) are indexed beside the bigrams. A word that is itself a bigram
  adds nothing; a longer word (一元二次方程) adds a term that ranks documents
  where the query is a whole word above those where it only spans one.
- **English** words are stemmed (Porter) with stop words dropped.
- **Pinyin** of titles, full (``shuxue``) and initials (``sx``), word by word and
  for the whole title, because many rural teachers type pinyin on a phone.

Tokens are plain strings: the index takes pre-analysed term lists (see
:mod:`hub.search.schema`), which is several times faster than Whoosh's
per-token analyser objects and keeps the query side in exact agreement.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from whoosh.analysis import STOP_WORDS  # type: ignore[import-untyped]
from whoosh.lang.porter import stem as porter_stem  # type: ignore[import-untyped]

# Words a teacher searches for that jieba's general dictionary splits or misses.
# The frequency only has to beat the dictionary's split (古 + 诗三首).
EDUCATION_VOCABULARY = tuple(
    " ".join(
        [
            "语文 数学 英语 道德与法治 历史 地理 科学 物理 化学 生物 信息科技",
            "体育与健康 艺术 美术 音乐 劳动 同步课程 课后服务 教师研修 人教版",
            "北师大版 统编版 部编版 苏教版 沪教版 外研版 译林版 冀教版 湘教版 上册",
            "下册 单元 课时 一年级 二年级 三年级 四年级 五年级 六年级 七年级",
            "八年级 九年级 古诗 古诗词 古诗三首 唐诗 宋词 文言文 课文 识字 写字",
            "拼音 汉语拼音 作文 习作 口语交际 阅读理解 分数 小数 百分数 方程",
            "一元一次方程 一元二次方程 二元一次方程组 不等式 函数 一次函数 二次函数",
            "反比例函数 勾股定理 三角形 平行四边形 梯形 圆柱 圆锥 乘法口诀 加减法",
            "乘除法 四则运算 统计 概率 几何 光合作用 生态系统 细胞 电路 欧姆定律",
            "浮力 压强 牛顿第一定律 化学方程式 元素周期表 酸碱盐 信息技术 编程",
            "人工智能 科学实验 劳动教育 心理健康 班主任 教学设计 说课 听课 评课",
        ]
    ).split()
)

_VOCAB_FREQ = 200_000

# CJK Unified Ideographs, Extension A, compatibility ideographs and the
# supplementary planes (Extension B onwards): the characters that form words.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN = re.compile(rf"([{_CJK}]+)|([0-9a-z]+(?:['’][a-z]+)?)")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_PINYIN_WORD = re.compile(r"[a-z]+")

# Longest run of text analysed from one field or query: beyond this a
# document's tail adds nothing to ranking and a query is no longer a query.
MAX_TEXT_CHARS = 20_000


class Segmenter(Protocol):
    def cut(self, text: str, hmm: bool = True) -> list[str]: ...

    def cut_for_search(self, text: str, hmm: bool = True) -> list[str]: ...


@dataclass
class _Tables:
    fold: dict[int, str]
    segmenter: Segmenter
    stop_words: frozenset[str] = field(default_factory=lambda: frozenset(STOP_WORDS))


_tables: _Tables | None = None
_tables_lock = threading.Lock()


def _load_tables() -> _Tables:
    """Load the dictionaries once per process, on first use (start-up stays cheap)."""
    global _tables
    if _tables is None:
        with _tables_lock:
            if _tables is None:
                _tables = _Tables(fold=_fold_table(), segmenter=_segmenter())
    return _tables


def _fold_table() -> dict[int, str]:
    # zhconv's MediaWiki table; only its one-character entries are used, so
    # folding never changes a string's length (the highlighter relies on it).
    data: dict[str, dict[str, str]] = json.loads((importlib.resources.files("zhconv") / "zhcdict.json").read_bytes())
    table: dict[int, str] = {
        ord(trad): simp for trad, simp in data["zh2Hans"].items() if len(trad) == 1 and len(simp) == 1
    }
    # Full-width ASCII (what a Chinese input method types) and the ideographic space.
    for code in range(0xFF01, 0xFF5F):
        table[code] = chr(code - 0xFEE0)
    table[0x3000] = " "
    return table


def _segmenter() -> Segmenter:
    import rjieba

    # Our own instance: the vocabulary must not leak into other users of rjieba.
    segmenter = rjieba.Jieba()
    for word in EDUCATION_VOCABULARY:
        segmenter.add_word(word, _VOCAB_FREQ, None)
    return segmenter


def fold(text: str) -> str:
    """Simplified, half-width, lower-case; same length as ``text`` for CJK and ASCII."""
    return text.translate(_load_tables().fold).lower()


def is_cjk(text: str) -> bool:
    return _CJK_CHAR.search(text) is not None


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    # Porter is pure Python; words repeat, so the cache makes it nearly free.
    return word if word.isdigit() else str(porter_stem(word))


def bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def segment(run: str) -> list[str]:
    """jieba words of a CJK run (already folded)."""
    return _load_tables().segmenter.cut(run, False)


def analyze(text: str, *, unigrams: bool = False) -> list[str]:
    """Index terms of ``text``: CJK words + bigrams, English stems.

    ``unigrams`` also indexes every CJK character: for titles, which are short,
    so that a one-character query (诗) finds them.
    """
    tables = _load_tables()
    stop = tables.stop_words
    cut = tables.segmenter.cut
    terms: list[str] = []
    add = terms.append
    extend = terms.extend
    for cjk, word in _TOKEN.findall(fold(text[:MAX_TEXT_CHARS])):
        if cjk:
            n = len(cjk)
            if n == 1:
                add(cjk)
                continue
            extend([cjk[i : i + 2] for i in range(n - 1)])
            if unigrams:
                extend(cjk)
            # Only words longer than a bigram add information (a two-character
            # word is already one of the bigrams).
            extend([w for w in cut(cjk, False) if len(w) > 2])
        elif word not in stop:
            add(stem(word))
    return terms


def spell_words(text: str, *, cjk_words: bool = True) -> set[str]:
    """Unstemmed words of ``text``: the vocabulary "did you mean" suggests from."""
    tables = _load_tables()
    words: set[str] = set()
    for cjk, word in _TOKEN.findall(fold(text[:MAX_TEXT_CHARS])):
        if cjk:
            if cjk_words:
                words.update(w for w in tables.segmenter.cut(cjk, False) if len(w) > 1)
        elif len(word) > 2 and not word.isdigit() and word not in tables.stop_words:
            words.add(word)
    return words


@functools.lru_cache(maxsize=100_000)
def _word_pinyin(word: str) -> tuple[str, str]:
    from pypinyin import Style, lazy_pinyin

    syllables = [s for s in lazy_pinyin(word, style=Style.NORMAL, errors="ignore") if s.isalpha()]
    return "".join(syllables), "".join(s[0] for s in syllables)


def pinyin_terms(text: str) -> list[str]:
    """Full pinyin and initials of each word and sub-word, and of the whole Chinese text.

    古诗三首 → gushi, gs, sanshou, ss, gushisanshou, gsss (search-mode segmentation
    yields the sub-words, so the pinyin of 古诗 finds 古诗三首 too).
    """
    segmenter = _load_tables().segmenter
    terms: list[str] = []
    whole_full: list[str] = []
    whole_initials: list[str] = []
    for cjk, _word in _TOKEN.findall(fold(text[:200])):
        if not cjk:
            continue
        for word in segmenter.cut_for_search(cjk, False):
            if len(word) > 1:
                full, initials = _word_pinyin(word)
                terms.append(full)
                terms.append(initials)
        for word in segmenter.cut(cjk, False):
            full, initials = _word_pinyin(word)
            whole_full.append(full)
            whole_initials.append(initials)
    if len(whole_full) > 1:
        terms.append("".join(whole_full))
        terms.append("".join(whole_initials))
    return [t for t in terms if t]


def looks_like_pinyin(word: str) -> bool:
    return bool(_PINYIN_WORD.fullmatch(word))


@dataclass(frozen=True)
class QueryUnit:
    """One thing the user typed that a document must match.

    ``required`` terms must all be present (the bigrams of a Chinese word, or
    one English stem); ``pinyin`` is an alternative way to match (the term in
    the pinyin field); ``boost`` terms only raise the score (whole jieba words).
    ``text`` is the folded surface form, for "did you mean" and highlighting.
    """

    text: str
    required: tuple[str, ...]
    pinyin: str = ""
    boost: tuple[str, ...] = ()
    cjk: bool = False


def analyze_query(text: str, *, max_units: int = 12) -> list[QueryUnit]:
    """Split a query into units; anything that is not a word (syntax, emoji) is ignored.

    Query syntax is deliberately not supported: teachers type words, and a
    stray ``"`` or ``AND(`` must not turn into an error or a different query.
    """
    tables = _load_tables()
    stop = tables.stop_words
    units: list[QueryUnit] = []
    stopped: list[QueryUnit] = []
    for cjk, word in _TOKEN.findall(fold(text[:1000])):
        if cjk:
            if len(cjk) == 1:
                units.append(QueryUnit(cjk, (cjk,), cjk=True))
            else:
                words = tuple(w for w in tables.segmenter.cut(cjk, False) if len(w) > 2)
                units.append(QueryUnit(cjk, tuple(dict.fromkeys(bigrams(cjk))), boost=words, cjk=True))
        else:
            unit = QueryUnit(word, (stem(word),), pinyin=word if looks_like_pinyin(word) else "")
            (stopped if word in stop else units).append(unit)
        if len(units) >= max_units:
            break
    # A query made only of stop words ("the", "a") still means something.
    return units or stopped[:max_units]


def highlight_terms(units: Iterable[QueryUnit]) -> tuple[list[str], set[str]]:
    """What to mark in a snippet: CJK strings to find verbatim, English stems to match per word."""
    cjk: list[str] = []
    stems: set[str] = set()
    for unit in units:
        if unit.cjk:
            cjk.append(unit.text)
        else:
            stems.update(unit.required)
    return cjk, stems


def english_words(folded: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, word) of each Latin word in folded text."""
    for match in _TOKEN.finditer(folded):
        if match.group(2):
            yield match.start(), match.end(), match.group(2)
