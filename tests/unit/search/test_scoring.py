"""The hub's BM25F gives exactly Whoosh's scores, reading field lengths once per segment."""

from __future__ import annotations

from pathlib import Path

from whoosh import index as whoosh_index
from whoosh import scoring as whoosh_scoring

from hub.search import scoring
from hub.search.documents import course_documents
from hub.search.query import whoosh_query
from tests.unit.search.conftest import CATALOG, build


def test_scores_equal_whooshs_over_several_segments(tmp_path: Path) -> None:
    from benchmarks.search.generate import generate, make_queries
    from hub.search.query import parse

    catalog = generate(300)
    index = build(tmp_path / "ix", catalog.courses)
    with index.writer_lock():  # an update adds a segment, with deletions in the first
        index.update(catalog.courses[0].id, list(course_documents(catalog.courses[0])))
        index.update(CATALOG[0].id, list(course_documents(CATALOG[0])))
    ix = whoosh_index.open_dir(str(tmp_path / "ix" / index.current_generation()))
    assert len(ix._segments()) > 1
    compared = 0
    with ix.searcher(weighting=whoosh_scoring.BM25F()) as stock, ix.searcher(weighting=scoring.BM25F()) as ours:
        for query in make_queries(catalog, 80):
            units = parse(query.text)
            if not units:
                continue
            q = whoosh_query(units)
            expected = [(hit.docnum, hit.score) for hit in stock.search(q, limit=50)]
            assert [(hit.docnum, hit.score) for hit in ours.search(q, limit=50)] == expected, query.text
            compared += len(expected)
    assert compared > 200
    # Lengths were read from the segments, once each: the cache holds them by segment id.
    segment_ids = {segment.segment_id() for segment in ix._segments()}
    assert segment_ids <= {segment for segment, _ in scoring._lengths}


def test_segment_lengths_are_the_readers_own(tmp_path: Path) -> None:
    index = build(tmp_path / "ix", CATALOG)
    ix = whoosh_index.open_dir(str(tmp_path / "ix" / index.current_generation()))
    with ix.reader() as reader:
        for leaf, _ in reader.leaf_readers():
            lengths = scoring.segment_lengths(leaf, "body")
            assert lengths is not None and len(lengths) == leaf.doc_count_all()
            assert all(
                (leaf.doc_field_length(docnum, "body") or 0) == (scoring.byte_to_length(lengths[docnum]))
                for docnum in range(leaf.doc_count_all())
            )
            assert scoring.segment_lengths(leaf, "course") is None  # an unscored field has no length column
