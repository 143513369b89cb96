"""Running a search against the index: matching, filters, facets, ranking, suggestions.

Where the time goes, and why it is split this way (numbers from the benchmark
at 100,000 lessons, see benchmarks/search/RESULTS.md):

- **Which documents match** (for the total, the filters and the facet counts)
  is computed with *bitmaps*: a Python ``int`` with one bit per document, per
  term. ``&``, ``|`` and ``int.bit_count()`` run in C over 12.5 kB for 100,000
  documents, so a query's match set, its filters and ~100 facet counts cost
  well under a millisecond once the bitmaps exist. A term's bitmap is built by
  reading its postings once and is cached per index segment (segments never
  change, except for deletions, which are part of the cache key), so an index
  update costs only the bitmaps of the new small segment.
- **Ranking** is Whoosh's BM25F, top-N only, restricted to the matched set
  (``filter=``), so Whoosh's block-max optimisations skip what cannot reach
  the page.
- **Snippets** are made from the database rows the service hydrates anyway
  (:mod:`hub.search.services`), not from stored index fields.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from whoosh import query as wq  # type: ignore[import-untyped]
from whoosh.codec.whoosh3 import W3LeafMatcher  # type: ignore[import-untyped]
from whoosh.idsets import DocIdSet  # type: ignore[import-untyped]
from whoosh.searching import Searcher  # type: ignore[import-untyped]

from hub.search import analysis
from hub.search.analysis import QueryUnit
from hub.search.index import SearchIndex
from hub.search.schema import FACETS

FILTERS = FACETS
MAX_PER_PAGE = 100
MAX_PAGE = 1000
# Below this many results a "did you mean" is worth computing.
SUGGEST_BELOW = 3
# A query word found in more than this share of all documents does not rank.
BROAD_UNIT = 0.05
# Values indexed for "none" (a course without an edition, a lesson without materials).
NONE_VALUE = "-"


@dataclass(frozen=True)
class SearchParams:
    q: str = ""
    filters: tuple[tuple[str, str], ...] = ()
    page: int = 1
    per_page: int = 20
    facets: bool = True

    def filter(self, name: str) -> str | None:
        return dict(self.filters).get(name)


@dataclass(frozen=True)
class RawHit:
    key: str
    course: int
    score: float

    @property
    def type(self) -> str:
        return self.key.split(":", 1)[0]

    @property
    def id(self) -> int:
        return int(self.key.split(":", 1)[1])


@dataclass
class RawResults:
    total: int
    hits: list[RawHit]
    facets: dict[str, dict[str, int]]
    units: list[QueryUnit]
    suggestion: str | None = None
    relaxed: bool = False


class Bitmap(DocIdSet):  # type: ignore[misc]
    """A match set Whoosh can filter by: membership is one byte lookup."""

    def __init__(self, bits: int, size: int) -> None:
        self.bits = bits
        self._bytes = bits.to_bytes((size + 8) // 8, "little")
        self._len = bits.bit_count()

    def __contains__(self, docnum: object) -> bool:
        assert isinstance(docnum, int)
        return bool(self._bytes[docnum >> 3] & (1 << (docnum & 7)))

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return True  # an empty filter still filters

    def __iter__(self) -> Iterator[int]:
        return iter_bits(self.bits)


def iter_bits(bits: int) -> Iterator[int]:
    """Docnums of the set bits, lowest first."""
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for byte_index, byte in enumerate(data):
        if byte:
            base = byte_index << 3
            for bit in range(8):
                if byte & (1 << bit):
                    yield base + bit


_BIT = tuple(1 << i for i in range(8))


def ids_to_bits(ids: Iterable[int], size: int) -> int:
    buf = bytearray((size + 8) // 8)
    bit = _BIT
    for docnum in ids:
        buf[docnum >> 3] |= bit[docnum & 7]
    return int.from_bytes(buf, "little")


def postings_bits(leaf: Any, fieldname: str, text: str) -> int:
    """Bitmap of a term's postings in one segment.

    The fast path reads Whoosh 2.7's posting blocks directly (ids are stored
    delta-encoded; ``itertools.accumulate`` decodes them in C) instead of
    stepping a matcher posting by posting: 5–10 times faster for common
    terms. Anything else (inlined postings, deletions) takes the public API.
    """
    size = leaf.doc_count_all()
    matcher = leaf.postings(fieldname, text)
    if type(matcher) is not W3LeafMatcher:
        return ids_to_bits(matcher.all_ids(), size)
    buf = bytearray((size + 8) // 8)
    bit = _BIT
    while matcher.is_active():
        if matcher._data is None:
            matcher._read_data()
        raw = matcher._data[0]
        for docnum in raw if matcher._byteids else accumulate(raw):
            buf[docnum >> 3] |= bit[docnum & 7]
        matcher._next_block()
    return int.from_bytes(buf, "little")


class BitmapCache:
    """Per-segment term bitmaps, bounded by total bytes (least recently used go first)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> int | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return value

    def put(self, key: tuple[Any, ...], value: int) -> None:
        size = (value.bit_length() + 7) // 8 + 64
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= (old.bit_length() + 7) // 8 + 64

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class _View:
    """One search's view of the index: its segments, where they start, how big it is."""

    def __init__(self, searcher: Searcher, cache: BitmapCache) -> None:
        self.searcher = searcher
        self.reader = searcher.reader()
        self.cache = cache
        self.size = self.reader.doc_count_all()
        self.leaves: list[tuple[Any, int, tuple[Any, ...]]] = []
        for leaf, offset in self.reader.leaf_readers():
            segment = leaf.segment() if hasattr(leaf, "segment") else None
            if segment is not None:
                ident: tuple[Any, ...] = (segment.segment_id(), segment.deleted_count())
            else:
                ident = (id(leaf), leaf.doc_count())
            self.leaves.append((leaf, offset, ident))
        self.all_docs = (1 << self.size) - 1 if self.size else 0
        if self.reader.has_deletions():
            # Live documents per segment, cached like terms: after an update
            # only the segment that gained deletions is walked again.
            self.all_docs = 0
            for leaf, offset, ident in self.leaves:
                key = (ident, "", "live")
                live = cache.get(key)
                if live is None:
                    live = ids_to_bits(leaf.all_doc_ids(), leaf.doc_count_all())
                    cache.put(key, live)
                self.all_docs |= live << offset

    def term(self, fieldname: str, text: str) -> int:
        """Docs containing ``text`` in ``fieldname``, as a bitmap over the whole index."""
        bits = 0
        for leaf, offset, ident in self.leaves:
            key = (ident, fieldname, text)
            segment_bits = self.cache.get(key)
            if segment_bits is None:
                segment_bits = 0
                if (fieldname, text) in leaf:
                    segment_bits = postings_bits(leaf, fieldname, text)
                self.cache.put(key, segment_bits)
            if segment_bits:
                bits |= segment_bits << offset
        return bits

    def lexicon(self, fieldname: str) -> list[str]:
        return [t.decode("utf-8") for t in self.reader.lexicon(fieldname)]


def _all_bits(view: _View, terms: Iterable[str], fields: tuple[str, ...]) -> int:
    """Docs that have every term, each in any of ``fields``."""
    bits = -1
    for term in terms:
        either = 0
        for fieldname in fields:
            either |= view.term(fieldname, term)
        bits &= either
        if not bits:
            return 0
    return bits if bits != -1 else 0


def _unit_bits(view: _View, unit: QueryUnit) -> int:
    bits = _all_bits(view, unit.required, ("title", "body"))
    if unit.pinyin:
        bits |= view.term("pinyin", unit.pinyin)
    for grams in unit.spellings:
        bits |= _all_bits(view, grams, PINYIN_GRAM_FIELDS)
    return bits


# Where a pinyin reading's syllable bigrams are looked for, mirroring ("title", "body").
PINYIN_GRAM_FIELDS = ("pytitle", "pybody")


def _all_query(terms: Sequence[str], fields: tuple[str, ...]) -> wq.Query:
    parts = [wq.Or([wq.Term(f, t) for f in fields]) if len(fields) > 1 else wq.Term(fields[0], t) for t in terms]
    return parts[0] if len(parts) == 1 else wq.And(parts)


def _unit_query(unit: QueryUnit) -> wq.Query:
    match = _all_query(unit.required, ("title", "body"))
    alternatives = [match]
    if unit.pinyin:
        alternatives.append(wq.Term("pinyin", unit.pinyin))
    alternatives.extend(_all_query(grams, PINYIN_GRAM_FIELDS) for grams in unit.spellings)
    if len(alternatives) > 1:
        match = wq.Or(alternatives)
    if unit.boost:
        extra = [wq.Term(f, w) for w in unit.boost for f in ("title", "body")]
        match = wq.AndMaybe(match, wq.Or(extra))
    return match


def whoosh_query(units: Sequence[QueryUnit], relaxed: bool = False) -> wq.Query:
    parts = [_unit_query(u) for u in units]
    if len(parts) == 1:
        return parts[0]
    return wq.Or(parts) if relaxed else wq.And(parts)


@functools.lru_cache(maxsize=4096)
def parse(q: str) -> tuple[QueryUnit, ...]:
    return tuple(analysis.analyze_query(q))


class QueryEngine:
    """Searches one :class:`SearchIndex`; keeps the caches that make repeat work free."""

    def __init__(self, index: SearchIndex, cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.index = index
        self.bitmaps = BitmapCache(cache_bytes)
        self._facet_values: dict[tuple[Any, ...], dict[str, list[str]]] = {}

    def _view(self, searcher: Searcher) -> _View:
        return _View(searcher, self.bitmaps)

    def facet_values(self, view: _View) -> dict[str, list[str]]:
        key = tuple(ident for _, _, ident in view.leaves)
        values = self._facet_values.get(key)
        if values is None:
            values = {name: [v for v in view.lexicon(name) if v != NONE_VALUE] for name in FACETS}
            self._facet_values = {key: values}  # only the live view's values are worth keeping
        return values

    def warm(self) -> None:
        """Build the facet bitmaps now rather than in the first search after a (re)open."""
        with self.index.searcher() as searcher:
            view = self._view(searcher)
            for name, values in self.facet_values(view).items():
                if name == "chapter":
                    continue  # counted only inside one book (_chapters_in_view): built when asked for
                for value in values:
                    view.term(name, value)

    def run(self, params: SearchParams) -> RawResults:
        units = list(parse(params.q))
        with self.index.searcher() as searcher:
            view = self._view(searcher)
            relaxed = False
            if units:
                match = view.all_docs
                for unit in units:
                    match &= _unit_bits(view, unit)
                    if not match:
                        break
            else:
                match = view.all_docs
            filter_bits = view.all_docs
            for name, value in params.filters:
                filter_bits &= view.term(name, value)
            filtered = match & filter_bits
            if not filtered and len(units) > 1:
                # Nothing has every word: rank what has some of them, and say so.
                relaxed = True
                match = 0
                for unit in units:
                    match |= _unit_bits(view, unit)
                filtered = match & filter_bits
            total = filtered.bit_count()
            # "These have some of the words" only when there are some.
            relaxed = relaxed and total > 0
            facets: dict[str, dict[str, int]] = {}
            if params.facets:
                for name, values in self.facet_values(view).items():
                    if name == "chapter":
                        values = _chapters_in_view(values, params)
                    counts = {}
                    for value in values:
                        count = (filtered & view.term(name, value)).bit_count()
                        if count:
                            counts[value] = count
                    facets[name] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
            hits = self._rank(searcher, units, relaxed, filtered, view.size, params) if total else []
            suggestion = self._suggest(searcher, view, units) if units and total < SUGGEST_BELOW else None
        return RawResults(total, hits, facets, units, suggestion, relaxed)

    def _rank(
        self, searcher: Searcher, units: list[QueryUnit], relaxed: bool, filtered: int, size: int, params: SearchParams
    ) -> list[RawHit]:
        start = (params.page - 1) * params.per_page
        if start >= filtered.bit_count():
            return []
        if not units:
            # No words: the filtered catalog in index order (courses first, each
            # followed by its lessons).
            docnums = []
            for i, docnum in enumerate(iter_bits(filtered)):
                if i >= start + params.per_page:
                    break
                if i >= start:
                    docnums.append(docnum)
            return [self._hit(searcher, docnum, 0.0) for docnum in docnums]
        # Ranking in two tiers. Documents whose *title* has every word come
        # first, ranked by a title-only query: title postings are short, so
        # this is cheap, and it is the order a teacher expects (title matches
        # above summary matches). Only when the titles cannot fill the page is
        # the full title+body BM25F query run, on the rest. Profiling at
        # 100,000 lessons showed the full query's matchers (pure Python) were
        # three quarters of the search time.
        need = start + params.per_page
        view = self._view(searcher)
        title_bits = 0 if relaxed else filtered
        for unit in units:
            bits = _title_bits(view, unit)
            title_bits = title_bits | (bits & filtered) if relaxed else title_bits & bits
        in_title = title_bits.bit_count()
        ranked: list[tuple[float, int]] = []
        if in_title and start < in_title:
            title_query = [_title_query(u) for u in units]
            q = title_query[0] if len(title_query) == 1 else (wq.Or if relaxed else wq.And)(title_query)
            ranked.extend(searcher.search(q, limit=min(need, in_title), filter=Bitmap(title_bits, size)).top_n)
        if need > in_title:
            rest = filtered & ~title_bits
            if rest:
                # Words in more than BROAD_UNIT of all documents (人教版, 五年级:
                # every textbook lesson has them) weigh almost nothing in BM25,
                # yet stepping through their long posting lists was the whole
                # cost of textbook queries. The bitmaps already guarantee every
                # document here has them, so they are left out of the ranking.
                scored = units
                if not relaxed and len(units) > 1:
                    counts = [(_unit_bits(view, u).bit_count(), i) for i, u in enumerate(units)]
                    keep = {i for n, i in counts if n <= BROAD_UNIT * size} or {min(counts)[1]}
                    scored = [u for i, u in enumerate(units) if i in keep]
                # top_n, not len(results) or list(results): those make Whoosh
                # count every match again, which the bitmaps have already done.
                full = whoosh_query(scored, relaxed)
                ranked.extend(searcher.search(full, limit=need - in_title, filter=Bitmap(rest, size)).top_n)
        # `ranked` starts at position 0 when the first tier was read, else at in_title.
        page = ranked[start:need] if start < in_title else ranked[start - in_title : need - in_title]
        return [self._hit(searcher, docnum, score) for score, docnum in page]

    @staticmethod
    def _hit(searcher: Searcher, docnum: int, score: float) -> RawHit:
        stored = searcher.stored_fields(docnum)
        return RawHit(stored["key"], int(stored["course"]), float(score))

    def _suggest(self, searcher: Searcher, view: _View, units: list[QueryUnit]) -> str | None:
        """Replace each word the index does not know by the closest one it does."""
        corrector = searcher.corrector("spell")
        changed = False
        words: list[str] = []
        for unit in units:
            replacement = unit.text
            known = _unit_bits(view, unit) != 0
            if not known and len(unit.text) <= 20:
                maxdist = 1 if unit.cjk or len(unit.text) <= 4 else 2
                candidates = corrector.suggest(unit.text, limit=1, maxdist=maxdist, prefix=0 if unit.cjk else 1)
                if candidates:
                    replacement = candidates[0]
                    changed = True
            words.append(replacement)
        return " ".join(words) if changed else None

    def suggest_titles(self, prefix: str, limit: int = 8) -> list[RawHit]:
        """Autocomplete: documents whose title has every word typed, the last one as a prefix."""
        units = list(parse(prefix))
        if not units:
            return []
        *complete, last = units
        with self.index.searcher() as searcher:
            view = self._view(searcher)
            match = view.all_docs
            for unit in complete:
                match &= _title_bits(view, unit)
            if last.cjk:
                match &= _title_bits(view, last)
                last_query = _title_query(last)
            else:
                expansions = _expand_prefix(view, last.text.replace(" ", ""))
                last_bits = 0
                for fieldname, term in expansions:
                    last_bits |= view.term(fieldname, term)
                alternatives = [wq.Or([wq.Term(f, t) for f, t in expansions])] if expansions else []
                # Pinyin still being typed (peifangf, fen sh): the syllables so far
                # must be adjacent in the title, the unfinished one may become any
                # syllable that starts so.
                typed = last.text
                if complete and not complete[-1].cjk:
                    typed = f"{complete[-1].text}{typed}"  # fen sh: the syllables before the space too
                for grams, last_gram in _partial_pinyin(view, typed.replace(" ", "")):
                    bits = _all_bits(view, grams, ("pytitle",)) if grams else view.all_docs
                    ends = 0
                    for gram in last_gram:
                        ends |= view.term("pytitle", gram)
                    if bits & ends:
                        last_bits |= bits & ends
                        ends_query = wq.Or([wq.Term("pytitle", g) for g in last_gram])
                        if grams:
                            ends_query = wq.And([_all_query(grams, ("pytitle",)), ends_query])
                        alternatives.append(ends_query)
                match &= last_bits
                if not alternatives:
                    return []
                last_query = alternatives[0] if len(alternatives) == 1 else wq.Or(alternatives)
            if not match:
                return []
            q = wq.And([*[_title_query(u) for u in complete], last_query]) if complete else last_query
            results = searcher.search(q, limit=limit, filter=Bitmap(match, view.size))
            return [self._hit(searcher, docnum, score) for score, docnum in results.top_n]


def _chapters_in_view(values: list[str], params: SearchParams) -> list[str]:
    """The chapter values worth counting: those of the one textbook the search is narrowed to, else none.

    Chapters are only a choice inside a book (a list of every book's 第一单元 helps
    nobody), and counting each of the thousands of chapters of every book would cost
    a bitmap intersection per value on every search.
    """
    book = params.filter("textbook")
    if book is None and (chapter := params.filter("chapter")) is not None:
        book = chapter.split("/", 1)[0]
    if book is None:
        return []
    prefix = f"{book}/"
    return [v for v in values if v.startswith(prefix)]


def _title_bits(view: _View, unit: QueryUnit) -> int:
    bits = _all_bits(view, unit.required, ("title",))
    if unit.pinyin:
        bits |= view.term("pinyin", unit.pinyin)
    for grams in unit.spellings:
        bits |= _all_bits(view, grams, ("pytitle",))
    return bits


def _title_query(unit: QueryUnit) -> wq.Query:
    match = _all_query(unit.required, ("title",))
    alternatives = [match]
    if unit.pinyin:
        alternatives.append(wq.Term("pinyin", unit.pinyin))
    alternatives.extend(_all_query(grams, ("pytitle",)) for grams in unit.spellings)
    if len(alternatives) > 1:
        match = wq.Or(alternatives)
    if unit.boost:
        match = wq.AndMaybe(match, wq.Or([wq.Term("title", w) for w in unit.boost]))
    return match


MAX_EXPANSIONS = 64


def _partial_pinyin(view: _View, letters: str) -> list[tuple[tuple[str, ...], list[str]]]:
    """Readings of ``letters`` as pinyin whose last syllable may be unfinished.

    Each is (the syllable bigrams typed in full, the title bigrams the last one
    may become): ``fensh`` → ((), [fen'shu, fen'shi, …]).
    """
    out: list[tuple[tuple[str, ...], list[str]]] = []
    for syllables in analysis.split_pinyin(letters, partial=True):
        if len(syllables) < 2:
            continue
        complete = analysis.syllable_grams(syllables[:-1]) if len(syllables) > 2 else ()
        prefix = f"{syllables[-2]}{analysis.PINYIN_JOIN}{syllables[-1]}"
        ends = []
        for i, term in enumerate(view.reader.expand_prefix("pytitle", prefix)):
            if i >= MAX_EXPANSIONS:
                break
            ends.append(term.decode("utf-8") if isinstance(term, bytes) else term)
        if ends:
            out.append((complete, ends))
    return out


def _expand_prefix(view: _View, prefix: str) -> list[tuple[str, str]]:
    """Title terms a Latin prefix may become: English words (as stems), pinyin words and syllables."""
    out: list[tuple[str, str]] = []
    for fieldname in ("spell", "pinyin", "pytitle"):
        kept = 0
        for i, term in enumerate(view.reader.expand_prefix(fieldname, prefix)):
            if kept >= MAX_EXPANSIONS or i >= 8 * MAX_EXPANSIONS:
                break
            text = term.decode("utf-8") if isinstance(term, bytes) else term
            if fieldname == "pytitle" and analysis.PINYIN_JOIN in text:
                continue  # syllables only: pairs are matched by _partial_pinyin
            kept += 1
            out.append(("title", analysis.stem(text)) if fieldname == "spell" else (fieldname, text))
    return list(dict.fromkeys(out))


def highlight(text: str, units: Sequence[QueryUnit], max_chars: int = 160) -> str:
    """An HTML snippet of ``text`` (escaped) with the query's matches in ``<mark>``.

    Matching is done on the folded text, which has the same length as the
    original for CJK and ASCII, so a match in 數學 marks 數學 even though the
    query was 数学. A Chinese query is marked where it occurs whole; when its
    bigrams only occur apart (the index matched them separately), each bigram
    is marked instead.
    """
    if not text:
        return ""
    folded = analysis.fold(text)
    if len(folded) != len(text):
        # A character whose lower case is longer (rare outside CJK and ASCII):
        # no marks rather than marks in the wrong place.
        folded = ""
    cjk, stems = analysis.highlight_terms(units)
    spans: list[tuple[int, int]] = []
    for needle in cjk:
        found = _find_all(folded, needle) or analysis.find_listed(folded, needle)
        if not found and len(needle) > 2:
            for gram in analysis.bigrams(needle):
                found.extend(_find_all(folded, gram))
        spans.extend(found)
    if stems:
        for start, end, word in analysis.english_words(folded):
            if analysis.stem(word) in stems:
                spans.append((start, end))
    readings = [reading for unit in units for reading in unit.readings]
    if readings and folded:
        spans.extend(analysis.pinyin_spans(folded, readings))
    spans = _merge(spans)
    start, end = _window(len(text), spans, max_chars)
    out: list[str] = ["…" if start > 0 else ""]
    cursor = start
    for span_start, span_end in spans:
        if span_end <= start or span_start >= end:
            continue
        span_start, span_end = max(span_start, start), min(span_end, end)
        out.append(_escape(text[cursor:span_start]))
        out.append(f"<mark>{_escape(text[span_start:span_end])}</mark>")
        cursor = span_end
    out.append(_escape(text[cursor:end]))
    out.append("…" if end < len(text) else "")
    return "".join(out)


def _find_all(haystack: str, needle: str) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    if not needle or not haystack:
        return found
    i = haystack.find(needle)
    while i != -1 and len(found) < 50:
        found.append((i, i + len(needle)))
        i = haystack.find(needle, i + len(needle))
    return found


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _window(length: int, spans: list[tuple[int, int]], max_chars: int) -> tuple[int, int]:
    """The ``max_chars`` stretch with the first match, a little context before it."""
    if length <= max_chars:
        return 0, length
    start = 0
    if spans:
        start = max(0, min(spans[0][0] - max_chars // 4, length - max_chars))
    return start, start + max_chars


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
