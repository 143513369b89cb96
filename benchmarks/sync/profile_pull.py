"""``hub sync pull`` under cProfile, in the main thread and every download thread.

    HUB_DATA_DIR=… HUB_UPSTREAM_URL=… HUB_UPSTREAM_PUBLIC_KEY=… HUB_UPSTREAM_TOKEN=… \\
        .venv/bin/python -m benchmarks.sync.profile_pull [TOP]

cProfile sees one thread only, so each thread gets its own profiler and the
download threads' stats are added up (their times are summed over threads, and
include time spent waiting for the upstream). Profiled times are slower than a
plain run and not comparable with the benchmark's.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from typing import Any

_profiles: list[cProfile.Profile] = []
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile()
    _profiles.append(profile)
    profile.enable()
    try:
        _original_run(self)
    finally:
        profile.disable()


def main(argv: list[str]) -> int:
    top = int(argv[0]) if argv else 25
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    started = time.perf_counter()
    main_profile.enable()
    from hub.cli import main as hub_main

    code: Any = 0
    try:
        hub_main(["sync", "pull"])
    except SystemExit as exc:
        code = exc.code
    main_profile.disable()
    print(f"wall {time.perf_counter() - started:.1f} s, exit {code}")
    for name, profiles in (("main thread", [main_profile]), ("download threads, summed", _profiles)):
        if not profiles:
            continue
        stats = pstats.Stats(profiles[0], stream=sys.stdout)
        for profile in profiles[1:]:
            stats.add(profile)
        for order in ("cumulative", "tottime"):
            print(f"===== {name}, by {order}")
            stats.sort_stats(order).print_stats(top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
