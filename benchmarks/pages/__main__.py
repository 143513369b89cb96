"""Benchmark: page throughput of `hub serve` against a minimal Flask app on the same server, same run.

    .venv/bin/python -m benchmarks.pages [--seconds 8] [--connections 20] [--processes 0]

It makes a fresh hub (SQLite, the embedded default) with the demo catalog (no media)
and its search index, then for each configuration starts the server and runs
Debian's ``wrk`` (2 threads, ``--connections`` connections, browser-like
``Accept-Encoding: gzip`` and ``Accept-Language: zh-CN``) against seven profiles:
home, course list, a course, a lesson, search, API search, API course list. The
reference, a Flask app answering "Hello, World!", is served by the same code
(hub.serving: waitress, the same number of processes and threads) right before.

Configurations: one process without the page cache (how `hub serve` ran before
issue 19), one process per core without the cache (pages rendered every time) and
with it (the default; every request after the first of a URL is a hit). While wrk
runs, the CPU time of every server process is read from /proc: "cores" is CPU
seconds over wall seconds, so 2.0 means both cores busy (wrk runs on the same two
cores, so it is also a measure of how much it left the server). The results
section of benchmarks/pages/RESULTS.md is rewritten.

Target (issue 19): pages at ≥ 50 % of the Flask app's requests per second, both cores busy.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import requests

from benchmarks import replace_results

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADERS = {"Accept-Encoding": "gzip", "Accept-Language": "zh-CN,zh;q=0.9"}


@dataclass
class Run:
    rps: float
    p99_ms: float
    cores: float
    errors: int


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every process below it."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            total += sum(cpu_seconds(int(child)) for child in children)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def prepare(data_dir: Path) -> dict[str, str]:
    """Migrate, seed the demo catalog (no media), build the index; the URLs of the profiles."""
    from sqlalchemy import select

    from hub import create_app
    from hub.catalog.models import Course, Lesson
    from hub.db import get_database
    from hub.demo import seed_demo
    from hub.migrate import upgrade
    from hub.search import services as search

    app = create_app({"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"}, web=False)
    upgrade(app.extensions["hub.settings"].database_url)
    with app.app_context(), get_database(app).session() as session:
        seed_demo(session, app.extensions["hub.storage"], media=False)
        session.commit()
        search.rebuild(session, app.extensions["hub.search"])
        course = session.scalars(select(Course).where(Course.status == "published").order_by(Course.id)).first()
        assert course is not None
        lesson = session.scalars(select(Lesson).where(Lesson.course_id == course.id).order_by(Lesson.position)).first()
        assert lesson is not None
        word = quote(course.title[:2])  # wrk takes the URL as it is sent
    get_database(app).engine.dispose()
    return {
        "home": "/",
        "course list": "/courses",
        "a course": f"/courses/{course.id}",
        "a lesson": f"/lessons/{lesson.id}",
        "search": f"/search?q={word}",
        "API search": f"/api/v1/search?q={word}",
        "API course list": "/api/v1/courses",
    }


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], port: int, check: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + check, timeout=10).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        self.stop()
        raise SystemExit(f"{argv} did not come up")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wrk(server: Server, path: str, seconds: int, connections: int) -> Run:
    # Warm up: the first request of each process renders (and fills the cache).
    for _ in range(8):
        response = requests.get(server.url + path, headers=HEADERS, timeout=30)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code}")
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in HEADERS.items():
        argv += ["-H", f"{name}: {value}"]
    cpu_before, wall_before = cpu_seconds(server.process.pid), time.monotonic()
    out = subprocess.run([*argv, server.url + path], capture_output=True, text=True, check=True).stdout
    cores = (cpu_seconds(server.process.pid) - cpu_before) / (time.monotonic() - wall_before)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    count = int(errors.group(1)) if errors else 0
    count += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return Run(rps, p99_ms, cores, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--processes", type=int, default=0, help="0: one per core (hub serve's default)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: sudo apt-get install wrk")
    from hub.serving import default_processes

    processes = args.processes or default_processes()
    load_start = os.getloadavg()[0]
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="hub-pages-") as tmp:
        data_dir = Path(tmp) / "var"
        paths = prepare(data_dir)
        configurations = [("1 process, no page cache", 1, 0), (f"{processes} processes, no page cache", processes, 0)]
        configurations.append((f"{processes} processes, page cache (default)", processes, 64))
        table: list[tuple[str, int, str, Run]] = []
        hello: dict[int, Run] = {}
        for label, count, cache_mb in configurations:
            if count not in hello:
                port = free_port()
                argv = [sys.executable, "-m", "benchmarks.pages.hello", "--port", str(port)]
                argv += ["--processes", str(count), "--threads", str(args.threads)]
                server = Server(argv, dict(os.environ), port, "/")
                try:
                    hello[count] = wrk(server, "/", args.seconds, args.connections)
                finally:
                    server.stop()
                print(f"hello, {count} process(es): {hello[count].rps:.0f} req/s", flush=True)
            env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"}
            env["HUB_PAGE_CACHE_MB"] = str(cache_mb)
            port = free_port()
            argv = [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--processes", str(count)]
            argv += ["--threads", str(args.threads)]
            server = Server(argv, env, port, "/api/v1/openapi.json")
            try:
                for profile, path in paths.items():
                    run = wrk(server, path, args.seconds, args.connections)
                    table.append((label, count, profile, run))
                    print(f"{label}: {profile} {run.rps:.0f} req/s ({run.rps / hello[count].rps:.1%})", flush=True)
            finally:
                server.stop()
    write_results(table, hello, paths, args, processes, load_start, started)


def write_results(
    table: list[tuple[str, int, str, Run]],
    hello: dict[int, Run],
    paths: dict[str, str],
    args: argparse.Namespace,
    processes: int,
    load_start: float,
    started: datetime,
) -> None:
    lines = [
        "## Results",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: wrk -t2 "
        f"-c{args.connections} -d{args.seconds}s per row, {args.threads} threads per server process, "
        "SQLite and the demo catalog (no media).",
        "",
        'Reference, same server code and settings, same run (a Flask app answering "Hello, World!"):',
        "",
        "| processes | req/s | p99 | cores busy |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for count, run in sorted(hello.items()):
        lines.append(f"| {count} | {run.rps:,.0f} | {run.p99_ms:.1f} ms | {run.cores:.2f} |")
    lines += ["", "| configuration | profile | URL | req/s | of hello | p99 | cores busy | errors |"]
    lines.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, count, profile, run in table:
        lines.append(
            f"| {label} | {profile} | `{paths[profile]}` | {run.rps:,.0f} | {run.rps / hello[count].rps:.0%} | "
            f"{run.p99_ms:.1f} ms | {run.cores:.2f} | {run.errors} |"
        )
    lines += [
        "",
        "Target: pages at ≥ 50 % of the reference's req/s (same processes), both cores busy.",
        "",
        f"Reproduce: `.venv/bin/python -m benchmarks.pages` (options: `--seconds`, `--connections`, "
        f"`--processes` (default {processes}: one per core), `--threads`).",
        "",
    ]
    replace_results(RESULTS, "Page throughput against a minimal Flask app", "\n".join(lines))
    print(RESULTS.read_text().split("## Results", 1)[1])


if __name__ == "__main__":
    main()
