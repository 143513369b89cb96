"""Benchmark: a 1 GiB resumable upload over loopback, on local storage and on S3.

    .venv/bin/python -m benchmarks.uploads [--size-mib 1024] [--backends local,s3] [--chunk-mib 32]
        [--servers waitress,streaming] [--modes checksum,declared] [--rounds 1]

For each backend it starts a fresh hub (``hub serve`` under waitress, its own data
directory; S3 is a moto server in its own process), uploads one file through the
tus API with the same client ``hub upload`` uses, in each mode (``checksum``: a sha256
Upload-Checksum on every chunk, what ``hub upload`` sent before issue 19; ``declared``:
the file's sha256 declared at creation and no chunk checksum, what it sends now),
and reports MB/s, CPU seconds of the server and of the client, and the server's memory:
resident size before the upload and its peak (the kernel's VmHWM), so "flat memory" is
measured, not sampled. A plain
``cp`` of the same file, timed in the same run, is the reference. The results
section of benchmarks/uploads/RESULTS.md is rewritten.

Targets (issue 5): peak RSS growth < 100 MB; throughput within 2x of cp.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks import replace_results
from hub.uploads.client import MiB, TusClient

ROOT = Path(__file__).resolve().parents[2]

RESULTS = Path(__file__).with_name("RESULTS.md")
BIN = Path(sys.executable).parent
MB = 1_000_000


# How the hub is served (--servers): "waitress" is plain `hub serve`, whose waitress spools each
# body to a temporary file before the app runs; "streaming" is `hub serve --upload-port`, the
# client talking to the upload listener (cheroot) directly; "gunicorn" serves the same app with
# gunicorn's threaded worker, the other streaming server considered (needs gunicorn installed).
SERVERS = ("waitress", "streaming", "gunicorn")
# How the client proves the bytes (--modes): "checksum" hashes every chunk for its
# Upload-Checksum (so the server hashes each byte twice: the chunk's and the file's
# running sha256); "declared" declares the file's sha256 at creation and sends chunks bare
# (the server hashes each byte once and compares when the last one arrives).
MODES = ("checksum", "declared")


@dataclass
class Result:
    backend: str
    server: str
    mode: str
    seconds: float
    rss_before: int
    rss_peak: int
    verified: bool
    cpu: float  # the serving process's CPU seconds (user + system) for the upload
    cpu_user: float  # of which user: Python and hashing; the rest is the kernel's (copies, page cache, fsync)
    client_cpu: float  # this process's CPU seconds for the upload (the client, its hashing thread included)
    load: float  # 1-minute load average when the upload ended
    round: int = 1


@dataclass
class Reference:
    """What each round measures before its uploads: `cp` and the loopback floor, into cold pages."""

    round: int
    cp_cold: float
    floor: Floor
    floor_hashed: Floor
    load: float


def measure_references(number: int, source: Path, work: Path, chunk: int) -> Reference:
    cp_cold = time_cp_cold(source, work)
    floor = loopback_floor(source, work, chunk, hashed=False)
    floor_hashed = loopback_floor(source, work, chunk, hashed=True)
    return Reference(number, cp_cold, floor, floor_hashed, os.getloadavg()[0])


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (all its threads, the exited ones too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    return sum(cpu_split(pid))


def wait_idle(pid: int, timeout: float = 120) -> None:
    """Until the server stops working on its own (start-up: the search index it builds in the
    background loads the Chinese dictionary, ~1 s of CPU), so its CPU counted for the upload is
    the upload's."""
    deadline = time.monotonic() + timeout
    quiet = 0
    before = cpu_seconds(pid)
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - before < 0.03 else 0
        before = now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still starting
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for process {pid}")


def make_file(path: Path, size: int) -> str:
    """Random bytes (incompressible, like video) behind an MP4 header; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        block = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
        written = 0
        while written < size:
            block = (block + os.urandom(16 * MiB))[: min(16 * MiB, size - written)]
            out.write(block)
            digest.update(block)
            written += len(block)
            block = b""
    return digest.hexdigest()


def warm_memory(work: Path, size: int) -> None:
    """Write and delete ``size`` bytes, so the runs below reuse pages the kernel already has.

    On a VM whose memory is handed over lazily (Firecracker here), the first touch of
    a page is several times slower than any later one: without this, whichever run
    comes first pays for it (the first `cp` of a fresh machine runs at ~150 MB/s, the
    next at ~800).
    """
    scratch = work / "warm.bin"
    block = bytes(16 * MiB)
    with scratch.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
    scratch.unlink()


def time_cp(source: Path, work: Path, runs: int = 3) -> tuple[float, float]:
    """Best of ``runs``: (seconds for cp, seconds for cp followed by fsync of the copy)."""
    copy = work / "copy.bin"
    plain, synced = [], []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["cp", str(source), str(copy)], check=True)
        plain.append(time.perf_counter() - started)
        fd = os.open(copy, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        synced.append(time.perf_counter() - started)
        copy.unlink()
    return min(plain), min(synced)


# The VM frees pages back to its host ~2 s after the guest frees them (virtio-balloon free
# page reporting); the next write into such a page faults on the host, which made a write
# into the page cache ~10x dearer in system time (1.0-1.3 s per 512 MiB against 0.1 s into
# pages freed a moment before). An upload writes seconds' worth of new pages, so it always
# pays that; `cp`'s best of three reuses the pages its previous copy just freed. The cold
# references wait this long first, so they start where an upload starts.
COLD_PAUSE = 3.0


def time_cp_cold(source: Path, work: Path) -> float:
    """One `cp` into pages the VM has handed back to its host (see COLD_PAUSE)."""
    copy = work / "copy-cold.bin"
    time.sleep(COLD_PAUSE)
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(copy)], check=True)
    seconds = time.perf_counter() - started
    copy.unlink()
    return seconds


@dataclass
class Floor:
    seconds: float
    receiver_cpu: float  # the receiving thread's CPU seconds (user + system)


def loopback_floor(source: Path, work: Path, chunk: int, hashed: bool) -> Floor:
    """The least an upload server can do: raw bytes over a loopback socket into a new file.

    The sender is sendfile(2), as `hub upload`; the receiver reads into one reused MiB
    with recv_into, writes it, fsyncs after every ``chunk`` bytes and at the end (as the
    hub fsyncs each PATCH before it answers) and, if ``hashed``, feeds SHA-256 the same
    MiB. No HTTP, no Python per byte beyond that loop, no database: what is left when
    every overhead of the hub is gone, on the same machine, in the same run.
    """
    size = source.stat().st_size
    target = work / "floor.bin"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    cpu: list[float] = []

    def receive() -> None:
        connection, _ = listener.accept()
        started = time.thread_time()
        digest = hashlib.sha256() if hashed else None
        buffer = memoryview(bytearray(MiB))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        received = since_sync = 0
        while received < size:
            n = connection.recv_into(buffer, min(MiB, size - received))
            if not n:
                raise SystemExit("the floor's sender went away")
            if digest is not None:
                digest.update(buffer[:n])
            written = 0
            while written < n:
                written += os.write(fd, buffer[written:n])
            received += n
            since_sync += n
            if since_sync >= chunk:
                os.fsync(fd)
                since_sync = 0
        os.fsync(fd)
        os.close(fd)
        connection.sendall(b"k")
        connection.close()
        cpu.append(time.thread_time() - started)

    time.sleep(COLD_PAUSE)
    thread = threading.Thread(target=receive)
    thread.start()
    started = time.perf_counter()
    with socket.create_connection(listener.getsockname()) as sender, source.open("rb") as file:
        sender.sendfile(file)
        sender.recv(1)
    seconds = time.perf_counter() - started
    thread.join()
    listener.close()
    target.unlink()
    return Floor(seconds, cpu[0])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def start_server(server: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """The hub served the ``server`` way; returns the process and the URL uploads go to."""
    port = free_port()
    # One process: a tus upload is one request at a time, and its memory is that process's.
    argv = [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--processes", "1"]
    if server == "streaming":
        upload_port = free_port()
        argv += ["--upload-port", str(upload_port)]
        port = upload_port
    elif server == "gunicorn":
        if shutil.which("gunicorn", path=str(BIN)) is None:
            raise SystemExit("gunicorn is not installed in this virtualenv: .venv/bin/pip install gunicorn")
        argv = [str(BIN / "gunicorn"), "--worker-class", "gthread", "--workers", "1", "--threads", "8"]
        argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "hub.cli:web_app()"]
    return subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL), f"http://127.0.0.1:{port}"


def run_backend(backend: str, server_kind: str, mode: str, source: Path, sha256: str, work: Path, chunk: int) -> Result:
    data_dir = work / f"var-{backend}"
    env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    moto = None
    if backend == "s3":
        moto_port = free_port()
        moto = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{moto_port}"
        wait_for(endpoint)
        env.update(
            HUB_STORAGE="s3",
            HUB_S3_BUCKET="bench",
            HUB_S3_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto takes any credentials
            AWS_DEFAULT_REGION="us-east-1",
        )
        requests.put(f"{endpoint}/bench", timeout=10).raise_for_status()
    hub = [str(BIN / "hub")]
    subprocess.run([*hub, "db", "upgrade"], env=env, check=True, capture_output=True)
    school = [*hub, "school", "create", "海淀实验小学", "--kind", "famous"]
    subprocess.run(school, env=env, check=True, capture_output=True)
    subprocess.run(
        [*hub, "user", "create", "up@haidian.cn", "--school", "海淀实验小学", "--role", "uploader"],
        env=env,
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    token = (
        subprocess.run([*hub, "token", "create", "up@haidian.cn"], env=env, check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    server, url = start_server(server_kind, env)
    try:
        wait_for(f"{url}/api/v1/uploads/")
        client = TusClient(url, token, chunk_size=chunk, retries=3)
        client.request("OPTIONS", "/api/v1/uploads/")  # warm: imports done, pools open
        # gunicorn's master forks the worker that serves: that one's memory counts.
        serving = _children(server.pid)[0] if server_kind == "gunicorn" else server.pid
        wait_idle(serving)
        rss_before = memory_kib(serving, "VmRSS")
        user_before, system_before = cpu_split(serving)
        size = source.stat().st_size
        declared = mode == "declared"
        client_before = cpu_seconds(os.getpid())
        started = time.perf_counter()
        upload_url = client.create(size, source.name, "video/mp4", sha256 if declared else None)
        with source.open("rb") as file:
            client.send(upload_url, file, size, 0, lambda _position: None, checksums=not declared)
        seconds = time.perf_counter() - started
        client_cpu = cpu_seconds(os.getpid()) - client_before
        load = os.getloadavg()[0]
        rss_peak = memory_kib(serving, "VmHWM")
        user_after, system_after = cpu_split(serving)
        cpu_user = user_after - user_before
        cpu = cpu_user + system_after - system_before
        verified = client.describe(upload_url).get("sha256") == sha256
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    return Result(
        backend,
        server_kind,
        mode,
        seconds,
        rss_before * 1024,
        rss_peak * 1024,
        verified,
        cpu,
        cpu_user,
        client_cpu,
        load,
    )


def report(
    size: int, chunk: int, cp: tuple[float, float], results: list[Result], load: float, references: list[Reference]
) -> str:
    cp_rate = size / cp[0] / MB
    lines = [
        "## Results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores,"
        f" Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}, load average {load:.1f} at the start"
        f" and {os.getloadavg()[0]:.1f} at the end:"
        f" one {size // MiB} MiB file, {chunk // MiB} MiB per PATCH, client and server on loopback."
        " Mode `checksum`: a sha256 Upload-Checksum on every PATCH; `declared`: the file's sha256 declared"
        " at creation (Upload-Metadata), no chunk checksum. MB = 10^6 bytes.",
        "",
        f"Reference, same file, same run: `cp` {cp_rate:.0f} MB/s ({cp[0]:.2f} s);"
        f" `cp` + fsync of the copy {size / cp[1] / MB:.0f} MB/s ({cp[1]:.2f} s)"
        " (best of three, each copy into the pages the one before it had just freed).",
        "",
        "Per round, before its uploads, after a pause of"
        f" {COLD_PAUSE:.0f} s (so into pages the VM had handed back, as an upload writes): `cp` once, and the"
        " loopback floor: the same file by sendfile over a loopback socket into a new file, received with"
        f" recv_into a reused MiB, fsync every {chunk // MiB} MiB, without and with SHA-256 of the bytes.",
        "",
        "| round | cold `cp` | floor | floor + SHA-256 | floor receiver CPU (plain / SHA-256) | load |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ref in references:
        lines.append(
            f"| {ref.round} | {ref.cp_cold:.2f} s | {ref.floor.seconds:.2f} s | {ref.floor_hashed.seconds:.2f} s"
            f" | {ref.floor.receiver_cpu:.2f} s / {ref.floor_hashed.receiver_cpu:.2f} s | {ref.load:.1f} |"
        )
    by_round = {ref.round: ref for ref in references}
    lines += [
        "",
        "| round | backend | server | mode | time | MB/s | time ÷ cp | time ÷ cold cp | time ÷ floor + SHA-256"
        " | server RSS before | server peak RSS | growth | server CPU | of which user | client CPU | load"
        " | sha256 checked |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    for r in results:
        rate = size / r.seconds / MB
        growth = (r.rss_peak - r.rss_before) / MB
        ref = by_round[r.round]
        lines.append(
            f"| {r.round} | {r.backend} | {r.server} | {r.mode} | {r.seconds:.2f} s | {rate:.0f}"
            f" | {cp_rate / rate:.1f}x | {r.seconds / ref.cp_cold:.1f}x | {r.seconds / ref.floor_hashed.seconds:.1f}x"
            f" | {r.rss_before / MB:.0f} MB"
            f" | {r.rss_peak / MB:.0f} MB | {growth:.0f} MB | {r.cpu:.2f} s | {r.cpu_user:.2f} s | {r.client_cpu:.2f} s"
            f" | {r.load:.1f} | {'yes' if r.verified else 'NO'} |"
        )
    lines += [
        "",
        "Targets: peak RSS growth < 100 MB; upload within 2x of `cp`.",
        "",
        "Server CPU: the serving process's user + system seconds for the upload; of which user: Python and"
        " SHA-256 (the rest is the kernel's: socket, page cache, fsync). Client CPU: the benchmark's own"
        " process, i.e. `hub upload`'s client (its chunk hashing in mode `checksum`). Load: the 1-minute load average"
        " when the row's upload ended (the machine is shared).",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.uploads` (options: `--size-mib`, `--backends`, `--servers`,"
        " `--modes`, `--rounds`, `--chunk-mib`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=32)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--servers", default="waitress,streaming", help=f"any of {', '.join(SERVERS)}")
    parser.add_argument("--modes", default="checksum,declared", help=f"any of {', '.join(MODES)}")
    parser.add_argument("--rounds", type=int, default=1, help="run every row this many times, round after round")
    parser.add_argument("--warm-mib", type=int, default=4096, help="memory to touch first (see warm_memory)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the test file and data go (default: temp)")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave RESULTS.md alone")
    args = parser.parse_args()
    size, chunk = args.size_mib * MiB, args.chunk_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="hub-bench-uploads-", dir=args.work_dir))
    try:
        source = work / "lesson.mp4"
        print(f"writing a {args.size_mib} MiB test file in {work}", file=sys.stderr)
        sha256 = make_file(source, size)
        print("warming memory", file=sys.stderr)
        warm_memory(work, args.warm_mib * MiB)
        load = os.getloadavg()[0]
        cp = time_cp(source, work)
        results = []
        for server in args.servers.split(","):
            if server not in SERVERS:
                raise SystemExit(f"unknown server {server!r}: one of {', '.join(SERVERS)}")
        for mode in args.modes.split(","):
            if mode not in MODES:
                raise SystemExit(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
        references: list[Reference] = []
        # Round after round, the modes side by side: a change in the machine's load falls on both.
        for number in range(1, args.rounds + 1):
            print(f"round {number}: cold cp and the loopback floor", file=sys.stderr)
            references.append(measure_references(number, source, work, chunk))
            for backend in args.backends.split(","):
                for server in args.servers.split(","):
                    for mode in args.modes.split(","):
                        print(f"uploading to {backend} storage through {server}, {mode}", file=sys.stderr)
                        result = run_backend(backend, server, mode, source, sha256, work, chunk)
                        result.round = number
                        results.append(result)
        section = report(size, chunk, cp, results, load, references)
        print(section)
        if not args.no_write:
            replace_results(RESULTS, "Upload benchmark", section)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
