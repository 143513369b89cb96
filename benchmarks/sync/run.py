"""Sync benchmark (issue 7): manifests at catalog scale, and two hubs syncing on loopback.

One command::

    .venv/bin/python -m benchmarks.sync [--manifest-lessons 100000] [--lessons 2000] [--profile]

1. ``manifest``: the upstream's signed manifest for a school subscribed to every
   course, at 100,000 lessons, first, unchanged and after 2 % of lessons were
   edited (benchmarks/sync/manifest_bench.py).
2. ``pull``: a fresh school server pulls 2,000 lessons from a real upstream
   ``hub serve`` and pulls again after 2 % were edited, against Debian's rsync
   daemon serving the same blobs, both through one byte-counting relay
   (benchmarks/sync/pull_bench.py).

Inputs are generated into a temporary directory (``--work`` to keep them; under
benchmarks/out/ is gitignored). The "Latest run" section of
benchmarks/sync/RESULTS.md is rewritten unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
MARKER = "## Latest run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest-lessons", type=int, default=100_000)
    parser.add_argument("--lessons", type=int, default=2_000, help="lessons synced between the two hubs")
    parser.add_argument("--only", choices=("manifest", "pull"), default=None, help="run one part")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of one incremental manifest")
    parser.add_argument("--work", type=Path, default=None, help="working directory, kept (default: temporary)")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave RESULTS.md alone")
    args = parser.parse_args(argv)

    work = (args.work or Path(tempfile.mkdtemp(prefix="hub-sync-bench-"))).resolve()
    if args.work and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent)
    lines = [
        f"{MARKER}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the start {os.getloadavg()[0]:.1f} "
        f"(a shared machine: compare the ratios, not the seconds). Code at {commit.stdout.strip() or '?'}.",
        "",
    ]
    try:
        if args.only in (None, "manifest"):
            from benchmarks.sync import manifest_bench

            started = time.perf_counter()
            result = manifest_bench.run(work, args.manifest_lessons, profile=args.profile)
            print(
                f"manifest: incremental {result.incremental:.2f} s ({time.perf_counter() - started:.0f} s)", flush=True
            )
            lines += [*manifest_bench.report(result), ""]
        if args.only in (None, "pull"):
            from benchmarks.sync import pull_bench

            pull_result = pull_bench.run(work / "pull", args.lessons)
            lines += [*pull_bench.report(pull_result), ""]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        existing = RESULTS.read_text() if RESULTS.exists() else "# Sync benchmark\n\n"
        head = existing.split(MARKER)[0].rstrip() + "\n\n"
        RESULTS.write_text(head + text)
    return 0
