"""`hub serve` as the benchmark runs it, plus a sampler of waitress's worker threads.

    python -m benchmarks.downloads.server --port P --threads 8 --stats FILE

The same app and waitress arguments as `hub serve` (hub/cli.py), built with
``waitress.create_server`` instead of ``waitress.serve`` so that the dispatcher's own
counters can be read: ``active_count`` is the number of worker threads running a
request, ``len(queue)`` the requests waiting for one. Every 0.25 s one JSON line
{t, busy, queued, rss} goes to FILE.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from waitress import create_server

from hub import create_app


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args()
    server = create_server(  # the arguments of `hub serve` (hub/cli.py)
        create_app(),
        host="127.0.0.1",
        port=args.port,
        threads=args.threads,
        connection_limit=1000,
        asyncore_use_poll=True,
        ident="oer-hub",
    )
    dispatcher = server.task_dispatcher  # type: ignore[union-attr]

    def sample() -> None:
        with args.stats.open("a") as out:
            while True:
                line = {
                    "t": time.time(),
                    "busy": dispatcher.active_count,
                    "queued": len(dispatcher.queue),
                    "rss": _rss(),
                }
                out.write(json.dumps(line) + "\n")
                out.flush()
                time.sleep(0.25)

    threading.Thread(target=sample, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
