"""The manifest at catalog scale: what the upstream computes when a school server asks again.

The catalog (default 100,000 lessons) is loaded into a migrated SQLite database; the
rural school subscribes to everything from its paired famous school. Measured on the
product path, ``hub.sync.services.issue_manifest`` (select courses, build entries with
revisions, digest, bump the version, canonical JSON, Ed25519 signature):

- ``first``: the first manifest (version 1);
- ``unchanged``: asked again with nothing changed (same version);
- ``incremental``: asked again after 2 % of the lessons were edited (new version) —
  the number the issue's target (≤ 2 s) is about; the process keeps its entry cache
  between manifests as a web worker does, and once more with the cache emptied (a
  worker that has just started).

Reference in the same run: the floor, sqlite3 fetching the same rows the four
manifest queries read (no Python objects beyond tuples, no JSON, no signature).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.sync.generate import Catalog, edit, load

REPEAT = 3


@dataclass
class ManifestResult:
    lessons: int
    courses: int
    load_s: float = 0.0
    first_s: float = 0.0
    unchanged_s: list[float] = field(default_factory=list)
    incremental_s: list[float] = field(default_factory=list)
    edited: str = ""
    clustered_s: float = 0.0  # the same number of lessons, in whole courses
    clustered: str = ""
    cold_incremental_s: float = 0.0  # the same, in a process whose entry cache is empty
    floor_s: list[float] = field(default_factory=list)
    manifest_bytes: int = 0
    versions: list[int] = field(default_factory=list)
    profile: str = ""

    @property
    def incremental(self) -> float:
        return statistics.median(self.incremental_s)

    @property
    def floor(self) -> float:
        return statistics.median(self.floor_s)


_FLOOR_QUERIES = (
    "SELECT id FROM course WHERE status = 'published' AND school_id = 1 ORDER BY id",
    "SELECT * FROM course WHERE status = 'published' AND school_id = 1 ORDER BY id",
    "SELECT id, course_id, position, title, summary, unit FROM lesson ORDER BY course_id, position, id",
    "SELECT m.id, m.lesson_id, m.kind, m.title, m.filename, m.status, b.sha256, b.size, b.media_type "
    "FROM material m JOIN blob b ON b.sha256 = m.original_sha256 ORDER BY m.id",
    "SELECT r.material_id, r.profile, b.sha256, b.size, b.media_type, r.kbps, r.width, r.height, r.duration, r.ssim "
    "FROM rendition r JOIN blob b ON b.sha256 = r.blob_sha256 WHERE r.status = 'ready' "
    "ORDER BY r.material_id, r.profile",
)


def _floor(engine: Any) -> float:
    connection = engine.raw_connection()
    try:
        db = connection.driver_connection
        started = time.perf_counter()
        for query in _FLOOR_QUERIES:
            db.execute(query).fetchall()
        return time.perf_counter() - started
    finally:
        connection.close()


def run(work: Path, lessons: int, *, profile: bool = False) -> ManifestResult:
    from hub import create_app
    from hub.accounts.models import School
    from hub.db import get_database
    from hub.migrate import upgrade
    from hub.sync import manifest as mf
    from hub.sync import services

    data_dir = work / f"manifest-{lessons}"
    data_dir.mkdir(parents=True)
    upgrade(f"sqlite:///{data_dir / 'hub.db'}")
    app = create_app({"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"})
    database = get_database(app)
    started = time.perf_counter()
    catalog: Catalog = load(database.engine, lessons)
    result = ManifestResult(lessons=lessons, courses=len(catalog.courses), load_s=time.perf_counter() - started)
    key = mf.generate_private_key()

    def issue() -> tuple[float, bytes]:
        with database.session() as session:
            school = session.get(School, catalog.rural_id)
            assert school is not None
            started = time.perf_counter()
            envelope = services.issue_manifest(session, school, private_key=key, lifetime=7 * 86400)
            session.commit()
            return time.perf_counter() - started, envelope

    result.first_s, envelope = issue()
    result.versions.append(_version(envelope))
    seconds, envelope = issue()
    result.unchanged_s.append(seconds)
    result.versions.append(_version(envelope))
    for round_ in range(REPEAT):
        edit(database.engine, catalog, 0.02, seed=100 + round_)
        result.edited = (
            f"{round(lessons * 0.02):,} lessons in {catalog.edited_courses:,} of {len(catalog.courses):,} courses"
        )
        seconds, envelope = issue()
        result.incremental_s.append(seconds)
        result.versions.append(_version(envelope))
    result.manifest_bytes = len(envelope)
    for _ in range(REPEAT):
        result.floor_s.append(_floor(database.engine))
    edit(database.engine, catalog, 0.02, seed=150, clustered=True)
    result.clustered = f"{catalog.edited_courses:,} courses"
    result.clustered_s, envelope = issue()
    result.versions.append(_version(envelope))
    # A web worker just started (or another one of several) has no cached entries.
    mf.ENTRY_CACHE.clear()
    edit(database.engine, catalog, 0.02, seed=200)
    result.cold_incremental_s, envelope = issue()
    result.versions.append(_version(envelope))
    with database.session() as session:
        school = session.get(School, catalog.rural_id)
        assert school is not None
        if profile:
            edit(database.engine, catalog, 0.02, seed=999)
            profiler = cProfile.Profile()
            profiler.enable()
            services.issue_manifest(session, school, private_key=key, lifetime=7 * 86400)
            profiler.disable()
            session.rollback()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            result.profile = out.getvalue()
    database.engine.dispose()
    return result


def _version(envelope: bytes) -> int:
    # The envelope is a signed header line, then the payload's bytes.
    _header, _, payload = envelope.partition(b"\n")
    return int(json.loads(payload)["version"])


def report(result: ManifestResult) -> list[str]:
    inc = result.incremental
    same = statistics.median(result.unchanged_s)
    lines = [
        f"#### Manifest at {result.lessons:,} lessons ({result.courses:,} courses, "
        f"{result.lessons * 3:,} mirrored blobs listed)",
        "",
        "| manifest | time | ÷ sqlite3 floor |",
        "| --- | ---: | ---: |",
        f"| first (version {result.versions[0]}) | {result.first_s:.2f} s | {result.first_s / result.floor:.1f}× |",
        f"| asked again, nothing changed (version {result.versions[1]}) | {same:.2f} s | {same / result.floor:.1f}× |",
        f"| **incremental**: asked again after editing 2 % of lessons, median of {len(result.incremental_s)} "
        f"(versions {', '.join(map(str, result.versions[2:-2]))}) | **{inc:.2f} s** | {inc / result.floor:.1f}× |",
        f"| incremental, the same 2 % of lessons in whole courses ({result.clustered}; version {result.versions[-2]}) "
        f"| {result.clustered_s:.2f} s | {result.clustered_s / result.floor:.1f}× |",
        f"| incremental in a process with an empty entry cache (version {result.versions[-1]}) "
        f"| {result.cold_incremental_s:.2f} s | {result.cold_incremental_s / result.floor:.1f}× |",
        f"| reference: sqlite3 fetching the rows a full build reads | {result.floor:.2f} s | 1.0× |",
        "",
        f"Each edit: {result.edited} (lessons drawn at random: a new video rendition and poster, a new title). "
        f"Signed manifest: {result.manifest_bytes / 1e6:.1f} MB. Catalog loaded in {result.load_s:.0f} s "
        "(setup, not measured). All in one process, as in a long-running web worker, so the entry cache "
        "(`hub.sync.manifest.ENTRY_CACHE`) is warm after the first manifest except where said.",
        "",
        f"Target: incremental manifest ≤ 2 s at {result.lessons:,} lessons — "
        f"{'met' if inc <= 2 else '**missed**'} ({inc:.2f} s).",
    ]
    if result.profile:
        lines += [
            "",
            "cProfile of one more incremental `issue_manifest` (warm cache, 2 % edited), by own time:",
            "",
            "```",
            *_trim(result.profile),
            "```",
        ]
    return lines


def _trim(profile: str) -> list[str]:
    lines = profile.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return [line.rstrip() for line in lines[start:]]
