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
- **Pinyin**, because many rural teachers type pinyin on a phone, in two forms:
  whole words of titles and chapter names, full (``shuxue``) and initials
  (``sx``, and prefixes of a long word's initials: ``yyec`` of 一元二次方程);
  and *syllable bigrams* (``fen'shu``) of titles, summaries and chapter names,
  the pinyin twin of the CJK bigrams: a pinyin query, with or without spaces,
  is split into syllables and every adjacent pair must be present, so
  ``fenshu``, ``fen shu``, ``peifang`` and ``yiyuanerci`` find what 分数, 配方
  and 一元二次 find, wherever they stand in a word. See :func:`pinyin_grams`.

Tokens are plain strings: the index takes pre-analysed term lists (see
:mod:`hub.search.schema`), which is several times faster than Whoosh's
per-token analyser objects and keeps the query side in exact agreement.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
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
# Marks that list Chinese words (时、分、秒, 加·减): a run of Chinese goes on across
# them, so what is typed without the marks (时分秒, shifen) meets the listed words
# (see :func:`_pieces`). Not ， or 。: those end a thought, not a word.
_LIST_MARKS = "、·・"
_TOKEN = re.compile(rf"([{_CJK}]+(?:[{_LIST_MARKS}][{_CJK}]+)*)|([0-9a-z]+(?:['’][a-z]+)?)")
_LIST_MARK = re.compile(f"[{_LIST_MARKS}]")
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


def _pieces(run: str) -> list[str]:
    """The words a list mark separates in a Chinese run (时、分、秒 → 时, 分, 秒), or the run itself.

    The pieces are segmented one by one, so jieba's words are those of each listed
    word; their bigrams and syllable pairs run across the marks (时分, shi'fen).
    """
    # isalpha is true of every ideograph and false of the marks: the common case costs one C call.
    return [run] if run.isalpha() else [p for p in _LIST_MARK.split(run) if p]


def analyze(text: str, *, unigrams: bool = False, pinyin: list[str] | None = None) -> list[str]:
    """Index terms of ``text``: CJK words + bigrams, English stems.

    ``unigrams`` also indexes every CJK character: for titles, which are short,
    so that a one-character query (诗) finds them. ``pinyin`` receives the
    text's :func:`pinyin_grams` from the same segmentation (a body is cut once).
    """
    tables = _load_tables()
    stop = tables.stop_words
    cut = tables.segmenter.cut
    terms: list[str] = []
    add = terms.append
    extend = terms.extend
    for run, word in _TOKEN.findall(fold(text[:MAX_TEXT_CHARS])):
        if run:
            pieces = _pieces(run)
            cjk = run if len(pieces) == 1 else "".join(pieces)
            n = len(cjk)
            if n == 1:
                add(cjk)
                continue
            extend([cjk[i : i + 2] for i in range(n - 1)])
            if unigrams:
                extend(cjk)
            elif len(pieces) > 1:
                # A listed word of one character (秒 of 时、分、秒) is still found alone.
                extend([p for p in pieces if len(p) == 1])
            words = cut(cjk, False) if len(pieces) == 1 else [w for p in pieces for w in cut(p, False)]
            # Only words longer than a bigram add information (a two-character
            # word is already one of the bigrams).
            extend([w for w in words if len(w) > 2])
            if pinyin is not None:
                _add_syllable_pairs(pinyin, words)
        elif word not in stop:
            add(stem(word))
    return terms


def spell_words(text: str, *, cjk_words: bool = True) -> set[str]:
    """Unstemmed words of ``text``: the vocabulary "did you mean" suggests from."""
    tables = _load_tables()
    words: set[str] = set()
    for run, word in _TOKEN.findall(fold(text[:MAX_TEXT_CHARS])):
        if run:
            if cjk_words:
                for cjk in _pieces(run):
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
    yields the sub-words, so the pinyin of 古诗 finds 古诗三首 too), and the
    beginnings of a long word's initials (yy, yye, … of 一元二次方程).
    """
    segmenter = _load_tables().segmenter
    terms: list[str] = []
    whole_full: list[str] = []
    whole_initials: list[str] = []
    runs = [run for run, _word in _TOKEN.findall(fold(text[:200])) if run]
    for run in runs:
        run_full: list[str] = []
        run_initials: list[str] = []
        listed: list[tuple[str, str]] = []  # each listed word's (full, initials)
        for cjk in _pieces(run):
            for word in segmenter.cut_for_search(cjk, False):
                if len(word) > 1:
                    full, initials = _word_pinyin(word)
                    terms.append(full)
                    terms.append(initials)
            start = len(run_full)
            for word in segmenter.cut(cjk, False):
                full, initials = _word_pinyin(word)
                run_full.append(full)
                run_initials.append(initials)
                # Initials are typed from the start of a word and stop early: yyec
                # for 一元二次方程 (the prefixes of a long word's initials).
                terms.extend(initials[:n] for n in range(2, len(initials)))
            listed.append(("".join(run_full[start:]), "".join(run_initials[start:])))
        if 2 < len(listed) <= _MAX_LISTED:
            # Listed words typed together without the marks: shifen, sf and fenmiao of
            # 时、分、秒 (the whole list is added below). Titles and chapter names are short.
            for i in range(len(listed) - 1):
                for j in range(i + 2, len(listed) + (i > 0)):
                    terms.append("".join(full for full, _ in listed[i:j]))
                    terms.append("".join(initials for _, initials in listed[i:j]))
        if len(runs) > 1 and len(run_full) > 1:
            # Each run whole too: sfm for the 时、分、秒 of "第一单元 时、分、秒".
            terms.append("".join(run_full))
            terms.append("".join(run_initials))
        whole_full.extend(run_full)
        whole_initials.extend(run_initials)
    if len(whole_full) > 1:
        terms.append("".join(whole_full))
        terms.append("".join(whole_initials))
    return [t for t in terms if t]


# Longest list (时、分、秒 is three) whose runs of consecutive words are indexed in pinyin.
_MAX_LISTED = 6


def looks_like_pinyin(word: str) -> bool:
    return bool(_PINYIN_WORD.fullmatch(word))


# Every syllable of Mandarin as a teacher types it (tone marks dropped, ü as v), as
# read from pypinyin's character table (tests/unit/search/test_analysis.py checks it
# still covers that table), plus the spellings of ü that phones also accept (lue).
_SYLLABLE_TABLE = """
    a ai an ang ao ba bai ban bang bao bei ben beng bi bian biang biao bie bin bing bo bong bu ca cai can cang
    cao ce cei cen ceng cha chai chan chang chao che chen cheng chi chong chou chu chua chuai chuan chuang
    chui chun chuo ci cong cou cu cuan cui cun cuo da dai dan dang dao de dei den deng di dia dian diao die
    din ding diu dong dou du duan dui dun duo e ei en eng er fa fan fang fei fen feng fiao fo fou fu ga gai
    gan gang gao ge gei gen geng gong gou gu gua guai guan guang gui gun guo ha hai han hang hao he hei hen
    heng hong hou hu hua huai huan huang hui hun huo ji jia jian jiang jiao jie jin jing jiong jiu ju juan jue
    jun ka kai kan kang kao ke kei ken keng kong kou ku kua kuai kuan kuang kui kun kuo la lai lan lang lao le
    lei len leng li lia lian liang liao lie lin ling liu lo long lou lu luan lun luo lv lve lue ma mai man
    mang mao me mei men meng mi mian miao mie min ming miu mo mou mu na nai nan nang nao ne nei nen neng ni
    nia nian niang niao nie nin ning niu nong nou nu nuan nun nuo nv nve nue o ou pa pai pan pang pao pei pen
    peng pi pian piao pie pin ping po pou pu qi qia qian qiang qiao qie qin qing qiong qiu qu quan que qun ran
    rang rao re ren reng ri rong rou ru rua ruan rui run ruo sa sai san sang sao se sen seng sha shai shan
    shang shao she shei shen sheng shi shou shu shua shuai shuan shuang shui shun shuo si song sou su suan sui
    sun suo ta tai tan tang tao te tei teng ti tian tiao tie ting tong tou tu tuan tui tun tuo wa wai wan wang
    wei wen weng wo wong wu xi xia xian xiang xiao xie xin xing xiong xiu xu xuan xue xun ya yan yang yao ye
    yi yin ying yo yong you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai zhan zhang zhao zhe
    zhei zhen zheng zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu zuan zui zun zuo
"""
PINYIN_SYLLABLES = frozenset(_SYLLABLE_TABLE.split())
_LONGEST_SYLLABLE = 6  # zhuang, shuang, chuang
# Syllable bigrams are joined by the pinyin apostrophe (xi'an): no syllable contains
# one, so fen'shu never meets a whole-word term, and xi'an stays apart from xian.
PINYIN_JOIN = "'"
# A query word longer than this is not pinyin anyone typed; nor are more readings.
_MAX_PINYIN_LETTERS = 40
MAX_SPELLINGS = 6


@functools.lru_cache(maxsize=100_000)
def _word_syllables(word: str) -> tuple[str, ...]:
    """Syllables of a jieba word ("" where characters have no reading).

    Word by word, so pypinyin's phrase table picks the reading of a polyphonic
    character from its word (银行 yin hang, 行走 xing zou); cached, because words
    repeat and pypinyin is pure Python.
    """
    from pypinyin import Style, lazy_pinyin

    # A character without a reading becomes "-", a gap no syllable pair spans.
    syllables = lazy_pinyin(word, style=Style.NORMAL, errors=lambda chars: "-")
    return tuple(s if s.isascii() and s.isalpha() else "" for s in syllables)


def pinyin_grams(text: str, *, unigrams: bool = False) -> list[str]:
    """Adjacent syllable pairs of every Chinese run of ``text``: 配方法 → pei'fang, fang'fa.

    ``unigrams`` adds each syllable too (titles, which are short: a one-syllable
    query, like a one-character one, only looks at titles). Index size: one term
    per character, as the CJK bigrams; the syllable vocabulary is small (~400²
    pairs at most), so the lexicon stays small too.
    """
    cut = _load_tables().segmenter.cut
    terms: list[str] = []
    for run, _word in _TOKEN.findall(fold(text[:MAX_TEXT_CHARS])):
        if run:
            syllables = _add_syllable_pairs(terms, [w for cjk in _pieces(run) for w in cut(cjk, False)])
            if unigrams:
                terms.extend([s for s in syllables if s])
    return terms


def _add_syllable_pairs(terms: list[str], words: list[str]) -> list[str]:
    """Append the syllable pairs of a run's words to ``terms``; returns the run's syllables."""
    syllables: list[str] = []
    for word in words:
        syllables.extend(_word_syllables(word))
    join = PINYIN_JOIN
    terms.extend([f"{a}{join}{b}" for a, b in itertools.pairwise(syllables) if a and b])
    return syllables


def split_pinyin(letters: str, *, limit: int = MAX_SPELLINGS, partial: bool = False) -> list[tuple[str, ...]]:
    """The ways ``letters`` reads as a sequence of pinyin syllables, fewest syllables first.

    ``fangan`` → (fang, an) and (fan, gan); ``photo`` → none (pho is no syllable).
    An apostrophe forces a boundary (xi'an). With ``partial``, the last piece may
    be the beginning of a syllable (what a teacher is still typing: ``fensh``).
    """
    if not letters or len(letters) > _MAX_PINYIN_LETTERS:
        return []
    pieces = [p for p in re.split(r"['’]", letters) if p]
    if any(not p.isascii() or not p.isalpha() for p in pieces):
        return []
    out: list[tuple[str, ...]] = [()]
    for i, piece in enumerate(pieces):
        readings = _split(piece, partial and i == len(pieces) - 1)
        out = [a + b for a in out for b in readings][: limit * 4]
        if not out:
            return []
    return sorted(out, key=len)[:limit]


@functools.lru_cache(maxsize=4096)
def _split(letters: str, partial: bool) -> list[tuple[str, ...]]:
    if not letters:
        return [()]
    found: list[tuple[str, ...]] = []
    for end in range(min(len(letters), _LONGEST_SYLLABLE), 0, -1):
        head = letters[:end]
        if head in PINYIN_SYLLABLES:
            found.extend((head, *rest) for rest in _split(letters[end:], partial))
        elif partial and end == len(letters) and any(s.startswith(head) for s in PINYIN_SYLLABLES):
            found.append((head,))
        if len(found) > 4 * MAX_SPELLINGS:
            break
    return found


@functools.lru_cache(maxsize=4096)
def syllable_grams(syllables: tuple[str, ...]) -> tuple[str, ...]:
    """The index terms a reading must all have: its syllable pairs, or the syllable alone."""
    if len(syllables) == 1:
        return syllables
    return tuple(dict.fromkeys(f"{a}{PINYIN_JOIN}{b}" for a, b in itertools.pairwise(syllables)))


@dataclass(frozen=True)
class QueryUnit:
    """One thing the user typed that a document must match.

    ``required`` terms must all be present (the bigrams of a Chinese word, or
    English stems); ``pinyin`` is an alternative way to match (the term in the
    whole-word pinyin field); ``boost`` terms only raise the score (whole jieba words).
    ``text`` is the folded surface form, for "did you mean" and highlighting.
    """

    text: str
    required: tuple[str, ...]
    pinyin: str = ""
    boost: tuple[str, ...] = ()
    cjk: bool = False
    # Readings of Latin letters as pinyin syllables (fangan: fang an, fan gan):
    # another way to match, like ``pinyin``, through their ``spellings``.
    readings: tuple[tuple[str, ...], ...] = ()

    @property
    def spellings(self) -> tuple[tuple[str, ...], ...]:
        """Per reading, the syllable bigrams (or the one syllable) the pinyin-gram fields must all have."""
        return tuple(dict.fromkeys(syllable_grams(r) for r in self.readings))


def analyze_query(text: str, *, max_units: int = 12) -> list[QueryUnit]:
    """Split a query into units; anything that is not a word (syntax, emoji) is ignored.

    Query syntax is deliberately not supported: teachers type words, and a
    stray ``"`` or ``AND(`` must not turn into an error or a different query.
    """
    tables = _load_tables()
    stop = tables.stop_words
    units: list[QueryUnit] = []
    stopped: list[QueryUnit] = []
    tokens = _TOKEN.findall(fold(text[:1000]))
    i = 0
    while i < len(tokens):
        run, word = tokens[i]
        i += 1
        if run:
            pieces = _pieces(run)
            cjk = "".join(pieces)  # 时、分、秒 is searched as 时分秒, which finds both
            if len(cjk) == 1:
                units.append(QueryUnit(cjk, (cjk,), cjk=True))
            else:
                words = tuple(w for p in pieces for w in tables.segmenter.cut(p, False) if len(w) > 2)
                units.append(QueryUnit(cjk, tuple(dict.fromkeys(bigrams(cjk))), boost=words, cjk=True))
        else:
            group = [word]
            # Syllables typed one by one with spaces (fen shu, yi yuan er ci) are one
            # word: they must be read together, or each would be a lone syllable.
            while (
                word in PINYIN_SYLLABLES
                and i < len(tokens)
                and tokens[i][1] in PINYIN_SYLLABLES
                and len(group) < _LONGEST_GROUP
            ):
                group.append(tokens[i][1])
                i += 1
            unit = _latin_unit(group, stop)
            (stopped if all(w in stop for w in group) else units).append(unit)
        if len(units) >= max_units:
            break
    # A query made only of stop words ("the", "a") still means something.
    return units or stopped[:max_units]


_LONGEST_GROUP = 8


def _latin_unit(group: list[str], stop: frozenset[str]) -> QueryUnit:
    """One Latin word (or syllables typed apart) as English stems, or as pinyin.

    Both readings are alternatives of one unit: ``fangfa`` is no English word and
    finds 方法, ``photo`` reads as no pinyin; a word that is both (``long``) finds
    both. Stop words are not in the index, so they are not required (when they
    are not all there is).
    """
    letters = "".join(group)
    words = [w for w in group if w not in stop] or group
    required = tuple(dict.fromkeys(stem(w) for w in words))
    pinyin = letters if looks_like_pinyin(letters) else ""
    return QueryUnit(" ".join(group), required, pinyin=pinyin, readings=tuple(split_pinyin(letters)))


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


def pinyin_spans(folded: str, readings: Iterable[tuple[str, ...]]) -> list[tuple[int, int]]:
    """(start, end) of each Chinese stretch of ``folded`` that reads as one of ``readings``.

    For the snippet of a hit found by pinyin: fenshu marks 分数 in 认识分数单位.
    """
    wanted = {r for r in readings if r}
    if not wanted:
        return []
    longest = max(len(r) for r in wanted)
    cut = _load_tables().segmenter.cut
    spans: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(folded):
        run = match.group(1)
        if not run:
            continue
        syllables: list[str] = []
        for cjk in _pieces(run):
            for word in cut(cjk, False):
                read = _word_syllables(word)
                if len(read) != len(word):  # characters without a reading: one by one, to keep positions
                    read = tuple((_word_syllables(c) or ("",))[0] for c in word)
                syllables.extend(read)
        # Where each syllable's character is (list marks have no syllable: 时、分 → 0, 2).
        at = [match.start() + i for i, char in enumerate(run) if char not in _LIST_MARKS]
        for i in range(len(syllables)):
            for n in range(1, min(longest, len(syllables) - i) + 1):
                if tuple(syllables[i : i + n]) in wanted:
                    spans.append((at[i], at[i + n - 1] + 1))
    return spans


def find_listed(folded: str, needle: str) -> list[tuple[int, int]]:
    """(start, end) of ``needle`` in ``folded`` with list marks between its characters (时分秒 in 时、分、秒)."""
    if len(needle) < 2:
        return []
    pattern = f"[{_LIST_MARKS}]?".join(re.escape(char) for char in needle)
    return [m.span() for m in itertools.islice(re.finditer(pattern, folded), 50)]


def english_words(folded: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, word) of each Latin word in folded text."""
    for match in _TOKEN.finditer(folded):
        if match.group(2):
            yield match.start(), match.end(), match.group(2)
