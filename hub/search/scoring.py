"""BM25F exactly as Whoosh computes it, with each segment's field lengths read once.

Whoosh's BM25F scorer asks for a document's field length through four layers of
Python calls and a struct unpack per scored posting. In a profile of the slowest
queries at 1,000,000 lessons that lookup was ~15 % of a search, since Whoosh scores
every posting of the ranked terms that passes the filter. Here each segment's
one-byte lengths are read once into a ``bytes`` (1 byte per document and field,
cached by segment id: segments never change, and deletions do not touch lengths)
and the scorer looks them up by index. Same formula, same floating-point
operations in the same order, so every score is identical to Whoosh's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from whoosh import scoring  # type: ignore[import-untyped]
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3PerDocReader  # type: ignore[import-untyped]
from whoosh.util.numeric import byte_to_length  # type: ignore[import-untyped]

MAX_CACHED = 64  # (segment, field) pairs: a few fields of the live and the previous generation's segments

_lengths: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


class BM25F(scoring.BM25F):  # type: ignore[misc]
    """Whoosh's BM25F model; its scorers look field lengths up in a per-segment ``bytes``."""

    def scorer(self, searcher: Any, fieldname: str, text: bytes, qf: int = 1) -> Any:
        scorer = super().scorer(searcher, fieldname, text, qf)
        if type(scorer) is scoring.BM25FScorer:
            lengths = segment_lengths(searcher.reader(), fieldname)
            if lengths is not None:
                scorer.score = _scoring_function(scorer, lengths)
        return scorer


def segment_lengths(reader: Any, fieldname: str) -> bytes | None:
    """The length byte of every document of one segment's ``fieldname``; None where that cannot be read so."""
    perdoc = getattr(reader, "_perdoc", None)
    if not isinstance(perdoc, W3PerDocReader):
        return None
    key = (reader.segment().segment_id(), fieldname)
    lengths = _lengths.get(key)
    if lengths is None:
        column = perdoc._cached_reader(f"_{fieldname}_len", LENGTHS_COLUMN)
        if column is None:
            return None
        # A fixed-width column of one byte per document; documents past its end have the default, 0.
        lengths = bytes(column._dbfile.get(column._basepos, column._count)) + bytes(
            max(0, column._doccount - column._count)
        )
        with _lock:
            while len(_lengths) >= MAX_CACHED:
                _lengths.pop(next(iter(_lengths)))
            _lengths[key] = lengths
    return lengths


def _scoring_function(scorer: Any, lengths: bytes) -> Callable[[Any], float]:
    idf, k1, b, avgfl = scorer.idf, scorer.K1, scorer.B, scorer.avgfl
    # whoosh.scoring.bm25: idf * ((tf * (K1 + 1)) / (tf + K1 * ((1 - B) + B * fl / avgfl))),
    # with the length part worked out once for each of the 256 length bytes.
    norms = [k1 * ((1 - b) + b * byte_to_length(byte) / avgfl) for byte in range(256)]
    k1_plus_1 = k1 + 1

    def score(matcher: Any) -> float:
        tf = matcher.weight()
        return idf * ((tf * k1_plus_1) / (tf + norms[lengths[matcher.id()]]))  # type: ignore[no-any-return]

    return score
