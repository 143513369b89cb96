"""Search benchmark: hub search (Whoosh) against SQLite FTS5 and tantivy on the same catalog.

One command::

    .venv/bin/python -m benchmarks.search --lessons 100000

What is measured, all in one process on the same data:

- **hub**: the product path. The catalog is inserted into a migrated SQLite
  database; ``hub.search.services.rebuild`` reads it and builds the index (so
  the time includes reading rows and analysis); each query goes through
  ``services.search`` — facets, top 20, database hydration, highlighted
  snippets. Latency is measured cold (first time each query's terms are seen)
  and again warm.
- **fts5**: SQLite FTS5 over the same analysed terms (so its Chinese matching
  is as good as ours), bm25 with the same field weights, facet counts by one
  GROUP BY over the matches, the same snippet function.
- **tantivy** (the ``bench`` extra: ``make bench-deps``; missing, the benchmark stops
  with an error unless ``--no-references``): the same analysed terms on whitespace
  tokenisation, a terms aggregation for facets, the same snippet function.

Quality: precision@10 and recall@20 against the generator's ground truth
(hits count when they are a relevant lesson or the course of one; recall is
over min(20, relevant)).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.search.generate import Catalog, Query, generate, make_queries
from hub.search.analysis import QueryUnit
from hub.search.documents import Document, course_documents
from hub.search.query import highlight, parse
from hub.search.schema import FACETS, PINYIN_BOOST, TITLE_BOOST

TOP = 20


@dataclass
class EngineResult:
    name: str
    build_s: float = 0.0
    documents: int = 0
    size_bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    warm_latencies_ms: list[float] = field(default_factory=list)
    precision10: dict[str, list[float]] = field(default_factory=dict)
    recall20: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def pct(self, p: float, warm: bool = False) -> float:
        values = sorted(self.warm_latencies_ms if warm else self.latencies_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(p * (len(values) - 1)))]

    def quality(self, kinds: Iterable[str] | None = None) -> tuple[float, float]:
        keys = list(kinds) if kinds is not None else list(self.precision10)
        p = [v for k in keys for v in self.precision10.get(k, [])]
        r = [v for k in keys for v in self.recall20.get(k, [])]
        return (statistics.mean(p) if p else float("nan"), statistics.mean(r) if r else float("nan"))


def judge(result: EngineResult, query: Query, keys: list[str]) -> None:
    relevant = query.relevant
    if not relevant:
        return
    top10 = keys[:10]
    p = sum(1 for k in top10 if k in relevant) / min(10, len(relevant))
    r = sum(1 for k in keys[:TOP] if k in relevant) / min(TOP, len(relevant))
    result.precision10.setdefault(query.kind, []).append(min(p, 1.0))
    result.recall20.setdefault(query.kind, []).append(r)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- the catalog in a real hub database ---------------------------------------


def load_database(catalog: Catalog, data_dir: Path) -> Any:
    """Migrate a SQLite database under ``data_dir`` and insert the catalog with executemany."""
    from hub import create_app
    from hub.db import get_database
    from hub.migrate import upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(f"sqlite:///{data_dir / 'hub.db'}")
    app = create_app({"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"})
    engine = get_database(app).engine
    now = "2025-01-01 00:00:00"
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.executemany(
            "INSERT INTO school (id, name, kind, region, county, rural, created_at) "
            "VALUES (?, ?, 'famous', '', '', 0, ?)",
            [(sid, name, now) for sid, name in catalog.schools],
        )
        raw.executemany(
            "INSERT INTO course (id, school_id, title, summary, category, subject, grades_mask, edition, volume, "
            "language, license, teacher, status, version, published_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'published', 1, ?, ?, ?)",
            [
                (
                    c.id,
                    c.school_id,
                    c.title,
                    c.summary,
                    c.category,
                    c.subject,
                    sum(1 << g for g in c.grades),
                    c.edition,
                    c.volume,
                    c.language,
                    c.license,
                    c.teacher,
                    now,
                    now,
                    now,
                )
                for c in catalog.courses
            ],
        )
        raw.executemany(
            "INSERT INTO lesson (id, course_id, position, title, summary, unit, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (lsn.id, c.id, lsn.position, lsn.title, lsn.summary, lsn.unit, now, now)
                for c in catalog.courses
                for lsn in c.lessons
            ],
        )
        materials = [
            (lsn.id, kind, title, hashlib.sha256(f"{lsn.id}/{i}".encode()).hexdigest())
            for c in catalog.courses
            for lsn in c.lessons
            for i, (kind, title) in enumerate(lsn.materials)
        ]
        raw.executemany(
            "INSERT INTO blob (sha256, size, media_type, created_at) VALUES (?, 1, 'application/octet-stream', ?)",
            [(sha, now) for *_, sha in materials],
        )
        raw.executemany(
            "INSERT INTO material (lesson_id, kind, title, filename, original_sha256, status, progress, error, "
            "created_at, updated_at) VALUES (?, ?, ?, '', ?, 'ready', 100, '', ?, ?)",
            [(lid, kind, title, sha, now, now) for lid, kind, title, sha in materials],
        )
    return app


# -- hub (Whoosh) -------------------------------------------------------------


def run_hub(app: Any, queries: list[Query], profile_dir: Path | None, rebuild: bool = True) -> EngineResult:
    from hub.db import get_database
    from hub.search import SearchEngine, services
    from hub.search.query import SearchParams

    result = EngineResult("hub (Whoosh-Reloaded 2.7.5)")
    engine: SearchEngine = app.extensions["hub.search"]
    database = get_database(app)
    profiler = cProfile.Profile() if profile_dir else None
    with database.session() as session:
        if profiler:
            profiler.enable()
            started = time.perf_counter()
            report = services.rebuild(session, engine)
            result.build_s = time.perf_counter() - started
            profiler.disable()
            _dump(profiler, profile_dir / "rebuild.txt")  # type: ignore[operator]
            result.documents = report.documents
        elif not rebuild:
            result.notes.append("index of an earlier run reused (--queries-only): no build measured")
            with engine.index.searcher() as searcher:
                result.documents = int(searcher.doc_count())
        else:
            result.build_s, result.documents, rss_mb, cpu_s = _rebuild_command(app)
            budget = os.environ.get("HUB_SEARCH_REBUILD_MB", "the default")
            result.notes.append(
                f"`hub search rebuild` peak RSS: {rss_mb:.0f} MB, all its processes together "
                f"(HUB_SEARCH_REBUILD_MB {budget}, HUB_SEARCH_REBUILD_PROCESSES "
                f"{os.environ.get('HUB_SEARCH_REBUILD_PROCESSES', 'the default')})"
            )
            # CPU seconds hardly depend on the machine's load; wall seconds on a shared machine do.
            result.notes.append(f"`hub search rebuild` CPU: {cpu_s:.0f} s (user + system), {result.build_s:.0f} s wall")
        result.size_bytes = dir_size(engine.index.root)
        started = time.perf_counter()
        engine.query.warm()
        result.notes.append(f"searcher open + facet bitmaps: {(time.perf_counter() - started) * 1000:.0f} ms")
        profiler = cProfile.Profile() if profile_dir else None
        # The thread's CPU time per query besides the wall time: on a shared machine the wall
        # time grows with the load average, the CPU time hardly does (this thread does all of
        # a query's work: parsing, Whoosh, facets, the database hydration, the snippets).
        cpu_ms: tuple[list[float], list[float]] = ([], [])
        for rnd, sink in enumerate((result.latencies_ms, result.warm_latencies_ms)):
            if profiler and rnd == 0:
                profiler.enable()
            for query in queries:
                started, started_cpu = time.perf_counter(), time.thread_time()
                page = services.search(session, engine, None, SearchParams(q=query.text, per_page=TOP))
                sink.append((time.perf_counter() - started) * 1000)
                cpu_ms[rnd].append((time.thread_time() - started_cpu) * 1000)
                if rnd == 0:
                    judge(result, query, [f"{h.type}:{h.id}" for h in page.hits])
                session.rollback()
            if profiler and rnd == 0:
                profiler.disable()
                _dump(profiler, profile_dir / "queries.txt")  # type: ignore[operator]
    cold_cpu, warm_cpu = (sorted(c) for c in cpu_ms)
    result.notes.append(
        f"CPU time per query (this thread), p50/p95 cold {cold_cpu[len(cold_cpu) // 2]:.1f}/"
        f"{cold_cpu[round(0.95 * (len(cold_cpu) - 1))]:.1f} ms, warm {warm_cpu[len(warm_cpu) // 2]:.1f}/"
        f"{warm_cpu[round(0.95 * (len(warm_cpu) - 1))]:.1f} ms; load average after the queries "
        f"{os.getloadavg()[0]:.2f}"
    )
    cache = engine.query.bitmaps
    result.notes.append(f"bitmap cache: {cache.hits} hits, {cache.misses} misses, {cache._bytes / 1e6:.0f} MB")
    return result


def _rebuild_command(app: Any) -> tuple[float, int, float, float]:
    """Rebuild with the product's own command in a child: (seconds, documents, peak RSS in MB, CPU seconds).

    Memory and CPU are the rebuild's and its part builders' together.
    """
    settings = app.extensions["hub.settings"]
    env = {**os.environ, "HUB_DATA_DIR": str(settings.data_dir), "HUB_LOG_LEVEL": "WARNING"}
    hub = Path(sys.executable).with_name("hub")
    child = run_measured([str(hub), "search", "rebuild"], env)
    documents = int(child.stdout.split("rebuilt: ", 1)[1].split()[0])
    return child.seconds, documents, child.tree_peak_mb, child.cpu_s


@dataclass
class ChildRun:
    seconds: float
    peak_mb: float  # the largest single process's peak
    tree_peak_mb: float  # the command and its descendants together, sampled
    cpu_s: float  # user + system, descendants included
    stdout: str


def run_measured(command: list[str], env: dict[str, str]) -> ChildRun:
    """Run ``command`` to completion: its wall time, its own peak RSS and CPU time; raise if it fails."""
    probe = subprocess.run(
        [sys.executable, "-m", "benchmarks.childrun", *command], env=env, capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise RuntimeError(f"{command[0]} could not be measured: {probe.stderr.strip()}")
    done = json.loads(probe.stdout)
    if done["returncode"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done['stderr'].strip()}")
    return ChildRun(done["seconds"], done["peak_mb"], done["tree_peak_mb"], done["cpu_s"], done["stdout"])


def _dump(profiler: cProfile.Profile, path: Path) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    path.write_text(out.getvalue())


# -- shared by the references -------------------------------------------------


def _joined(terms: list[str]) -> str:
    return " ".join(terms)


def _facet_values(doc: Document) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in FACETS:
        value = doc[name]
        for v in value if isinstance(value, list) else [value]:
            if v != "-":
                out.append((name, v))
    return out


def _texts(catalog: Catalog) -> dict[str, tuple[str, str]]:
    texts: dict[str, tuple[str, str]] = {}
    for course in catalog.courses:
        texts[f"course:{course.id}"] = (course.title, course.summary)
        for lesson in course.lessons:
            texts[f"lesson:{lesson.id}"] = (lesson.title, lesson.summary)
    return texts


def _batches(catalog: Catalog, courses: int = 250) -> Iterator[tuple[list[Document], float]]:
    """The analysed documents, ``courses`` courses at a time, with the seconds their analysis took.

    Streamed so the references hold one batch, not a million analysed documents (several GB):
    every engine's memory stays bounded, as the hub's streamed rebuild does.
    """
    for first in range(0, len(catalog.courses), courses):
        gc.disable()
        try:
            started = time.perf_counter()
            docs = [doc for course in catalog.courses[first : first + courses] for doc in course_documents(course)]
            seconds = time.perf_counter() - started
        finally:
            gc.enable()
        yield docs, seconds


class Reference:
    """One engine measured against the hub: documents added batch by batch, then the same queries."""

    result: EngineResult

    def add(self, docs: list[Document], first_rowid: int) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Commit what was added (counted in the build time)."""

    def search(self, units: list[QueryUnit]) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine's files."""


def build_reference(catalog: Catalog, ref: Reference) -> None:
    """Stream the analysed catalog into one reference; build time = the analysis + its own writes.

    One pass per reference, each timed alone: tantivy's indexing threads would otherwise run
    during FTS5's inserts and blur which engine spent what.
    """
    analysis_s = writes_s = 0.0
    rowid = 1
    for docs, seconds in _batches(catalog):
        analysis_s += seconds
        started = time.perf_counter()
        ref.add(docs, rowid)
        writes_s += time.perf_counter() - started
        rowid += len(docs)
    started = time.perf_counter()
    ref.finish()
    writes_s += time.perf_counter() - started
    ref.result.build_s = analysis_s + writes_s
    ref.result.documents = rowid - 1
    ref.result.notes.append(f"build = {analysis_s:.1f} s the same analysis + {writes_s:.1f} s its own writes")


def query_reference(ref: Reference, queries: list[Query]) -> None:
    result = ref.result
    for rnd, sink in enumerate((result.latencies_ms, result.warm_latencies_ms)):
        for query in queries:
            started = time.perf_counter()
            units = list(parse(query.text))
            keys = ref.search(units) if units else []
            sink.append((time.perf_counter() - started) * 1000)
            if rnd == 0:
                judge(result, query, keys)


# -- SQLite FTS5 ---------------------------------------------------------------


def _fts_match(units: list[QueryUnit], relaxed: bool = False) -> str:
    parts = []
    for unit in units:
        required = " AND ".join(f'"{t}"' for t in unit.required)
        expr = f"({required})" if not unit.pinyin else f'(({required}) OR pinyin : "{unit.pinyin}")'
        parts.append(expr)
    return (" OR " if relaxed else " AND ").join(parts)


class Fts5(Reference):
    """SQLite FTS5 over the same analysed terms, bm25 with the same weights, facets by one GROUP BY."""

    def __init__(self, catalog: Catalog, work: Path) -> None:
        self.result = EngineResult("SQLite FTS5")
        self.path = work / "fts5.db"
        self.texts = _texts(catalog)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            """
            PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
            CREATE VIRTUAL TABLE fts USING fts5(title, body, pinyin, tokenize='unicode61');
            CREATE TABLE docs (rowid INTEGER PRIMARY KEY, key TEXT, title TEXT, summary TEXT);
            CREATE TABLE facets (rowid INTEGER, name TEXT, value TEXT);
            """
        )

    def add(self, docs: list[Document], first_rowid: int) -> None:
        db, texts = self.db, self.texts
        numbered = list(enumerate(docs, first_rowid))
        with db:
            db.executemany(
                "INSERT INTO fts (rowid, title, body, pinyin) VALUES (?, ?, ?, ?)",
                ((i, _joined(d["title"]), _joined(d["body"]), _joined(d["pinyin"])) for i, d in numbered),
            )
            db.executemany(
                "INSERT INTO docs VALUES (?, ?, ?, ?)", ((i, d["key"], *texts[d["key"]]) for i, d in numbered)
            )
            db.executemany(
                "INSERT INTO facets VALUES (?, ?, ?)", ((i, n, v) for i, d in numbered for n, v in _facet_values(d))
            )

    def finish(self) -> None:
        with self.db:
            self.db.execute("CREATE INDEX facets_rowid ON facets (rowid)")
        self.result.size_bytes = self.path.stat().st_size

    def search(self, units: list[QueryUnit]) -> list[str]:
        db = self.db
        weights = f"{TITLE_BOOST}, 1.0, {PINYIN_BOOST}"
        match = _fts_match(units)
        if not db.execute("SELECT 1 FROM fts WHERE fts MATCH ? LIMIT 1", (match,)).fetchone():
            match = _fts_match(units, relaxed=True)
        db.execute("DROP TABLE IF EXISTS temp.hits")
        db.execute("CREATE TEMP TABLE hits AS SELECT rowid FROM fts WHERE fts MATCH ?", (match,))
        total = db.execute("SELECT count(*) FROM temp.hits").fetchone()[0]
        facets: dict[str, dict[str, int]] = {}
        for name, value, count in db.execute(
            "SELECT name, value, count(*) FROM facets WHERE rowid IN (SELECT rowid FROM temp.hits) GROUP BY name, value"
        ):
            facets.setdefault(name, {})[value] = count
        # Only constants are formatted into the SQL; the query text is a parameter.
        top = db.execute(
            "SELECT d.key, d.title, d.summary FROM fts JOIN docs d ON d.rowid = fts.rowid "  # noqa: S608
            f"WHERE fts MATCH ? ORDER BY bm25(fts, {weights}) LIMIT {TOP}",
            (match,),
        ).fetchall()
        keys = []
        for key, title, summary in top:
            highlight(title, units)
            highlight(summary, units)
            keys.append(key)
        assert total >= len(keys)
        return keys

    def close(self) -> None:
        self.db.close()


# -- tantivy -------------------------------------------------------------------


class Tantivy(Reference):
    """tantivy-py on the same analysed terms (whitespace tokenisation), a terms aggregation for facets."""

    def __init__(self, catalog: Catalog, work: Path) -> None:
        import tantivy  # type: ignore[import-not-found]

        self.tantivy = tantivy
        version = str(getattr(tantivy, "__version__", "")).split(",")[0].replace("tantivy ", "").lstrip("v")
        self.result = EngineResult(f"tantivy-py {version}")
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("key", stored=True, tokenizer_name="raw")
        for name in ("title", "body", "pinyin"):
            builder.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
        for name in FACETS:
            builder.add_text_field(name, fast=True, tokenizer_name="raw", index_option="basic")
        self.schema = builder.build()
        self.path = work / "tantivy"
        self.path.mkdir()
        self.index = tantivy.Index(self.schema, path=str(self.path))
        self.texts = _texts(catalog)
        # tantivy flushes a segment whenever this heap fills: its memory is bounded like the hub's rebuild.
        self.writer = self.index.writer(heap_size=512_000_000, num_threads=2)
        self.aggs = {name: {"terms": {"field": name, "size": 200}} for name in FACETS}

    def add(self, docs: list[Document], first_rowid: int) -> None:
        for doc in docs:
            fields: dict[str, Any] = {
                "key": doc["key"],
                "title": _joined(doc["title"]),
                "body": _joined(doc["body"]),
                "pinyin": _joined(doc["pinyin"]),
            }
            for name, value in _facet_values(doc):
                fields.setdefault(name, []).append(value)
            self.writer.add_document(self.tantivy.Document(**fields))

    def finish(self) -> None:
        self.writer.commit()
        self.writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()
        self.result.size_bytes = dir_size(self.path)

    def _unit_query(self, unit: QueryUnit) -> Any:
        tantivy, schema = self.tantivy, self.schema
        Occur, term = tantivy.Occur, tantivy.Query.term_query
        required = [
            tantivy.Query.boolean_query(
                [
                    (Occur.Should, tantivy.Query.boost_query(term(schema, "title", t), TITLE_BOOST)),
                    (Occur.Should, term(schema, "body", t)),
                ]
            )
            for t in unit.required
        ]
        q = tantivy.Query.boolean_query([(Occur.Must, r) for r in required])
        if unit.pinyin:
            pinyin = tantivy.Query.boost_query(term(schema, "pinyin", unit.pinyin), PINYIN_BOOST)
            q = tantivy.Query.boolean_query([(Occur.Should, q), (Occur.Should, pinyin)])
        return q

    def search(self, units: list[QueryUnit]) -> list[str]:
        Occur, searcher = self.tantivy.Occur, self.searcher
        q = self.tantivy.Query.boolean_query([(Occur.Must, self._unit_query(u)) for u in units])
        if searcher.search(q, 1).count == 0:
            q = self.tantivy.Query.boolean_query([(Occur.Should, self._unit_query(u)) for u in units])
        found = searcher.search(q, TOP)
        searcher.aggregate(q, self.aggs)
        keys = []
        for _score, address in found.hits:
            key = searcher.doc(address)["key"][0]
            title, summary = self.texts[key]
            highlight(title, units)
            highlight(summary, units)
            keys.append(key)
        return keys


def missing_references() -> str | None:
    """Why the references cannot run, or None: a missing one is an error, never a silently empty row."""
    try:
        import tantivy  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return (
            "tantivy is not installed, and it is one of this benchmark's references: run `make bench-deps` "
            "(pip install -e '.[bench]'), or pass --no-references to measure the hub alone"
        )
    return None


# -- report --------------------------------------------------------------------


def report(lessons: int, catalog: Catalog, queries: list[Query], results: list[EngineResult], extra: list[str]) -> str:
    hub = results[0]
    lines = [
        f"### Search at {lessons:,} lessons ({len(catalog.courses):,} courses, {hub.documents:,} documents)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the start {os.getloadavg()[0]:.2f}. "
        f"{len(queries)} queries: "
        + ", ".join(
            f"{k} {sum(1 for q in queries if q.kind == k)}"
            for k in ("zh", "zh-trad", "zh-textbook", "en", "pinyin", "pinyin-forms", "chapter")
        )
        + ".",
        "",
        "| engine | full build | docs/s | index size | p50 cold | p95 cold | p50 warm | p95 warm "
        "| P@10 | R@20 | R@20 Chinese |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    chinese = ("zh", "zh-trad", "zh-textbook", "pinyin", "pinyin-forms", "chapter")
    for r in results:
        p10, r20 = r.quality()
        _, r20zh = r.quality(chinese)
        lines.append(
            f"| {r.name} | {f'{r.build_s:.1f} s' if r.build_s else '–'} "
            f"| {f'{r.documents / r.build_s:,.0f}' if r.build_s else '–'} | {r.size_bytes / 1e6:.0f} MB "
            f"| {r.pct(0.5):.1f} ms | {r.pct(0.95):.1f} ms | {r.pct(0.5, True):.1f} ms | {r.pct(0.95, True):.1f} ms "
            f"| {p10:.3f} | {r20:.3f} | {r20zh:.3f} |"
        )
    lines.append("")
    for r in results[1:]:
        lines.append(
            f"- hub ÷ {r.name}: build {hub.build_s / r.build_s:.1f}×, p95 cold {hub.pct(0.95) / r.pct(0.95):.1f}×, "
            f"p95 warm {hub.pct(0.95, True) / r.pct(0.95, True):.1f}×, size {hub.size_bytes / r.size_bytes:.1f}×"
        )
    lines.append("")
    lines.append("Quality by query kind (P@10 / R@20):")
    lines.append("")
    lines.append("| engine | " + " | ".join(hub.precision10) + " |")
    lines.append("| --- |" + " ---: |" * len(hub.precision10))
    for r in results:
        cells = []
        for kind in hub.precision10:
            p, rc = r.quality([kind])
            cells.append(f"{p:.2f} / {rc:.2f}")
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        for note in r.notes:
            lines.append(f"- {r.name}: {note}")
    lines.extend(f"- {e}" for e in extra)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--no-references", action="store_true", help="measure hub only")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write cProfile tops of rebuild and queries here (slows the run: its times are not comparable)",
    )
    parser.add_argument(
        "--queries-only",
        action="store_true",
        help="time the hub's queries (cold in this new process, then warm) on the catalog and index an earlier "
        "run left in --work, without building anything (no references)",
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    if args.queries_only:
        if not (args.work and (args.work / "hub" / "index").is_dir()):
            parser.error("--queries-only needs --work with a hub index an earlier run left there")
        args.no_references = True
    if not args.no_references and (why := missing_references()):
        parser.error(why)

    work = args.work or Path(tempfile.mkdtemp(prefix="hub-search-bench-"))
    if work.exists() and args.work and not args.queries_only:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        catalog = generate(args.lessons)
        queries = make_queries(catalog, args.queries)
        extra = [f"catalog generated in {time.perf_counter() - started:.1f} s"]
        print(f"{time.strftime('%H:%M:%S')} {extra[-1]}", flush=True)
        if args.queries_only:
            from hub import create_app

            app = create_app({"HUB_DATA_DIR": str(work / "hub"), "HUB_LOG_LEVEL": "WARNING"})
        else:
            started = time.perf_counter()
            app = load_database(catalog, work / "hub")
            extra.append(f"database loaded in {time.perf_counter() - started:.1f} s (not part of any build time)")
            print(f"{time.strftime('%H:%M:%S')} {extra[-1]}", flush=True)
        results = [run_hub(app, queries, args.profile, rebuild=not args.queries_only)]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        extra.append(f"peak RSS of the benchmark process (catalog, queries): {peak_mb:.0f} MB")
        print(
            f"{time.strftime('%H:%M:%S')} hub: build {results[0].build_s:.1f} s, p95 cold "
            f"{results[0].pct(0.95):.1f} ms, warm {results[0].pct(0.95, True):.1f} ms; {results[0].notes}",
            flush=True,
        )
        if not args.no_references:
            for ref in (Fts5(catalog, work), Tantivy(catalog, work)):
                build_reference(catalog, ref)
                query_reference(ref, queries)
                ref.close()
                results.append(ref.result)
                print(
                    f"{ref.result.name}: build {ref.result.build_s:.1f} s, p95 {ref.result.pct(0.95):.1f} ms",
                    flush=True,
                )
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            extra.append(f"peak RSS of the benchmark process with the references: {peak_mb:.0f} MB")
        text = report(args.lessons, catalog, queries, results, extra)
        print(text)
        if args.output:
            args.output.write_text(text)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0
