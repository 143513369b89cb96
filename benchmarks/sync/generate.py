"""A synthetic published catalog for the sync benchmark, loaded straight into a hub database.

Every lesson has a video (original, ``video-360p``, ``video-240p``, ``poster``) and a
document (original, ``document``), so a school server mirrors three blobs per lesson:
the 360p video, its poster and the document (the manifest's choice: one resolution of a
video, never the 240p copy or the original). With ``blob_root`` the blobs' bytes are
written too, in the local storage layout, incompressible like real media; without it
only rows exist (enough for manifests).

Rows go in with ``executemany`` on the raw SQLite connection: loading is setup, not
what is measured, and the ORM would take minutes at 100,000 lessons.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.media.storage.base import key_for

SUBJECTS = ("chinese", "math", "english", "science", "history", "geography", "physics", "biology", "music", "art")
LICENSES = ("CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0")
NOW = "2026-12-01 00:00:00.000000"
KiB = 1024

# "Small media": sizes of renditions of short lessons, drawn uniformly in these ranges.
SIZES = {
    "video-360p": (16 * KiB, 64 * KiB),
    "video-240p": (8 * KiB, 32 * KiB),
    "poster": (2 * KiB, 8 * KiB),
    "document": (4 * KiB, 24 * KiB),
    "original-video": (4 * KiB, 8 * KiB),
    "original-document": (2 * KiB, 4 * KiB),
}
MEDIA_TYPES = {
    "video-360p": "video/mp4",
    "video-240p": "video/mp4",
    "poster": "image/jpeg",
    "document": "application/pdf",
    "original-video": "video/mp4",
    "original-document": "application/pdf",
}
MIRRORED = ("video-360p", "poster", "document")


@dataclass
class Catalog:
    famous_id: int = 1
    rural_id: int = 2
    courses: list[int] = field(default_factory=list)
    lessons: list[tuple[int, int]] = field(default_factory=list)  # (lesson id, course id)
    # The blob each mirrored rendition uses: rendition id -> (lesson id, profile, sha256, size)
    renditions: dict[int, tuple[int, str, str, int]] = field(default_factory=dict)
    edited_courses: int = 0  # courses the last edit() touched

    def mirrored(self) -> dict[str, int]:
        """sha256 -> size of every blob a school server subscribed to everything should hold."""
        return {sha: size for _, profile, sha, size in self.renditions.values() if profile in MIRRORED}


class _Bytes:
    """Deterministic incompressible bytes; each blob distinct (its id is in the first bytes)."""

    def __init__(self, seed: int, blob_root: Path | None) -> None:
        self.rng = random.Random(seed)
        self.blob_root = blob_root
        self.counter = 0

    def blob(self, kind: str) -> tuple[str, int]:
        low, high = SIZES[kind]
        size = self.rng.randint(low, high)
        self.counter += 1
        if self.blob_root is None:
            # Rows only: a unique name without generating (and hashing) the bytes.
            return hashlib.sha256(f"{kind}/{self.counter}".encode()).hexdigest(), size
        data = self.counter.to_bytes(8, "big") + self.rng.randbytes(size - 8)
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_root / key_for(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return sha, size


def _raw(engine: Any) -> Any:
    return engine.raw_connection()


def load(
    engine: Any, lessons: int, *, lessons_per_course: int = 20, blob_root: Path | None = None, seed: int = 7
) -> Catalog:
    """Insert two paired schools and a published catalog of `lessons` lessons; returns what was made."""
    source = _Bytes(seed, blob_root)
    rng = random.Random(seed + 1)
    catalog = Catalog()
    schools = [(1, "海淀实验小学", "famous", "北京市", "海淀区", 0), (2, "山村小学", "rural", "甘肃省", "会宁县", 1)]
    courses: list[tuple[Any, ...]] = []
    lesson_rows: list[tuple[Any, ...]] = []
    blobs: dict[str, tuple[int, str]] = {}
    materials: list[tuple[Any, ...]] = []
    renditions: list[tuple[Any, ...]] = []
    n_courses = -(-lessons // lessons_per_course)
    lesson_id = material_id = rendition_id = 0
    for course_id in range(1, n_courses + 1):
        subject = SUBJECTS[course_id % len(SUBJECTS)]
        grade = 1 + course_id % 9
        courses.append(
            (
                course_id,
                1,
                f"第{course_id}册 {subject} {grade}年级",
                "同步课程，配套人教版教材。" * 3,
                subject,
                1 << grade,
                "人教版",
                "上册",
                "zh",
                LICENSES[course_id % len(LICENSES)],
                "王老师",
                NOW,
                NOW,
                NOW,
            )
        )
        catalog.courses.append(course_id)
        for position in range(1, lessons_per_course + 1):
            if lesson_id == lessons:
                break
            lesson_id += 1
            catalog.lessons.append((lesson_id, course_id))
            lesson_rows.append(
                (
                    lesson_id,
                    course_id,
                    position,
                    f"第{position}课 {rng.randint(1, 10**6)}",
                    "本课学习要点与课堂练习。" * rng.randint(1, 4),
                    f"第{1 + position // 5}单元",
                    NOW,
                    NOW,
                    NOW,
                )
            )
            for kind, profiles in (("video", ("video-360p", "video-240p", "poster")), ("document", ("document",))):
                material_id += 1
                original, size = source.blob(f"original-{kind}")
                blobs[original] = (size, MEDIA_TYPES[f"original-{kind}"])
                materials.append(
                    (
                        material_id,
                        lesson_id,
                        kind,
                        f"{kind} {lesson_id}",
                        f"lesson-{lesson_id}.{kind[:3]}",
                        original,
                        NOW,
                        NOW,
                    )
                )
                for profile in profiles:
                    rendition_id += 1
                    sha, size = source.blob(profile)
                    blobs[sha] = (size, MEDIA_TYPES[profile])
                    renditions.append(_rendition_row(rendition_id, material_id, profile, sha, size))
                    catalog.renditions[rendition_id] = (lesson_id, profile, sha, size)

    connection = _raw(engine)
    try:
        db = connection.driver_connection
        db.executemany(
            "INSERT INTO school (id, name, kind, region, county, rural, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*s, NOW) for s in schools],
        )
        db.execute("INSERT INTO pairing (famous_school_id, rural_school_id, created_at) VALUES (1, 2, ?)", (NOW,))
        db.executemany(
            "INSERT INTO course (id, school_id, title, summary, category, subject, grades_mask, edition, volume, "
            "language, license, teacher, status, version, published_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'curriculum', ?, ?, ?, ?, ?, ?, ?, 'published', 1, ?, ?, ?)",
            courses,
        )
        db.executemany(
            "INSERT INTO change (course_id, action, version, created_at) VALUES (?, 'published', 1, ?)",
            [(c, NOW) for c in catalog.courses],
        )
        db.executemany(
            "INSERT INTO lesson (id, course_id, position, title, summary, unit, created_at, updated_at, changed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            lesson_rows,
        )
        db.executemany(
            "INSERT INTO blob (sha256, size, media_type, created_at) VALUES (?, ?, ?, ?)",
            [(sha, size, media_type, NOW) for sha, (size, media_type) in blobs.items()],
        )
        db.executemany(
            "INSERT INTO material (id, lesson_id, kind, title, filename, original_sha256, status, progress, error, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', 100, '', ?, ?)",
            materials,
        )
        db.executemany(_RENDITION_INSERT, renditions)
        db.execute(
            "INSERT INTO sync_subscription (school_id, kind, paired_school_id, created_at) VALUES (2, 'paired', 1, ?)",
            (NOW,),
        )
        connection.commit()
    finally:
        connection.close()
    return catalog


_RENDITION_INSERT = (
    "INSERT INTO rendition (id, material_id, profile, status, blob_sha256, bytes, kbps, width, height, duration, "
    "ssim, progress, error, created_at, updated_at) VALUES (?, ?, ?, 'ready', ?, ?, ?, ?, ?, ?, ?, 100, '', ?, ?)"
)


def _rendition_row(rendition_id: int, material_id: int, profile: str, sha: str, size: int) -> tuple[Any, ...]:
    video = profile.startswith("video-")
    height = {"video-360p": 360, "video-240p": 240}.get(profile)
    return (
        rendition_id,
        material_id,
        profile,
        sha,
        size,
        round(size * 8 / 1000 / 30, 1) if video else None,
        height * 16 // 9 if height else None,
        height,
        30.0 if video else None,
        0.97 if video else None,
        NOW,
        NOW,
    )


def edit(
    engine: Any,
    catalog: Catalog,
    fraction: float,
    *,
    blob_root: Path | None = None,
    seed: int = 11,
    clustered: bool = False,
) -> dict[str, int]:
    """Edit `fraction` of the lessons as an uploader would: a new video (360p + poster) and a new title.

    The lessons are drawn at random over the catalog, or with `clustered` from as few
    courses as hold them.

    Each edited course gets a new version and an ``updated`` change, as
    hub.catalog.services does. Returns sha256 -> size of the new blobs a mirror must fetch.
    """
    rng = random.Random(seed)
    source = _Bytes(seed * 1000, blob_root)
    source.counter = 10**9 + seed * 10**7  # distinct from every blob load() or another edit made
    count = max(1, round(len(catalog.lessons) * fraction))
    if clustered:
        # Whole courses, as when a school revises a textbook's course: the same lessons in fewer courses.
        courses_chosen = set(rng.sample(catalog.courses, max(1, round(len(catalog.courses) * fraction))))
        chosen = [pair for pair in catalog.lessons if pair[1] in courses_chosen][:count]
    else:
        chosen = rng.sample(catalog.lessons, count)
    by_lesson: dict[int, list[int]] = {}
    for rid, (lid, profile, _, _) in catalog.renditions.items():
        if profile in ("video-360p", "poster"):
            by_lesson.setdefault(lid, []).append(rid)
    new: dict[str, int] = {}
    # A real edit's time, as the ORM's onupdate would write it.
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    connection = _raw(engine)
    try:
        db = connection.driver_connection
        courses: set[int] = set()
        for lesson_id, course_id in chosen:
            courses.add(course_id)
            # changed_at as hub.catalog.models stamps it on every ORM write to a lesson or its renditions.
            db.execute(
                "UPDATE lesson SET title = title || '（修订）', updated_at = ?, changed_at = ? WHERE id = ?",
                (now, now, lesson_id),
            )
            for rid in by_lesson[lesson_id]:
                lid, profile, _, _ = catalog.renditions[rid]
                sha, size = source.blob(profile)
                db.execute(
                    "INSERT INTO blob (sha256, size, media_type, created_at) VALUES (?, ?, ?, ?)",
                    (sha, size, MEDIA_TYPES[profile], now),
                )
                db.execute(
                    "UPDATE rendition SET blob_sha256 = ?, bytes = ?, updated_at = ? WHERE id = ?",
                    (sha, size, now, rid),
                )
                catalog.renditions[rid] = (lid, profile, sha, size)
                new[sha] = size
        for course_id in sorted(courses):
            db.execute("UPDATE course SET version = version + 1, updated_at = ? WHERE id = ?", (now, course_id))
            db.execute(
                "INSERT INTO change (course_id, action, version, created_at) "
                "SELECT id, 'updated', version, ? FROM course WHERE id = ?",
                (now, course_id),
            )
        connection.commit()
    finally:
        connection.close()
    catalog.edited_courses = len(courses)
    return new
