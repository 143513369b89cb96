"""Two hubs on loopback: a fresh school server pulls 2,000 lessons, then again after 2 % were edited.

The upstream is a real ``hub serve`` with its own data directory, the catalog loaded
into its database and the blobs' bytes into its local storage. The school server is
another data directory, in mirror mode (HUB_UPSTREAM_URL, HUB_UPSTREAM_PUBLIC_KEY,
HUB_UPSTREAM_TOKEN), and each sync is one ``hub sync pull`` process, timed from start
to exit (so Python's start-up is included).

Reference in the same run: ``rsync -a`` from a Debian ``rsync --daemon`` on
127.0.0.1 serving exactly the blobs the school server must end up with (same
``ab/cd/<sha256>`` layout, hard links to the upstream's files), into an empty
directory and then again (``--delete``) after the same edits.

Both go through the same byte-counting relay (benchmarks/sync/proxy.py), so
"bytes transferred" is everything on the wire both ways: HTTP headers, the
feed, the signed index, the course entries (or their changes) and the blobs for the hub; the file list, checksums and
data for rsync. It is compared with the bytes of the blobs that really changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.sync.generate import Catalog, edit, load
from hub.media.storage.base import key_for

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 1800  # seconds for any one pull or rsync: a hung run fails the benchmark, never blocks it


@dataclass
class Transfer:
    label: str
    seconds: float
    down: int
    up: int
    connections: int
    payload: int  # bytes of the blobs that had to move
    run_seconds: float = float("nan")  # the hub's own run log: start of the run to its end, no process start-up
    notes: list[str] = field(default_factory=list)

    @property
    def wire(self) -> int:
        return self.down + self.up


@dataclass
class PullResult:
    lessons: int
    blobs: int
    blob_bytes: int
    changed_blobs: int = 0
    changed_bytes: int = 0
    hub: list[Transfer] = field(default_factory=list)
    rsync: list[Transfer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the mirror got wrong, if anything
    rsync_version: str = ""
    edited_courses: int = 0
    courses: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:.0f} s")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


class Relay:
    """One counting relay for one transfer: started before, read after."""

    def __init__(self, work: Path, target_port: int, name: str) -> None:
        self.port = free_port()
        self.counts = work / f"relay-{name}.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sync.proxy", str(self.port), str(target_port), str(self.counts)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("the counting relay did not start")

    def finish(self) -> dict[str, int]:
        stop(self.process)
        return dict(json.loads(self.counts.read_text()))


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    # As on a school server: no HUB_* of this shell, and Python may cache its bytecode (a shell
    # with PYTHONDONTWRITEBYTECODE recompiles every hub module on each run, ~0.1 s).
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING", **extra})
    return env


def setup_upstream(data_dir: Path, lessons: int) -> tuple[Catalog, str, str]:
    """The upstream's database, blobs, signing key and the school server's token."""
    from hub import create_app
    from hub.accounts import services as accounts
    from hub.accounts.models import School
    from hub.db import get_database
    from hub.migrate import upgrade
    from hub.sync import manifest as mf

    data_dir.mkdir(parents=True)
    app = create_app({"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"})
    settings = app.extensions["hub.settings"]
    upgrade(settings.database_url)
    database = get_database(app)
    catalog = load(database.engine, lessons, blob_root=Path(settings.storage_dir))
    key = mf.generate_private_key()
    mf.save_private_key(key, Path(settings.sync_signing_key))
    with database.session() as session:
        school = session.get(School, catalog.rural_id)
        assert school is not None
        user = accounts.create_user(session, "server@shancun.example", school, "teacher", "a long password")
        token = accounts.create_token(session, user, "sync")  # a school server's token
        session.commit()
    database.engine.dispose()
    return catalog, mf.public_key_text(key), token


def upstream_engine(data_dir: Path) -> Any:
    from sqlalchemy import create_engine

    return create_engine(f"sqlite:///{data_dir / 'hub.db'}")


def pull(label: str, work: Path, school_dir: Path, upstream_port: int, env: dict[str, str], payload: int) -> Transfer:
    relay = Relay(work, upstream_port, label.replace(" ", "-"))
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(BIN / "hub"), "sync", "pull"],
            env={**env, "HUB_UPSTREAM_URL": f"http://127.0.0.1:{relay.port}"},
            cwd=work,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        seconds = time.perf_counter() - started
    finally:
        counts = relay.finish()
    (work / f"pull-{label.replace(' ', '-')}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"hub sync pull ({label}) failed with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    transfer = Transfer(label, seconds, counts["down"], counts["up"], counts["connections"], payload)
    envelope = _envelope(school_dir)
    transfer.notes.append(f"signed manifest {len(envelope):,} bytes, {len(zlib.compress(envelope, 6)):,} gzipped")
    run = _last_run(school_dir)
    if run:
        transfer.run_seconds = float(run["seconds"])
        transfer.notes.append(
            f"sync_run: status {run['status']}, {run['files_done']} files, {run['bytes_transferred']:,} blob bytes "
            f"received, {run['courses_applied']} courses applied, {run['seconds']:.1f} s from start to finish"
        )
    return transfer


def _envelope(school_dir: Path) -> bytes:
    db = sqlite3.connect(school_dir / "hub.db")
    try:
        row = db.execute("SELECT envelope FROM mirror_state WHERE id = 1").fetchone()
        return str(row[0] if row else "").encode()
    finally:
        db.close()


def _last_run(school_dir: Path) -> dict[str, Any] | None:
    db = sqlite3.connect(school_dir / "hub.db")
    try:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT status, files_done, bytes_transferred, courses_applied, "
            "(julianday(finished_at) - julianday(started_at)) * 86400 AS seconds FROM sync_run "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return dict(row) if row else None
    except sqlite3.Error:
        return None
    finally:
        db.close()


def check_mirror(school_dir: Path, catalog: Catalog) -> list[str]:
    """What the school server holds, against what it should: every blob, and the courses."""
    storage = school_dir / "storage"
    wanted = catalog.mirrored()
    missing = [sha for sha in wanted if not (storage / key_for(sha)).is_file()]
    db = sqlite3.connect(school_dir / "hub.db")
    try:
        courses = db.execute("SELECT count(*) FROM mirror_course").fetchone()[0]
        lessons = db.execute("SELECT count(*) FROM lesson").fetchone()[0]
    finally:
        db.close()
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(wanted)} blobs missing on the school server")
    if courses != len(catalog.courses):
        problems.append(f"{courses} courses mirrored, {len(catalog.courses)} published")
    if lessons != len(catalog.lessons):
        problems.append(f"{lessons} lessons on the school server, {len(catalog.lessons)} upstream")
    return problems


# -- rsync -------------------------------------------------------------------------


def rsync_tree(source_storage: Path, tree: Path, wanted: dict[str, int]) -> None:
    """Make `tree` hold exactly the `wanted` blobs (hard links into the upstream's storage)."""
    have = {p.name for p in tree.rglob("*") if p.is_file()} if tree.exists() else set()
    for sha in have - set(wanted):
        (tree / key_for(sha)).unlink()
    for sha in set(wanted) - have:
        target = tree / key_for(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source_storage / key_for(sha), target)


def start_rsyncd(work: Path, tree: Path) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    conf = work / "rsyncd.conf"
    conf.write_text(
        "\n".join(
            [
                f"pid file = {work / 'rsyncd.pid'}",
                f"log file = {work / 'rsyncd.log'}",
                "use chroot = no",
                # As root, rsyncd would drop to 'nobody'; stay the user who owns the files.
                f"uid = {os.getuid()}",
                f"gid = {os.getgid()}",
                "max connections = 4",
                "timeout = 600",
                "[blobs]",
                f"    path = {tree}",
                "    read only = yes",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        ["rsync", "--daemon", "--no-detach", f"--config={conf}", "--address=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, process, "rsync --daemon")
    return process, port


def rsync(label: str, work: Path, port: int, dest: Path, payload: int) -> Transfer:
    relay = Relay(work, port, label.replace(" ", "-"))
    started = time.perf_counter()
    try:
        done = subprocess.run(
            ["rsync", "-a", "--delete", "--stats", f"rsync://127.0.0.1:{relay.port}/blobs/", f"{dest}/"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        seconds = time.perf_counter() - started
    finally:
        counts = relay.finish()
    if done.returncode != 0:
        raise SystemExit(f"rsync ({label}) failed with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    transfer = Transfer(label, seconds, counts["down"], counts["up"], counts["connections"], payload)
    stats = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("Number of regular files transferred", "Total bytes received"))
    ]
    transfer.notes.extend(s.strip() for s in stats)
    return transfer


# -- the run -----------------------------------------------------------------------


def run(work: Path, lessons: int, fraction: float = 0.02) -> PullResult:
    if shutil.which("rsync") is None:
        raise SystemExit("rsync, the reference, is not installed: `make bench-deps` (apt-get install rsync)")
    upstream_dir, school_dir = work / "upstream", work / "school"
    catalog, public_key, token = setup_upstream(upstream_dir, lessons)
    wanted = catalog.mirrored()
    result = PullResult(
        lessons=lessons, blobs=len(wanted), blob_bytes=sum(wanted.values()), courses=len(catalog.courses)
    )
    result.rsync_version = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "hub"), "serve", "--port", str(port)],
        env=_env(upstream_dir),
        cwd=work,
        stdout=(work / "upstream-serve.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    rsyncd: subprocess.Popen[Any] | None = None
    try:
        wait_port(port, server, "hub serve (upstream)")
        school_dir.mkdir()
        school_env = _env(
            school_dir,
            HUB_UPSTREAM_PUBLIC_KEY=public_key,
            HUB_UPSTREAM_TOKEN=token,
            # The benchmark's disk is shared; the default reserve is about real school servers.
            HUB_SYNC_DISK_RESERVE="0",
        )
        subprocess.run(
            [str(BIN / "hub"), "db", "upgrade"], env=school_env, cwd=work, check=True, timeout=300, capture_output=True
        )

        tree, dest = work / "rsync-tree", work / "rsync-dest"
        rsync_tree(upstream_dir / "storage", tree, wanted)
        dest.mkdir()
        rsyncd, rsync_port = start_rsyncd(work, tree)

        result.hub.append(pull("first sync", work, school_dir, port, school_env, result.blob_bytes))
        result.notes.extend(f"after the first sync: {p}" for p in check_mirror(school_dir, catalog))
        result.rsync.append(rsync("first sync", work, rsync_port, dest, result.blob_bytes))

        engine = upstream_engine(upstream_dir)
        changed = edit(engine, catalog, fraction, blob_root=upstream_dir / "storage")
        engine.dispose()
        result.changed_blobs, result.changed_bytes = len(changed), sum(changed.values())
        result.edited_courses = catalog.edited_courses
        wanted = catalog.mirrored()
        rsync_tree(upstream_dir / "storage", tree, wanted)

        result.hub.append(pull("after editing", work, school_dir, port, school_env, result.changed_bytes))
        result.notes.extend(f"after the incremental sync: {p}" for p in check_mirror(school_dir, catalog))
        result.rsync.append(rsync("after editing", work, rsync_port, dest, result.changed_bytes))
    finally:
        if rsyncd is not None:
            stop(rsyncd)
        stop(server)
    return result


def report(result: PullResult, fraction: float = 0.02) -> list[str]:
    lines = [
        f"#### Two hubs on loopback: {result.lessons:,} lessons, {result.blobs:,} mirrored blobs "
        f"({result.blob_bytes / 1e6:.1f} MB); then {fraction:.0%} of lessons edited "
        f"in {result.edited_courses} of {result.courses} courses "
        f"({result.changed_blobs:,} new blobs, {result.changed_bytes / 1e6:.2f} MB)",
        "",
        "| sync | hub time | rsync time | hub ÷ rsync | hub run log ÷ rsync | hub bytes on the wire "
        "| ÷ blob bytes that changed | rsync bytes on the wire | ÷ blob bytes that changed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for hub, ref in zip(result.hub, result.rsync, strict=True):
        lines.append(
            f"| {hub.label} | {hub.seconds:.1f} s | {ref.seconds:.1f} s | {hub.seconds / ref.seconds:.2f}× "
            f"| {hub.run_seconds / ref.seconds:.2f}× "
            f"| {hub.wire / 1e6:.2f} MB | {hub.wire / hub.payload:.3f}× "
            f"| {ref.wire / 1e6:.2f} MB | {ref.wire / ref.payload:.3f}× |"
        )
    lines.append("")
    for transfer in result.hub:
        lines.append(
            f"- hub, {transfer.label}: {transfer.connections} connections, {transfer.down:,} bytes down, "
            f"{transfer.up:,} up; " + "; ".join(transfer.notes)
        )
    for transfer in result.rsync:
        lines.append(
            f"- rsync, {transfer.label}: {transfer.connections} connection(s), {transfer.down:,} bytes down, "
            f"{transfer.up:,} up; " + "; ".join(transfer.notes)
        )
    lines.append(f"- reference: {result.rsync_version}")
    lines.extend(f"- **mirror check failed: {n}**" for n in result.notes)
    if not result.notes:
        lines.append("- mirror check: after each sync the school server held every blob, course and lesson it should")
    if len(result.hub) == 2:
        inc = result.hub[1]
        lines += [
            "",
            f"Targets: incremental bytes ≤ 1.02 × the changed blobs — "
            f"{'met' if inc.wire / inc.payload <= 1.02 else '**missed**'} ({inc.wire / inc.payload:.3f}×); "
            f"time ≤ 1.5 × rsync — first sync "
            f"{'met' if result.hub[0].seconds / result.rsync[0].seconds <= 1.5 else '**missed**'} "
            f"({result.hub[0].seconds / result.rsync[0].seconds:.2f}×), incremental "
            f"{'met' if inc.seconds / result.rsync[1].seconds <= 1.5 else '**missed**'} "
            f"({inc.seconds / result.rsync[1].seconds:.2f}×).",
        ]
    return lines
