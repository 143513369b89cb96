"""Run a command and print, as JSON, its wall time, CPU time and memory: ``python -m benchmarks.childrun CMD...``.

A benchmark starts this small interpreter, which starts the command, so the command's
rusage is its own. Started straight from a benchmark process it is not: subprocess
starts children with vfork, and at exec Linux carries the shared address space's
high-water mark into the child's ru_maxrss, so a child of a 3 GB benchmark process
"peaks" at 3 GB even if it is `true` (this is how the 1,000,000-lesson search run of
2026-12-04 reported 2,796 MB for a rebuild: the benchmark process's own size).

Two memory figures: ``peak_mb``, the largest single process's peak (the kernel's
figure), and ``tree_peak_mb``, the most the command and all its descendants held at
once, sampled ten times a second from /proc (for a command that starts workers).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_EVERY = 0.1  # seconds


def tree_rss_kib(root: int) -> int:
    """Resident KiB of ``root`` and every process descended from it, now (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[pid] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    total = 0
    for pid, kib in rss.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += kib
    return total


def main(command: list[str]) -> int:
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_kib = 0
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak_kib
        while not finished.wait(SAMPLE_EVERY):
            peak_kib = max(peak_kib, tree_rss_kib(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    finished.set()
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "returncode": child.returncode,
                "seconds": seconds,
                "peak_mb": usage.ru_maxrss / 1024,
                "tree_peak_mb": max(peak_kib / 1024, usage.ru_maxrss / 1024),
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "stdout": stdout,
                "stderr": stderr,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
