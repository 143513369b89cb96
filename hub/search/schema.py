"""The Whoosh schema, and the version stamp that says when an index must be rebuilt.

Text fields take *pre-analysed* term lists (:class:`TermList`): analysis runs
once in :mod:`hub.search.analysis` with C-speed string operations instead of
Whoosh's token-object pipeline, and queries are built from the same functions,
so index and query agree by construction.

Text fields keep term frequencies but no positions: Chinese matching is by
bigrams (every bigram of the query must be present), ranking is BM25F, and
highlighting works on the text hydrated from the database, so positions would
only make the index larger and slower to build.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from whoosh import fields, formats  # type: ignore[import-untyped]
from whoosh.system import pack_uint  # type: ignore[import-untyped]

# Bump whenever fields, analysis or document contents change: an index whose
# stamp differs is rebuilt (in the background) when the app starts.
# 2: syllable bigrams of titles and bodies (pytitle, pybody); 3: textbook and chapter;
# 4: Chinese runs go on across list marks (时、分、秒 has 时分 and shi'fen)
SCHEMA_VERSION = 4

TITLE_BOOST = 4.0
PINYIN_BOOST = 2.0

# Facet fields: one indexed term per value, also the filters. ``textbook`` is a book's key,
# ``chapter`` the book's key and a chapter's (renjiao-math-3-1/2): chapter titles repeat
# from book to book (第一单元), so the value must say which book.
FACETS = (
    "type",
    "category",
    "subject",
    "grade",
    "edition",
    "language",
    "kind",
    "school",
    "license",
    "textbook",
    "chapter",
)


class TermList(fields.FieldType):  # type: ignore[misc]
    """A scorable text field whose value is a list of terms already analysed."""

    def __init__(self, field_boost: float = 1.0) -> None:
        super().__init__(formats.Frequency(field_boost=field_boost), analyzer=None, scorable=True)

    def index(self, value: list[str], **kwargs: Any) -> Iterator[tuple[bytes, int, float, bytes]]:
        boost = self.format.field_boost
        for term, freq in Counter(value).items():
            yield term.encode("utf-8"), freq, freq * boost, pack_uint(freq)

    def process_text(self, qstring: str, mode: str = "", **kwargs: Any) -> Iterator[str]:
        # Queries are built from analysed terms, never parsed from text.
        yield qstring

    def self_parsing(self) -> bool:
        return False


class Keys(fields.FieldType):  # type: ignore[misc]
    """Unscored exact values (facets, ids): presence only, the cheapest postings."""

    def __init__(self, stored: bool = False, unique: bool = False) -> None:
        super().__init__(formats.Existence(), analyzer=None, scorable=False, stored=stored, unique=unique)

    def index(self, value: list[str] | str, **kwargs: Any) -> Iterator[tuple[bytes, int, float, bytes]]:
        values = [value] if isinstance(value, str) else value
        for term in set(values):
            yield term.encode("utf-8"), 1, 1.0, b""

    def process_text(self, qstring: str, mode: str = "", **kwargs: Any) -> Iterator[str]:
        yield qstring


def make_schema() -> fields.Schema:
    return fields.Schema(
        # "course:12" or "lesson:345": unique, what an update replaces.
        key=Keys(stored=True, unique=True),
        course=Keys(stored=True),
        # Hash of the document's indexed content: `hub search check` compares it.
        digest=fields.STORED(),
        title=TermList(field_boost=TITLE_BOOST),
        body=TermList(),
        # Whole words of titles and chapter names in pinyin, full and initials (shuxue, sx).
        pinyin=TermList(field_boost=PINYIN_BOOST),
        # Syllable bigrams (fen'shu) of the title (plus its single syllables) and of
        # what `body` holds (summary, chapter, materials): a query in pinyin matches
        # where a Chinese one would, weighted as the Chinese field it mirrors.
        pytitle=TermList(field_boost=TITLE_BOOST),
        pybody=TermList(),
        # Surface words for "did you mean" and prefixes for autocomplete.
        spell=Keys(),
        **{name: Keys() for name in FACETS},
    )
