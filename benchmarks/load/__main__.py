"""Mixed load test: browsing, searching and downloading teachers, uploads and index updates together.

One command (the catalog generated as the search benchmark does, or a data directory it left)::

    .venv/bin/python -m benchmarks.load --lessons 20000 --users 10 20 40 80 --step-seconds 60
    .venv/bin/python -m benchmarks.load --data-dir /tmp/s1m/hub --users 10 20 40 80

The deployment under test is one node as README "Scaling out" describes it: ``hub serve``
with ``--processes`` waitress processes (hub/serving.py) and one real ``hub worker`` that
applies the index updates, on the Redis broker when ``--broker`` is given (else the hub's
SQLite broker). The load tool is locust (the ``bench`` extra: ``make bench-deps``), headless,
on loopback, one bounded run per step of users (benchmarks/load/locustfile.py has the users:
browsing 5, searching 3, downloading 2, uploading 1 by weight, each waiting 0.5–3 s between
actions as a person does). Per step: throughput, p95/p99 and errors per action, the CPU the
server and worker used, and the freshness of one index update made in the middle of the step
(PATCH a course, then search for the new word until it is found). The step where throughput
stops growing with the users is where the node saturates.

Reference in the same run: the first step (the fewest users) is the unloaded baseline each
later step's p95 is compared with.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class Action:
    name: str
    count: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float


@dataclass
class Step:
    users: int
    seconds: int
    actions: list[Action] = field(default_factory=list)
    total: Action | None = None
    server_cores: float = 0.0
    worker_cores: float = 0.0
    freshness_s: float | None = None
    load: float = 0.0


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
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


# -- the catalog and what the users need --------------------------------------


def make_catalog(lessons: int, data_dir: Path) -> None:
    """The search benchmark's generated catalog in a migrated SQLite database, indexed by `hub search rebuild`."""
    from benchmarks.search.generate import generate
    from benchmarks.search.run import load_database

    app = load_database(generate(lessons), data_dir)
    from hub.db import get_database

    get_database(app).engine.dispose()
    env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"}
    subprocess.run([str(BIN / "hub"), "search", "rebuild"], env=env, check=True, stdout=subprocess.DEVNULL)


def prepare(env: dict[str, str], blobs: int, blob_kib: int) -> dict[str, Any]:
    """An uploader and its token; ``blobs`` real files behind published lessons' materials; queries."""
    from sqlalchemy import func, select, update

    from benchmarks.search.generate import generate, make_queries
    from hub import create_app
    from hub.accounts import services as accounts
    from hub.catalog.models import Course, Lesson, Material
    from hub.db import get_database
    from hub.media.models import Blob

    app = create_app({k: v for k, v in env.items() if k.startswith("HUB_")}, web=False)
    # An index of another schema would be rebuilt in the background as the server starts: the test
    # would measure the rebuild, and searches would answer "being rebuilt".
    state = app.extensions["hub.search"].index.state()
    if not state.ok:
        raise SystemExit(
            f"the search index is {state.status} ({state.detail}): run `hub search rebuild` on this data directory"
        )
    storage = app.extensions["hub.storage"]
    with app.app_context(), get_database(app).session() as session:
        school = accounts.create_school(session, f"负载测试学校{time.time_ns()}", "famous", "北京市", "海淀区")
        user = accounts.create_user(session, f"load{time.time_ns()}@example.cn", school, "uploader")
        token = accounts.create_token(session, user)
        # The generated materials name blobs that were never stored: give the first ones real bytes,
        # so downloading teachers fetch files of a lesson's size from the storage.
        materials = session.scalars(select(Material).order_by(Material.id).limit(blobs)).all()
        shas = []
        for i, material in enumerate(materials):
            stored = storage.store(io.BytesIO(os.urandom(blob_kib * 1024 - i)))
            if session.get(Blob, stored.sha256) is None:
                session.add(Blob(sha256=stored.sha256, size=stored.size, media_type="application/pdf"))
            session.execute(update(Material).where(Material.id == material.id).values(original_sha256=stored.sha256))
            shas.append(stored.sha256)
        courses = session.scalar(select(func.max(Course.id))) or 0
        lessons = session.scalar(select(func.max(Lesson.id))) or 0
        session.commit()
    get_database(app).engine.dispose()
    queries = sorted({q.text for q in make_queries(generate(2000), 300)})
    return {"token": token, "blobs": shas, "courses": courses, "lessons": lessons, "queries": queries}


def own_courses(url: str, token: str, count: int) -> list[int]:
    """Published courses of the uploader, through the API: the ones the index updates edit."""
    auth = {"Authorization": f"Bearer {token}"}
    made = []
    for i in range(count):
        body = {"title": f"负载测试课程{i}", "subject": "math", "grades": [8], "language": "zh", "license": "CC-BY-4.0"}
        course = requests.post(f"{url}/api/v1/courses", json=body, headers=auth, timeout=30)
        course.raise_for_status()
        cid = course.json()["id"]
        requests.post(
            f"{url}/api/v1/courses/{cid}/lessons", json={"title": "勾股定理"}, headers=auth, timeout=30
        ).raise_for_status()
        requests.post(f"{url}/api/v1/courses/{cid}/publish", headers=auth, timeout=30).raise_for_status()
        made.append(cid)
    return made


# -- processes -----------------------------------------------------------------


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def wait_up(url: str, process: Process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise SystemExit(f"the server stopped; see {process.log.name}")
        try:
            if requests.get(url + "/api/v1/openapi.json", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up; see {process.log.name}")


def freshness(url: str, token: str, course: int, word: str, limit: float = 120) -> float | None:
    """Seconds from an edit's answer until search finds its new word (None: not within ``limit``)."""
    auth = {"Authorization": f"Bearer {token}"}
    body = {"title": f"勾股定理 {word}"}
    answer = requests.patch(f"{url}/api/v1/courses/{course}", json=body, headers=auth, timeout=60)
    answer.raise_for_status()
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            found = requests.get(f"{url}/api/v1/search", params={"q": word}, timeout=30)
            if found.ok and found.json()["total"] > 0:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return None


def run_step(
    url: str, users: int, seconds: int, work: Path, env: dict[str, str], pids: tuple[int, int], probe: Any
) -> Step:
    step = Step(users, seconds, load=os.getloadavg()[0])
    prefix = work / f"step-{users}"
    argv = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "--host", url, "-u", str(users)]
    argv += ["-r", str(max(1, users // 5)), "-t", f"{seconds}s", "--csv", str(prefix), "--only-summary"]
    argv += ["--stop-timeout", "10", "--loglevel", "WARNING"]
    fresh: list[float | None] = []
    timer = threading.Timer(min(20, seconds / 3), lambda: fresh.append(probe()))
    server0, worker0 = cpu_seconds(pids[0]), cpu_seconds(pids[1])
    started = time.monotonic()
    timer.start()
    with (work / f"locust-{users}.log").open("wb") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=seconds + 300)
    timer.join()
    wall = time.monotonic() - started
    step.server_cores = (cpu_seconds(pids[0]) - server0) / wall
    step.worker_cores = (cpu_seconds(pids[1]) - worker0) / wall
    step.freshness_s = fresh[0] if fresh else None
    with open(f"{prefix}_stats.csv", encoding="utf-8") as stats:
        for row in csv.DictReader(stats):
            action = Action(
                row["Name"],
                int(row["Request Count"]),
                int(row["Failure Count"]),
                float(row["Requests/s"]),
                float(row["50%"] or 0),
                float(row["95%"] or 0),
                float(row["99%"] or 0),
            )
            if row["Name"] == "Aggregated":
                step.total = action
            else:
                step.actions.append(action)
    return step


# -- report --------------------------------------------------------------------


def report(steps: list[Step], meta: dict[str, Any]) -> str:
    base = steps[0].total
    assert base is not None
    lines = [
        f"### Mixed load at {meta['lessons']:,} lessons — {meta['when']}, load average {meta['load']:.1f} at the start",
        "",
        f"One node: `hub serve --processes {meta['processes']} --threads {meta['threads']}` and one `hub worker` "
        f"({meta['broker']}), {meta['database']}, local storage, on the same {os.cpu_count()} cores as locust "
        f"{meta['locust']}. {meta['step_seconds']} s per step of users; downloads are files of "
        f"{meta['blob_kib']} KiB, uploads {meta['upload_kib']} KiB in one tus PATCH.",
        "",
        "| users | req/s | failures | p50 | p95 | p99 | p95 ÷ first step | server cores | worker cores "
        "| index update found after |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in steps:
        t = s.total
        assert t is not None
        fresh = "not within 120 s" if s.freshness_s is None else f"{s.freshness_s:.1f} s"
        lines.append(
            f"| {s.users} | {t.rps:.1f} | {t.failures} of {t.count} | {t.p50:.0f} ms | {t.p95:.0f} ms "
            f"| {t.p99:.0f} ms | {t.p95 / max(base.p95, 1):.1f}× | {s.server_cores:.2f} | {s.worker_cores:.2f} "
            f"| {fresh} |"
        )
    lines += ["", "Per action (req/s, p95 / p99 in ms, failures):", ""]
    names = sorted({a.name for s in steps for a in s.actions})
    lines.append("| action | " + " | ".join(f"{s.users} users" for s in steps) + " |")
    lines.append("| --- |" + " ---: |" * len(steps))
    for name in names:
        cells = []
        for s in steps:
            a = next((a for a in s.actions if a.name == name), None)
            cells.append("–" if a is None else f"{a.rps:.1f}/s, {a.p95:.0f} / {a.p99:.0f}, {a.failures} err")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    saturated = None
    for prev, cur in itertools.pairwise(steps):
        assert prev.total is not None and cur.total is not None
        grew = cur.total.rps / max(prev.total.rps, 0.01)
        if grew < 1 + 0.5 * (cur.users / prev.users - 1):
            saturated = (prev, cur, grew)
            break
    if saturated:
        prev, cur, grew = saturated
        lines.append(
            f"Saturation: from {prev.users} to {cur.users} users throughput grew {grew:.2f}× "
            f"(less than half the users' growth): the node saturates at about {prev.users}–{cur.users} users "
            f"({prev.total.rps:.0f}–{cur.total.rps:.0f} req/s)."  # type: ignore[union-attr]
        )
    else:
        lines.append("Saturation: not reached at these steps (throughput still grew with the users).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--lessons", type=int, help="generate a catalog of this many lessons (search benchmark's)")
    where.add_argument("--data-dir", type=Path, help="a data directory with a catalog and its index already")
    parser.add_argument("--users", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--step-seconds", type=int, default=60)
    parser.add_argument("--processes", type=int, default=2, help="hub serve processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per hub serve process")
    parser.add_argument("--broker", default="", help="HUB_BROKER_URL for serve and worker (default: SQLite broker)")
    parser.add_argument("--blobs", type=int, default=20, help="files the downloading teachers fetch")
    parser.add_argument("--blob-kib", type=int, default=512)
    parser.add_argument("--upload-kib", type=int, default=256)
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    if not (BIN / "locust").exists():
        parser.error("locust, the load tool, is not installed: run `make bench-deps` (pip install -e '.[bench]')")

    # SIGTERM stops the server and worker too (the finally below), as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="hub-load-"))
    data_dir = args.data_dir or work / "hub"
    env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"}
    if args.broker:
        env["HUB_BROKER_URL"] = args.broker
    processes: list[Process] = []
    try:
        if args.lessons:
            started = time.perf_counter()
            make_catalog(args.lessons, data_dir)
            print(f"catalog of {args.lessons:,} lessons loaded and indexed in {time.perf_counter() - started:.0f} s")
        config = prepare(env, args.blobs, args.blob_kib)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = [str(BIN / "hub"), "serve", "--port", str(port), "--processes", str(args.processes)]
        serve += ["--threads", str(args.threads)]
        processes.append(Process(serve, env, work / "serve.log"))
        processes.append(Process([str(BIN / "hub"), "worker", "--no-beat"], env, work / "worker.log"))
        wait_up(url, processes[0])
        config["own_courses"] = own_courses(url, config["token"], 5)
        config["upload_bytes"] = args.upload_kib * 1024
        (work / "config.json").write_text(json.dumps(config, ensure_ascii=False))
        locust_env = {**os.environ, "HUB_LOAD_CONFIG": str(work / "config.json")}
        load_start = os.getloadavg()[0]
        steps = []
        for users in args.users:
            word = f"quokka{users:04d}".replace("0", "z")

            def probe(word: str = word) -> float | None:
                return freshness(url, config["token"], config["own_courses"][0], word)

            pids = (processes[0].process.pid, processes[1].process.pid)
            step = run_step(url, users, args.step_seconds, work, locust_env, pids, probe)
            steps.append(step)
            t = step.total
            assert t is not None
            print(
                f"{time.strftime('%H:%M:%S')} {users} users: {t.rps:.1f} req/s, p95 {t.p95:.0f} ms, "
                f"p99 {t.p99:.0f} ms, {t.failures} failures, server {step.server_cores:.2f} cores",
                flush=True,
            )
        locust_version = subprocess.run(
            [str(BIN / "locust"), "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        meta = {
            "lessons": config["lessons"],
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": load_start,
            "processes": args.processes,
            "threads": args.threads,
            "broker": "Redis broker" if args.broker.startswith("redis") else "SQLite broker",
            "database": "SQLite database",
            "locust": locust_version[1] if len(locust_version) > 1 else "?",
            "step_seconds": args.step_seconds,
            "blob_kib": args.blob_kib,
            "upload_kib": args.upload_kib,
        }
        text = report(steps, meta)
        print(text)
        if args.output:
            args.output.write_text(text)
    finally:
        for process in processes:
            process.stop()
        shutil.rmtree(work / "hub", ignore_errors=True)
        print(f"logs and locust CSVs: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
