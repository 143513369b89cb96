"""The index on disk: generations and atomic swap, schema stamp, the one writer, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hub.search import SearchEngine
from hub.search import index as index_module
from hub.search.documents import course_documents
from hub.search.index import CURRENT, STAMP, IndexBusy, IndexUnavailable, SearchIndex
from hub.search.query import QueryEngine, SearchParams
from tests.unit.search.conftest import CATALOG, build
from tests.unit.search.support import source


def test_rebuild_swaps_generations_while_searches_go_on(tmp_path: Path) -> None:
    index = build(tmp_path / "ix", CATALOG[:2])
    first = index.current_generation()
    queries = QueryEngine(index)
    assert queries.run(SearchParams(q="古诗")).total > 0
    with index.searcher() as old_searcher:
        held = old_searcher  # a search in progress keeps its generation's files
    with index.writer_lock():
        index.rebuild(doc for course in CATALOG[4:] for doc in course_documents(course))
    assert held.doc_count() > 0
    second = index.current_generation()
    assert second != first and (tmp_path / "ix" / first).is_dir()  # the previous one stays for a while
    assert queries.run(SearchParams(q="古诗")).total == 0
    assert queries.run(SearchParams(q="photosynthesis")).total > 0
    with index.writer_lock():
        index.rebuild(iter([]))
    assert not (tmp_path / "ix" / first).exists()  # older ones go
    kept = sorted(p.name for p in (tmp_path / "ix").iterdir() if p.is_dir())
    assert kept == sorted([second, index.current_generation()])


def test_schema_stamp_mismatch_means_outdated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = build(tmp_path / "ix", CATALOG[:1])
    assert index.state().ok
    stamp_path = tmp_path / "ix" / index.current_generation() / STAMP
    stamp = json.loads(stamp_path.read_text())
    stamp_path.write_text(json.dumps({**stamp, "schema_version": 0}))
    assert index.state().status == "outdated"
    with pytest.raises(IndexUnavailable):
        QueryEngine(index).run(SearchParams(q="方程"))
    stamp_path.unlink()
    assert index.state().status == "corrupt"
    (tmp_path / "ix" / CURRENT).write_text("../../etc\n")
    assert index.state().status == "missing"


def test_start_up_check_rebuilds_an_outdated_index_in_the_background(tmp_path: Path) -> None:
    index = build(tmp_path / "ix", CATALOG[:1])
    stamp_path = tmp_path / "ix" / index.current_generation() / STAMP
    stamp_path.write_text(json.dumps({**json.loads(stamp_path.read_text()), "schema_version": 0}))
    engine = SearchEngine(index)
    rebuilt: list[int] = []

    def rebuild() -> int:
        with index.writer_lock():
            rebuilt.append(index.rebuild(doc for c in CATALOG[:2] for doc in course_documents(c)))
        return rebuilt[-1]

    engine.set_rebuilder(rebuild)
    assert engine.ensure_index() == "outdated"
    engine.wait_for_rebuild(30)
    assert rebuilt and engine.index.state().ok
    assert engine.ensure_index() == "ok"
    assert engine.query.run(SearchParams(q="古诗")).total > 0


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path / "ix")
    with index.writer_lock():
        assert str(os.getpid()) in index.lock_holder()
        with pytest.raises(IndexBusy, match=str(os.getpid())), SearchIndex(tmp_path / "ix").writer_lock(wait=0.1):
            pass
    with index.writer_lock():
        pass
    assert index.lock_holder() == ""


def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    root = tmp_path / "ix"
    build(root, CATALOG[:1])
    # A writer process that takes the lock, starts writing, and is killed mid-way.
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from hub.search.index import SearchIndex
        from hub.search.documents import course_documents
        from tests.unit.search.conftest import CATALOG
        index = SearchIndex(Path({str(root)!r}))
        with index.writer_lock():
            from whoosh import index as wi
            ix = wi.open_dir(str(index.root / index.current_generation()))
            writer = ix.writer()
            for doc in course_documents(CATALOG[1]):
                writer.add_document(**doc)
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        index = SearchIndex(root)
        with pytest.raises(IndexBusy), index.writer_lock():
            pass
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    # The kernel dropped both locks (ours and Whoosh's) with the process.
    deadline = time.monotonic() + 5
    while True:
        try:
            with index.writer_lock():
                index.update(2, course_documents(CATALOG[1]))
            break
        except IndexBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert QueryEngine(index).run(SearchParams(q="古诗")).total > 0


def test_incremental_updates_replace_a_course(tmp_path: Path) -> None:
    index = build(tmp_path / "ix", CATALOG)
    queries = QueryEngine(index)
    assert queries.run(SearchParams(q="古诗")).total == 2  # the lesson, and its course (lesson titles are in its body)
    renamed = source(
        2, "统编版语文三年级上册", [("秋天的雨", "感受秋天的美。")], subject="chinese", grades=(3,), edition="统编版"
    )
    with index.writer_lock():
        index.update(2, course_documents(renamed))
    assert queries.run(SearchParams(q="古诗")).total == 0
    assert queries.run(SearchParams(q="秋天")).total == 2
    with index.writer_lock():
        index.update(2, [])
    assert queries.run(SearchParams(q="秋天")).total == 0
    assert queries.run(SearchParams(q="", filters=(("subject", "chinese"),))).total == 0


def test_bulk_writer_builds_the_same_index_as_whoosh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.search.generate import generate, make_queries

    catalog = generate(400)
    fast = SearchIndex(tmp_path / "fast")
    with fast.writer_lock():
        fast.rebuild(doc for c in catalog.courses for doc in course_documents(c))

    def stock_writer(ix: object, **kw: object) -> object:
        writer = ix.writer(**kw)  # type: ignore[attr-defined]
        writer.postings = 0  # one segment, as the rebuild's budget is never reached
        return writer

    monkeypatch.setattr(index_module, "BulkWriter", stock_writer)
    stock = SearchIndex(tmp_path / "stock")
    with stock.writer_lock():
        stock.rebuild(doc for c in catalog.courses for doc in course_documents(c))
    a, b = QueryEngine(fast), QueryEngine(stock)
    for query in make_queries(catalog, 60):
        ra, rb = a.run(SearchParams(q=query.text)), b.run(SearchParams(q=query.text))
        assert ra.total == rb.total and ra.facets == rb.facets, query.text
        ranked = [(h.key, round(h.score, 6)) for h in ra.hits]
        assert ranked == [(h.key, round(h.score, 6)) for h in rb.hits], query.text


def test_rebuild_streams_into_segments_merged_into_the_same_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.search.generate import generate, make_queries

    merged: list[int] = []
    merge_all = index_module._MergeWriter.merge_all

    def counting(writer: index_module._MergeWriter, sources: list[tuple[object, object]]) -> None:
        merged.append(len(sources))
        merge_all(writer, sources)

    monkeypatch.setattr(index_module._MergeWriter, "merge_all", counting)
    catalog = generate(400)
    whole = SearchIndex(tmp_path / "whole")
    streamed = SearchIndex(tmp_path / "streamed", rebuild_memory_mb=1)  # ~7,000 postings a segment
    for index in (whole, streamed):
        with index.writer_lock():
            index.rebuild(doc for c in catalog.courses for doc in course_documents(c))
    assert len(merged) == 1 and merged[0] > 5  # only the streamed one wrote several segments
    with whole.searcher() as one, streamed.searcher() as many:
        assert len(one.reader().leaf_readers()) == len(many.reader().leaf_readers()) == 1
        assert many.doc_count() == one.doc_count() == 420
        by_key = sorted(many.all_stored_fields(), key=lambda d: d["key"])
        assert by_key == sorted(one.all_stored_fields(), key=lambda d: d["key"])
    a, b = QueryEngine(whole), QueryEngine(streamed)
    for query in make_queries(catalog, 60):
        ra, rb = a.run(SearchParams(q=query.text)), b.run(SearchParams(q=query.text))
        assert ra.total == rb.total and ra.facets == rb.facets, query.text
        ranked = [(h.key, round(h.score, 6)) for h in ra.hits]
        assert ranked == [(h.key, round(h.score, 6)) for h in rb.hits], query.text


def test_parallel_rebuild_gives_the_same_index_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.search.generate import generate, make_queries

    parallel_runs: list[int] = []
    build_in_parallel = index_module._build_in_parallel

    def recording(ix: object, path: Path, documents: object, processes: int, budget: int) -> int:
        parallel_runs.append(processes)
        return build_in_parallel(ix, path, documents, processes, budget)

    monkeypatch.setattr(index_module, "_build_in_parallel", recording)
    catalog = generate(400)
    one = SearchIndex(tmp_path / "one")
    two = SearchIndex(tmp_path / "two", rebuild_memory_mb=1, rebuild_processes=2)  # ~7,000 postings a segment
    small = SearchIndex(tmp_path / "small", rebuild_processes=2)  # fits one segment: no part builders
    for index in (one, two, small):
        with index.writer_lock():
            assert index.rebuild(doc for c in catalog.courses for doc in course_documents(c)) == 420
    assert parallel_runs == [2]
    generation = tmp_path / "two" / two.current_generation()
    assert not list(generation.glob("part-*"))  # the parts' own indexes are gone once merged
    with one.searcher() as a, two.searcher() as b:
        assert len(b.reader().leaf_readers()) == 1
        assert b.doc_count() == a.doc_count() == 420
        assert sorted(b.all_stored_fields(), key=lambda d: d["key"]) == sorted(
            a.all_stored_fields(), key=lambda d: d["key"]
        )
    engine_one, engine_two = QueryEngine(one), QueryEngine(two)
    for query in make_queries(catalog, 60):
        ra, rb = engine_one.run(SearchParams(q=query.text)), engine_two.run(SearchParams(q=query.text))
        assert ra.total == rb.total and ra.facets == rb.facets, query.text
        # Documents sit in another order, so equal scores may rank in another order: compare
        # the scores in rank order, and each document's score wherever both list it.
        assert [round(h.score, 6) for h in ra.hits] == [round(h.score, 6) for h in rb.hits], query.text
        scores = {h.key: round(h.score, 6) for h in ra.hits}
        assert all(scores[h.key] == round(h.score, 6) for h in rb.hits if h.key in scores), query.text


def test_a_failing_part_builder_fails_the_rebuild_and_keeps_the_live_index(tmp_path: Path) -> None:
    from benchmarks.search.generate import generate

    index = build(tmp_path / "ix", CATALOG[:2])
    live = index.current_generation()
    index.rebuild_memory_mb, index.rebuild_processes = 1, 2
    good = [doc for course in generate(200).courses for doc in course_documents(course)]
    broken = {**good[0], "key": "lesson:999999", "title": 3.5}  # analysing a number raises in a part builder

    with index.writer_lock(), pytest.raises(RuntimeError, match="part builder"):
        index.rebuild(iter([*good, broken]))
    assert index.current_generation() == live
    assert sorted(p.name for p in (tmp_path / "ix").iterdir() if p.is_dir()) == [live]
    assert QueryEngine(index).run(SearchParams(q="古诗")).total > 0


def test_part_builders_stop_when_the_rebuild_is_killed(tmp_path: Path) -> None:
    # A rebuild whose documents stop coming once its part builders run, then is killed.
    script = textwrap.dedent(
        f"""
        import multiprocessing, time
        from pathlib import Path
        from benchmarks.search.generate import generate
        from hub.search.documents import course_documents
        from hub.search.index import SearchIndex

        def documents():
            for course in generate(200).courses:
                yield from course_documents(course)
            while not multiprocessing.active_children():
                time.sleep(0.05)
            print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
            time.sleep(120)
            yield from ()

        index = SearchIndex(Path({str(tmp_path / "ix")!r}), rebuild_memory_mb=1, rebuild_processes=2)
        with index.writer_lock():
            index.rebuild(documents())
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert child.stdout is not None
        parts = [int(pid) for pid in child.stdout.readline().split()]
        assert len(parts) == 2
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()

    def running(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited

    deadline = time.monotonic() + 60
    while any(running(pid) for pid in parts) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(running(pid) for pid in parts)
