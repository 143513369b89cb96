"""The manifest at catalog scale: what the upstream computes when a school server asks again.

The catalog (default 100,000 lessons) is loaded into a migrated SQLite database; the
rural school subscribes to everything from its paired famous school. Measured on the
product path, ``hub.sync.services.issue_manifest`` (select courses, build entries with
revisions, digest, bump the version, canonical JSON, Ed25519 signature):

- ``first``: the first manifest (version 1);
- ``unchanged``: asked again with nothing changed (same version);
- ``incremental``: asked again after 2 % of the lessons were edited (new version) —
  the number the issue's target (≤ 2 s) is about.

Reference in the same run: the floor, sqlite3 fetching the same rows the four
manifest queries read (no Python objects beyond tuples, no JSON, no signature).
"""

from __future__ import annotations

import cProfile
import io
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
    phases_s: dict[str, float] = field(default_factory=dict)  # of one incremental build
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


def _phases(session: Any, school: Any, key: Any) -> tuple[dict[str, float], bytes]:
    """issue_manifest's steps one by one, to show where the time goes."""
    from hub.db import utcnow
    from hub.sync import manifest as mf
    from hub.sync import services

    phases: dict[str, float] = {}
    t = time.perf_counter()
    subscriptions = services.list_subscriptions(session, school.id)
    ids = mf.select_course_ids(session, subscriptions)
    phases["select courses"] = time.perf_counter() - t
    t = time.perf_counter()
    courses = mf.build_courses(session, ids)
    phases["build entries + revisions"] = time.perf_counter() - t
    t = time.perf_counter()
    mf.content_digest(courses)
    phases["digest"] = time.perf_counter() - t
    t = time.perf_counter()
    payload = mf.build_manifest(
        session, subscriptions, subscriber=school, version=1, cursor=0, now=utcnow(), lifetime=3600, courses=courses
    )
    data = mf.canonical_json(payload)
    phases["canonical JSON"] = time.perf_counter() - t
    t = time.perf_counter()
    envelope = mf.sign(data, key)
    phases["sign + envelope"] = time.perf_counter() - t
    return phases, envelope


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
        seconds, envelope = issue()
        result.incremental_s.append(seconds)
        result.versions.append(_version(envelope))
    result.manifest_bytes = len(envelope)
    for _ in range(REPEAT):
        result.floor_s.append(_floor(database.engine))
    with database.session() as session:
        school = session.get(School, catalog.rural_id)
        assert school is not None
        result.phases_s, _ = _phases(session, school, key)
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
    import json

    return int(json.loads(json.loads(envelope)["payload"])["version"])


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
        f"| **incremental** after editing 2 % of lessons, median of {len(result.incremental_s)} "
        f"(versions {', '.join(map(str, result.versions[2:]))}) | **{inc:.2f} s** | {inc / result.floor:.1f}× |",
        f"| reference: sqlite3 fetching the same rows | {result.floor:.2f} s | 1.0× |",
        "",
        f"Signed manifest: {result.manifest_bytes / 1e6:.1f} MB. Where one build's time goes: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.phases_s.items())
        + f". Catalog loaded in {result.load_s:.0f} s (not measured).",
        "",
        f"Target: incremental manifest ≤ 2 s at 100,000 lessons — {'met' if inc <= 2 else '**missed**'} ({inc:.2f} s).",
    ]
    if result.profile:
        lines += [
            "",
            "cProfile of one incremental `issue_manifest`, by own time:",
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
