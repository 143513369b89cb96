"""Benchmark: 200 slow downloads at once, and how page views fare meanwhile.

    .venv/bin/python -m benchmarks.downloads [--clients 200] [--kbit 256] [--duration 40]
        [--blob-mib 32] [--threads 8] [--scenarios reference,blobs,nginx-reference,nginx,zips,zips-s3,...]

Each scenario starts a fresh hub on loopback: the app and waitress arguments of
`hub serve` (benchmarks/downloads/server.py, which also samples waitress's worker
threads every 0.25 s: how many run a request, how many requests wait for one) and,
for the nginx scenarios, nginx with the generated X-Accel-Redirect configuration.
During a bounded run, `--clients` asyncio clients each download at `--kbit` kbit/s
(a small receive buffer and paced reads, so TCP flow control slows the server down
as a real 2G link would) while two page-view clients fetch the home, course and
lesson pages back to back and time each answer. The reference scenarios run the page
views alone, in the same run, on the same machine.

- reference        page views alone, straight to waitress
- blobs            slow blob downloads straight to waitress (HUB_DOWNLOAD_OFFLOAD=none:
                   the file goes to waitress's wsgi.file_wrapper, sent by its I/O loop)
- nginx-reference  page views alone through nginx
- nginx            slow blob downloads through nginx, HUB_DOWNLOAD_OFFLOAD=x-accel-redirect
- zips             slow whole-course ZIP downloads straight to waitress, local storage
                   (the archive as a file for waitress's file_wrapper: hub.media.zipstore.ZipWindow)
- zips-s3          the same with S3 storage (a moto server in its own process): the ZIP is
                   a generator reading S3, so each download holds a worker thread
- zips-s3-threads  the same with waitress at --clients + 16 threads

The results section of benchmarks/downloads/RESULTS.md is rewritten.
Target (issue 6): page-view p99 <= 300 ms while the downloads run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks.downloads.nginx import nginx_binary, start_nginx, write_config

RESULTS = Path(__file__).with_name("RESULTS.md")
PAGE_TIMEOUT = 20.0  # a page view slower than this counts as failed (and as 20 s)
SCENARIOS = ("reference", "blobs", "nginx-reference", "nginx", "zips", "zips-s3", "zips-s3-threads")
S3_ENV = {  # moto takes any credentials
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


# -- the instance --------------------------------------------------------------------


@dataclass
class Instance:
    data_dir: Path
    env: dict[str, str]
    course_id: int
    lesson_id: int
    blob_sha256: str
    blob_size: int
    zip_size: int = 0


def seed(data_dir: Path, blob_mib: int, extra_env: dict[str, str] | None = None) -> Instance:
    """A published course whose lesson has one large video rendition (random bytes)."""
    from hub import create_app
    from hub.accounts import services as accounts
    from hub.catalog.models import Course, Lesson, Material
    from hub.db import get_database
    from hub.media.models import Blob, Rendition
    from hub.migrate import upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    env = {"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "ERROR", **(extra_env or {})}
    upgrade(f"sqlite:///{data_dir}/hub.db")
    app = create_app(env)
    storage = app.extensions["hub.storage"]
    video = storage.store(io.BytesIO(os.urandom(blob_mib * 1024 * 1024)))
    original = storage.store(io.BytesIO(os.urandom(64 * 1024)))
    with get_database(app).session() as session:
        school = accounts.create_school(session, "海淀实验小学", "famous", "北京市", "海淀区")
        session.flush()
        course = Course(
            school_id=school.id,
            title="一元二次方程",
            summary="配方法、公式法与因式分解法",
            category="curriculum",
            subject="math",
            grades_mask=1 << 9,
            edition="人教版",
            volume="上册",
            language="zh",
            license="CC-BY-SA-4.0",
            teacher="王老师",
            status="published",
        )
        lesson = Lesson(course=course, position=1, title="配方法")
        blob = Blob(sha256=video.sha256, size=video.size, media_type="video/mp4")
        source = Blob(sha256=original.sha256, size=original.size, media_type="video/mp4")
        material = Material(lesson=lesson, kind="video", title="配方法讲解", original=source, status="ready")
        material.renditions.append(Rendition(profile="video-240p", status="ready", blob=blob, bytes=video.size))
        session.add_all([course, lesson, blob, source, material])
        session.commit()
        instance = Instance(data_dir, env, course.id, lesson.id, video.sha256, video.size)
    get_database(app).engine.dispose()
    return instance


# -- clients -------------------------------------------------------------------------


@dataclass
class DownloadStats:
    started: int = 0
    answered: int = 0  # got a status line
    statuses: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0  # summed over clients, from connect to the end
    first_byte: list[float] = field(default_factory=list)
    first_byte_at: list[float] = field(default_factory=list)  # monotonic clock
    errors: int = 0


async def slow_download(host: str, port: int, path: str, rate: float, deadline: float, stats: DownloadStats) -> None:
    """One client on a `rate` bytes/s link: small receive buffer, paced reads until the deadline."""
    stats.started += 1
    sock = socket.socket()
    # The kernel would otherwise soak up megabytes on loopback, hiding the slow reader.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    t0 = time.monotonic()
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        received = 0
        first = True
        while time.monotonic() < deadline:
            remaining = deadline - time.monotonic()
            try:
                chunk = await asyncio.wait_for(reader.read(4096), timeout=max(remaining, 0.01))
            except TimeoutError:
                break
            if not chunk:
                break
            if first:
                stats.first_byte.append(time.monotonic() - t0)
                stats.first_byte_at.append(time.monotonic())
                stats.answered += 1
                status = chunk.split(b"\r\n", 1)[0].split(b" ")[1:2]
                key = status[0].decode() if status else "?"
                stats.statuses[key] = stats.statuses.get(key, 0) + 1
                first = False
            received += len(chunk)
            stats.bytes += len(chunk)
            # Pace: never ahead of `rate` bytes per second since the start.
            ahead = received / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(min(ahead, max(deadline - time.monotonic(), 0)))
        writer.close()
    except OSError:
        stats.errors += 1
    finally:
        stats.seconds += time.monotonic() - t0
        sock.close()


def run_downloads(host: str, port: int, path: str, clients: int, rate: float, deadline: float) -> DownloadStats:
    stats = DownloadStats()

    async def main() -> None:
        tasks = []
        for _ in range(clients):
            tasks.append(asyncio.create_task(slow_download(host, port, path, rate, deadline, stats)))
            await asyncio.sleep(0.01)  # 200 clients arrive over 2 s, not in one SYN burst
        await asyncio.gather(*tasks)

    asyncio.run(main())
    return stats


def page_views(
    base: str, paths: list[str], start: float, deadline: float, out: list[tuple[float, float]], failed: list[int]
) -> None:
    """Back-to-back page views (new connection each, like separate phones) until the deadline."""
    i = 0
    while time.monotonic() < start:
        time.sleep(0.05)
    while time.monotonic() < deadline:
        path = paths[i % len(paths)]
        i += 1
        t0 = time.monotonic()
        try:
            r = requests.get(base + path, timeout=PAGE_TIMEOUT, headers={"Connection": "close"})
            ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        elapsed = time.monotonic() - t0
        out.append((t0, elapsed if ok else PAGE_TIMEOUT))
        if not ok:
            failed.append(1)
        time.sleep(0.1)


# -- one scenario --------------------------------------------------------------------


@dataclass
class Result:
    name: str
    what: str
    threads: int
    clients: int
    page_ms: list[float]
    page_failed: int
    steady_ms: list[float] | None
    downloads: DownloadStats | None
    busy_max: int
    busy_mean: float
    queued_max: int
    hub_rss_peak: int
    hub_rss_start: int
    nginx_rss_peak: int = 0

    def pct(self, q: float, steady: bool = False) -> float:
        values = self.page_ms if not steady or self.steady_ms is None else self.steady_ms
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _steady(views: list[tuple[float, float]], stats: DownloadStats | None, clients: int) -> list[float] | None:
    """Page views that started once every download had its first byte (None: that never happened)."""
    if stats is None:
        return [x * 1000 for _t, x in views]
    if len(stats.first_byte_at) < clients:
        return None
    settled = max(stats.first_byte_at)
    return [x * 1000 for t, x in views if t >= settled]


def _rss_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_scenario(name: str, inst: Instance, args: argparse.Namespace, workdir: Path, log: Path) -> Result:
    via_nginx = name.startswith("nginx")
    downloads = name in ("blobs", "nginx", "zips", "zips-s3", "zips-s3-threads")
    threads = args.clients + 16 if name.endswith("-threads") else args.threads
    env = dict(inst.env)
    if via_nginx:
        env["HUB_DOWNLOAD_OFFLOAD"] = "x-accel-redirect"
    hub_port = free_port()
    stats_file = workdir / f"{name}-stats.jsonl"
    stats_file.unlink(missing_ok=True)
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.downloads.server",
            "--port",
            str(hub_port),
            "--threads",
            str(threads),
            "--stats",
            str(stats_file),
        ],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    nginx = None
    try:
        wait_for(f"http://127.0.0.1:{hub_port}/api/v1/openapi.json")
        port = hub_port
        if via_nginx:
            port = free_port()
            from hub.config import Settings

            storage_dir = Settings.load(env).storage_dir
            config = write_config(workdir / f"nginx-{name}", f"127.0.0.1:{port}", f"127.0.0.1:{hub_port}", storage_dir)
            nginx = start_nginx(config, workdir / f"nginx-{name}.log")
            wait_for(f"http://127.0.0.1:{port}/api/v1/openapi.json")
        base = f"http://127.0.0.1:{port}"
        pages = ["/", f"/courses/{inst.course_id}", f"/lessons/{inst.lesson_id}"]
        for path in pages:  # warm up templates and caches once
            requests.get(base + path, timeout=30)
        duration = args.duration if downloads else args.reference_duration
        start = time.monotonic() + (3.0 if downloads else 0.0)  # let the clients connect first
        deadline = start + duration
        page_ms: list[tuple[float, float]] = []
        failed: list[int] = []
        viewers = [
            threading.Thread(target=page_views, args=(base, pages, start, deadline, page_ms, failed), daemon=True)
            for _ in range(2)
        ]
        nginx_peak = 0
        sampler_stop = threading.Event()

        def sample_nginx() -> None:
            nonlocal nginx_peak
            while not sampler_stop.is_set() and nginx is not None:
                nginx_peak = max(nginx_peak, _rss_of([nginx.pid, *_children(nginx.pid)]))
                sampler_stop.wait(0.5)

        sampler = threading.Thread(target=sample_nginx, daemon=True)
        sampler.start()
        for viewer in viewers:
            viewer.start()
        stats = None
        if downloads:
            path = (
                f"/courses/{inst.course_id}/download?quality=smallest"
                if name.startswith("zips")
                else f"/api/v1/blobs/{inst.blob_sha256}"
            )
            stats = run_downloads("127.0.0.1", port, path, args.clients, args.kbit * 1000 / 8, deadline)
        for viewer in viewers:
            viewer.join(timeout=PAGE_TIMEOUT + duration + 10)
        sampler_stop.set()
        samples = [json.loads(line) for line in stats_file.read_text().splitlines() if line.strip()]
        window = [s for s in samples if s["t"] >= time.time() - duration - 1] or samples
        return Result(
            name=name,
            what="",
            threads=threads,
            clients=args.clients if downloads else 0,
            page_ms=[x * 1000 for _t, x in page_ms],
            steady_ms=_steady(page_ms, stats, args.clients),
            page_failed=len(failed),
            downloads=stats,
            busy_max=max(s["busy"] for s in window),
            busy_mean=statistics.fmean(s["busy"] for s in window),
            queued_max=max(s["queued"] for s in window),
            hub_rss_peak=max(s["rss"] for s in samples),
            hub_rss_start=samples[0]["rss"],
            nginx_rss_peak=nginx_peak,
        )
    finally:
        for proc in (nginx, hub):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


# -- report --------------------------------------------------------------------------

WHAT = {
    "reference": "page views alone, waitress",
    "blobs": "slow blob downloads, waitress alone (file_wrapper)",
    "nginx-reference": "page views alone, through nginx",
    "nginx": "slow blob downloads, nginx X-Accel-Redirect",
    "zips": "slow course-ZIP downloads, waitress alone, local storage",
    "zips-s3": "slow course-ZIP downloads, waitress alone, S3 storage",
    "zips-s3-threads": "slow course-ZIP downloads, S3 storage, waitress with more threads",
}


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | threads | downloads answered | page p50 | page p99 | p99 once all started | page views (failed) "
        "| busy threads max / mean | queued max | hub RSS start → peak | nginx RSS | download kbit/s each "
        "| first byte p50 / max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        d = r.downloads
        if d is not None and d.answered:
            rate = d.bytes * 8 / 1000 / max(d.seconds, 1e-9)  # mean per client
            first = f"{statistics.median(d.first_byte):.1f} / {max(d.first_byte):.1f} s"
            served = f"{d.answered}/{d.started}" + (f" ({d.errors} err)" if d.errors else "")
        else:
            rate, first, served = float("nan"), "—", "—"
        lines.append(
            f"| {WHAT[r.name]} | {r.threads} | {served} | {r.pct(0.5):.0f} ms | {r.pct(0.99):.0f} ms "
            f"| {'never' if r.steady_ms is None else f'{r.pct(0.99, steady=True):.0f} ms ({len(r.steady_ms)})'} "
            f"| {len(r.page_ms)} ({r.page_failed}) | {r.busy_max} / {r.busy_mean:.1f} | {r.queued_max} "
            f"| {mb(r.hub_rss_start)} → {mb(r.hub_rss_peak)} | {mb(r.nginx_rss_peak) if r.nginx_rss_peak else '—'} "
            f"| {'—' if rate != rate else f'{rate:.0f}'} | {first} |"
        )
    return "\n".join(lines)


def write_results(results: list[Result], args: argparse.Namespace, inst: Instance) -> str:
    load = os.getloadavg()[0]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    by = {r.name: r for r in results}
    ratios = []
    for name, ref in (
        ("blobs", "reference"),
        ("nginx", "nginx-reference"),
        ("zips", "reference"),
        ("zips-s3", "reference"),
        ("zips-s3-threads", "reference"),
    ):
        if name in by and ref in by:
            r, base = by[name], by[ref].pct(0.99)
            steady = (
                "never steady" if r.steady_ms is None else f"{r.pct(0.99, steady=True) / base:.1f}× once all started"
            )
            ratios.append(f"{name} ÷ {ref} page p99: {r.pct(0.99) / base:.1f}× ({steady})")
    body = f"""## Results

{when}, load average {load:.1f}, {platform.python_implementation()} {platform.python_version()},
{args.clients} clients at {args.kbit:.0f} kbit/s for {args.duration:.0f} s each
(references {args.reference_duration:.0f} s), blob {inst.blob_size / 2**20:.0f} MiB,
course ZIP {inst.zip_size / 2**20:.1f} MiB, waitress {args.threads} threads unless noted.

{table(results)}

{"; ".join(ratios)}.
Target: page-view p99 ≤ 300 ms while the downloads run.
"""
    text = RESULTS.read_text() if RESULTS.exists() else "# Downloads benchmark\n\n"
    head = text.split("## Results", 1)[0]
    RESULTS.write_text(head + body)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--kbit", type=float, default=256)
    parser.add_argument("--duration", type=float, default=40)
    parser.add_argument("--reference-duration", type=float, default=20)
    parser.add_argument("--blob-mib", type=int, default=32)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if any(n.startswith("nginx") for n in names) and nginx_binary() is None:
        # The nginx rows are the offload this benchmark exists to compare: missing, it stops rather than
        # printing a table without them.
        parser.error(
            "nginx is not installed (`make install` or apt-get install nginx-light); "
            "or leave the nginx scenarios out with --scenarios"
        )
    workdir = Path(tempfile.mkdtemp(prefix="bench-downloads-"))
    log = workdir / "servers.log"
    moto = None
    try:
        local = seed(workdir / "var", args.blob_mib)
        local.zip_size = _zip_size(local)
        s3 = None
        if any("-s3" in n for n in names):
            moto_port = free_port()
            moto = subprocess.Popen(
                [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            endpoint = f"http://127.0.0.1:{moto_port}"
            wait_for(endpoint)
            requests.put(f"{endpoint}/bench", timeout=10).raise_for_status()
            os.environ.update(S3_ENV)
            s3 = seed(
                workdir / "var-s3",
                args.blob_mib,
                {"HUB_STORAGE": "s3", "HUB_S3_BUCKET": "bench", "HUB_S3_ENDPOINT_URL": endpoint},
            )
        results = []
        for name in names:
            print(f"{name}: {WHAT[name]} ...", file=sys.stderr, flush=True)
            inst = s3 if "-s3" in name and s3 is not None else local
            result = run_scenario(name, inst, args, workdir, log)
            results.append(result)
            print(table([result]).splitlines()[-1], file=sys.stderr, flush=True)
        print(write_results(results, args, local))
    finally:
        if moto is not None:
            os.killpg(moto.pid, signal.SIGTERM)
            moto.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def _zip_size(inst: Instance) -> int:
    from hub import create_app
    from hub.db import get_database
    from hub.media.course_download import plan_course_download

    app = create_app(inst.env)
    with get_database(app).session() as session:
        size = plan_course_download(session, None, app.extensions["hub.storage"], inst.course_id, "smallest").size
    get_database(app).engine.dispose()
    return size


if __name__ == "__main__":
    main()
