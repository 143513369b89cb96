"""Peak memory of `hub search rebuild` as the catalog grows: streamed segments against one segment.

One command::

    .venv/bin/python -m benchmarks.search.memory --lessons 25000 50000 100000 [--budget-mb 256]

For each size the generated catalog (benchmarks/search/generate.py) is loaded into a
migrated SQLite database and rebuilt twice by the product's own command in a child
process, whose peak RSS is the rebuild's alone: with ``HUB_SEARCH_REBUILD_MB`` at the
budget (segments written whenever it is reached), and as the reference, with a budget
no catalog reaches (every posting held until one segment is written: the rebuild before
issue 19). Same data, same machine, same minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.search.generate import Query, generate, make_queries
from benchmarks.search.run import load_database, run_measured

UNBOUNDED_MB = 1_000_000


@dataclass
class Rebuild:
    seconds: float
    cpu_s: float
    peak_mb: float  # the rebuild and its part builders together
    segments: int


def rebuild(data_dir: Path, budget_mb: int, processes: int = 1) -> Rebuild:
    """One `hub search rebuild` in a fresh child, with this memory budget and this many processes."""
    env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"}
    env["HUB_SEARCH_REBUILD_MB"] = str(budget_mb)
    env["HUB_SEARCH_REBUILD_PROCESSES"] = str(processes)
    hub = Path(sys.executable).with_name("hub")
    child = run_measured([str(hub), "search", "rebuild"], env)
    index = data_dir / "index"
    generation = (index / "CURRENT").read_text().strip()
    segments = len(list((index / generation).glob("*.seg")))
    return Rebuild(child.seconds, child.cpu_s, child.tree_peak_mb, segments)


def query_p95(data_dir: Path, queries: list[Query]) -> float:
    """p95 in ms of the raw query path (facets, top 20, no database), warm: the second of two passes."""
    from hub.search.index import SearchIndex
    from hub.search.query import QueryEngine, SearchParams

    index = SearchIndex(data_dir / "index")
    engine = QueryEngine(index)
    times: list[float] = []
    for _ in range(2):
        times = []
        for query in queries:
            started = time.perf_counter()
            engine.run(SearchParams(q=query.text))
            times.append((time.perf_counter() - started) * 1000)
    index.close()
    times.sort()
    return times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--budget-mb", type=int, default=256, help="HUB_SEARCH_REBUILD_MB of the streamed rebuild")
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1], help="HUB_SEARCH_REBUILD_PROCESSES of the streamed rebuilds"
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    rows = [
        "| lessons | rebuild | time | CPU | peak RSS | segments | p95 warm | time ÷ reference | RSS ÷ reference |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for lessons in args.lessons:
        work = Path(tempfile.mkdtemp(prefix="hub-search-memory-"))
        try:
            catalog = generate(lessons)
            queries = make_queries(catalog, 200)
            load_database(catalog, work / "hub")
            del catalog
            measured = []
            for processes in args.processes:
                name = f"streamed ({args.budget_mb} MB), {processes} process{'es' if processes > 1 else ''}"
                done = rebuild(work / "hub", args.budget_mb, processes)
                measured.append((name, done, query_p95(work / "hub", queries)))
            reference = rebuild(work / "hub", UNBOUNDED_MB)
            measured.append(("one segment (reference)", reference, query_p95(work / "hub", queries)))
            for name, done, p95 in measured:
                rows.append(
                    f"| {lessons:,} | {name} | {done.seconds:.1f} s | {done.cpu_s:.1f} s | {done.peak_mb:,.0f} MB "
                    f"| {done.segments} | {p95:.1f} ms | {done.seconds / reference.seconds:.2f} "
                    f"| {done.peak_mb / reference.peak_mb:.2f} |"
                )
                print(rows[-1], flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    rows.append("")
    rows.append(
        f"measured {time.strftime('%Y-%m-%d %H:%M')} UTC, load average {load[0]:.1f} on {os.cpu_count()} cores; "
        "peak RSS is the rebuild's processes together (sampled), CPU their user + system time"
    )
    text = "\n".join(rows)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
