"""Benchmark: how fast one worker process gets tasks from each broker.

    .venv/bin/python -m benchmarks.broker [--tasks 300] [--singles 20] [--redis redis://127.0.0.1:6379/10]

For each broker it makes a fresh hub (its own data directory and SQLite database)
and measures one ``hub worker --concurrency 1 --no-beat`` process:

- backlog: ``--tasks`` tasks queued before the worker starts; tasks per second
  from the first one received to the last one done (from the worker's log);
- one at a time: ``--singles`` tasks sent one after the other, each once the
  previous is done; the median time from the send to the task's end;
- idle: the worker's CPU over 10 s with nothing to do (the cost of polling);
- left: messages still in the SQLite broker's file afterwards.

The task is ``hub.jobs.sweep_outbox`` on an empty outbox (a few milliseconds of
database work), so the broker's share shows. Brokers: the hub's SQLite broker
(``hub.broker``), kombu's stock SQLAlchemy transport as the hub used it up to
85dfe9d (1 s polls, delivered messages kept), and Redis, the reference, in the
same run (left out only when ``--redis`` is empty; unreachable, it is an error). The results
section of benchmarks/broker/RESULTS.md is rewritten.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import replace_results

RESULTS = Path(__file__).with_name("RESULTS.md")
TASK = "hub.jobs.sweep_outbox"
LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]+\] Task (\S+)\[([0-9a-f-]+)\] (received|succeeded)"
)

# kombu's SQLAlchemy transport exactly as the hub configured it up to 85dfe9d.
STOCK = """
import sys
from hub import jobs
jobs._broker_settings = lambda settings: {"broker_url": settings.broker_url, "broker_transport_options": {}}
from hub.cli import main
sys.argv = ["hub", *sys.argv[1:]]
main()
"""


@dataclass
class Result:
    broker: str
    backlog_rate: float  # tasks/s
    single_median: float  # s from send to done
    idle_cpu: float  # fraction of one core
    left: int | None  # messages left in the SQLite file


def run(broker: str, url: str, work: Path, tasks: int, singles: int) -> Result:
    data = work / broker.split()[0]
    data.mkdir()
    env = {**os.environ, "HUB_DATA_DIR": str(data), "HUB_BROKER_URL": url, "HUB_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "hub.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    sender = Sender(data, url)
    sender.send(tasks)
    log = data / "worker.log"
    args = ["worker", "--concurrency", "1", "--no-beat"]
    stock = broker.startswith("kombu")
    argv = [sys.executable, "-c", STOCK, *args] if stock else [sys.executable, "-m", "hub.cli", *args]
    with log.open("wb") as out:
        worker = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        events = wait_for(log, lambda ev: count(ev, "succeeded") >= tasks, 600)
        received = [t for t, _, _, kind in events if kind == "received"]
        done = [t for t, _, _, kind in events if kind == "succeeded"]
        backlog_rate = (tasks - 1) / (done[tasks - 1] - received[0])
        latencies = []
        for _ in range(singles):
            before = count(parse(log), "succeeded")
            started = time.time()
            sender.send(1)
            events = wait_for(log, lambda ev, n=before: count(ev, "succeeded") > n, 60)
            latencies.append([t for t, _, _, kind in events if kind == "succeeded"][-1] - started)
            time.sleep(random.uniform(0.2, 0.5))  # sent at any point of the worker's polling cycle
        idle_cpu = cpu_over(worker.pid, 10.0)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)
    left = None
    if url.startswith("sqla+sqlite"):
        with sqlite3.connect(data / "broker.db") as db:
            left = int(db.execute("SELECT count(*) FROM kombu_message").fetchone()[0])
    return Result(broker, backlog_rate, statistics.median(latencies), idle_cpu, left)


class Sender:
    """Queues tasks as the hub does (one connection, no retries), from this process."""

    def __init__(self, data: Path, url: str) -> None:
        from hub import create_app, jobs

        self.app = create_app({"HUB_DATA_DIR": str(data), "HUB_BROKER_URL": url, "HUB_LOG_LEVEL": "WARNING"}, web=False)
        self.celery = jobs.get_celery(self.app)

    def send(self, n: int) -> None:
        with self.celery.connection_for_write() as connection:
            producer = self.celery.amqp.Producer(connection, auto_declare=False)
            for _ in range(n):
                self.celery.send_task(TASK, producer=producer, retry=False)


def parse(log: Path) -> list[tuple[float, str, str, str]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if match and match.group(2) == TASK:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            events.append((when, match.group(2), match.group(3), match.group(4)))
    return events


def count(events: list[tuple[float, str, str, str]], kind: str) -> int:
    return sum(1 for event in events if event[3] == kind)


def wait_for(log: Path, done: object, timeout: float) -> list[tuple[float, str, str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = parse(log) if log.exists() else []
        if done(events):  # type: ignore[operator]
            return events
        time.sleep(0.01)
    raise SystemExit(f"timed out; see {log}")


def cpu_over(pid: int, seconds: float) -> float:
    """CPU used by ``pid`` and its children over ``seconds``, as a fraction of one core."""

    def ticks() -> int:
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid or int(stat.parent.name) == pid:  # the process and its pool
                total += int(fields[11]) + int(fields[12])
        return total

    first = ticks()
    time.sleep(seconds)
    return (ticks() - first) / os.sysconf("SC_CLK_TCK") / seconds


def redis_up(url: str) -> bool:
    if not url:
        return False
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
        return True
    except redis.RedisError:
        return False


def report(results: list[Result], tasks: int, singles: int, load: float) -> str:
    reference = next((r for r in results if r.broker == "Redis"), None)
    lines = [
        "## Results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, {platform.system()} {platform.release()}, load average {load:.1f}"
        f" at the start: one worker process (`--concurrency 1`), {tasks} tasks queued ahead, then {singles}"
        " one at a time.",
        "",
        "| broker | backlog, tasks/s | ÷ Redis | one task, send to done (median) | worker CPU idle | messages left |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = f"{r.backlog_rate / reference.backlog_rate:.2f}" if reference else "–"
        left = "–" if r.left is None else str(r.left)
        lines.append(
            f"| {r.broker} | {r.backlog_rate:.1f} | {ratio} | {r.single_median * 1000:.0f} ms"
            f" | {r.idle_cpu * 100:.1f} % | {left} |"
        )
    lines += ["", "Reproduce: `.venv/bin/python -m benchmarks.broker` (`--tasks`, `--singles`, `--redis`).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--singles", type=int, default=20)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/10", help="the reference broker; empty: none")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave RESULTS.md alone")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="hub-bench-broker-"))
    try:
        brokers = [
            ("hub SQLite broker", f"sqla+sqlite:///{work}/hub/broker.db"),
            ("kombu SQLAlchemy, as at 85dfe9d", f"sqla+sqlite:///{work}/kombu/broker.db"),
        ]
        # The reference is left out only when asked (--redis ''): unreachable, it is an error, not a gap.
        if args.redis:
            if not redis_up(args.redis):
                raise SystemExit(
                    f"the reference broker {args.redis} is unreachable: start redis-server (`make bench-deps` "
                    "installs it), or pass --redis '' to measure without the reference"
                )
            brokers.append(("Redis", args.redis))
        results = []
        for name, url in brokers:
            print(f"measuring {name}", file=sys.stderr)
            results.append(run(name, url, work, args.tasks, args.singles))
        section = report(results, args.tasks, args.singles, load)
        print(section)
        if not args.no_write:
            replace_results(RESULTS, "Broker benchmark", section)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
