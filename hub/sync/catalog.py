"""What a school server may choose from: the upstream's published catalog with the size each course mirrors.

Served by the upstream (``GET /api/v1/sync/catalog``) to a school server's sync
token, and shown on the school server's content page (hub.sync.content), where
an admin decides what to subscribe to before anything is fetched.

The size of a course is what a pull would fetch for it: the files of its
manifest entry (:meth:`hub.sync.manifest.ManifestCourse.files`), i.e. one video
rendition per video in the profile preference the upstream signs manifests
with (HUB_SYNC_VIDEO_PROFILES), posters, small documents and images. The
entries come from the same cache the manifests are built from, so a catalog
costs little more than a manifest; the sizes are kept per course revision, so
an unchanged course is not parsed again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts.models import Pairing, School
from hub.catalog.models import Course
from hub.sync import manifest as mf
from hub.sync.models import Subscription

# -- the answer, as the upstream sends it and the school server reads it ---------------


class NamedSchool(BaseModel):
    id: int
    name: str


class CatalogCourse(BaseModel):
    id: int
    title: str
    subject: str
    grades: list[int]
    category: str
    edition: str
    volume: str
    language: str
    school: NamedSchool
    lessons: int
    bytes: int = Field(description="What a school server fetches to mirror it, in the profiles listed")
    subscribed: bool = Field(description="Selected by one of the caller school's subscriptions")


class CatalogSubscription(BaseModel):
    id: int
    kind: str
    course: int | None
    subject: str | None
    grade_min: int | None
    grade_max: int | None
    paired_with: NamedSchool | None
    textbook: str | None = Field(default=None, description="Key of the textbook (kind textbook)")
    courses: list[int] = Field(description="Ids of the published courses it selects")
    bytes: int = Field(description="What those courses mirror, a blob shared by two counted once")


class CatalogPaired(NamedSchool):
    courses: int
    bytes: int


class CatalogOut(BaseModel):
    school: NamedSchool
    profiles: list[str] = Field(description="Video profiles mirrored, in preference order (one per video)")
    courses: list[CatalogCourse]
    subscriptions: list[CatalogSubscription]
    subscribed_bytes: int
    paired: list[CatalogPaired] = Field(description="Famous schools paired with the caller's school")


# -- building it (upstream) ----------------------------------------------------------


@dataclass(frozen=True)
class CourseSummary:
    """The part of a course entry a chooser needs, and the blobs it mirrors (sha256 → bytes)."""

    id: int
    title: str
    subject: str
    grades: tuple[int, ...]
    category: str
    edition: str
    volume: str
    language: str
    school_id: int
    school_name: str
    lessons: int
    files: dict[str, int]

    @property
    def size(self) -> int:
        return sum(self.files.values())


class SummaryCache:
    """Course summaries by (database, revision, profiles): a revision names an entry's exact bytes."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, tuple[str, ...]], CourseSummary] = {}
        self._lock = threading.Lock()

    def summaries(self, session: Session, course_ids: Sequence[int], profiles: Sequence[str]) -> list[CourseSummary]:
        key = tuple(profiles)
        where = str(session.get_bind().engine.url)
        lines = mf.ENTRY_CACHE.index(session, course_ids, key)
        with self._lock:
            known = {line.id: self._known.get((where, line.revision, key)) for line in lines}
        missing = [line for line in lines if known[line.id] is None]
        if missing:
            bodies = mf.ENTRY_CACHE.entries(session, [line.id for line in missing], key)
            for line in missing:
                body = bodies.get(line.id)
                if body is None:  # withdrawn between the two looks
                    continue
                listed = mf.IndexCourse(id=line.id, version=line.version, revision=line.revision)
                try:
                    entry = mf.entry_from_bytes(body, listed)
                except mf.ManifestRefused:  # changed between the two looks: next time
                    continue
                known[line.id] = _summary(entry)
            with self._lock:
                # Only the revisions of this answer stay: the cache never outgrows the catalog.
                current = {(where, line.revision, key) for line in lines}
                for stale in [k for k in self._known if k[0] == where and k[2] == key and k not in current]:
                    del self._known[stale]
                for line in missing:
                    summary = known[line.id]
                    if summary is not None:
                        self._known[(where, line.revision, key)] = summary
        return [summary for line in lines if (summary := known[line.id]) is not None]


def _summary(entry: mf.ManifestCourse) -> CourseSummary:
    return CourseSummary(
        id=entry.id,
        title=entry.title,
        subject=entry.subject,
        grades=tuple(entry.grades),
        category=entry.category,
        edition=entry.edition,
        volume=entry.volume,
        language=entry.language,
        school_id=entry.school.id,
        school_name=entry.school.name,
        lessons=len(entry.lessons),
        files={sha: f.size for sha, f in entry.files().items()},
    )


SUMMARIES = SummaryCache()


def _total(summaries: Iterable[CourseSummary]) -> int:
    """Bytes of the blobs of these courses, each blob once (content addressing: shared files are stored once)."""
    files: dict[str, int] = {}
    for summary in summaries:
        files.update(summary.files)
    return sum(files.values())


def offer(session: Session, school: School, profiles: Sequence[str]) -> dict[str, Any]:
    """The published catalog as `school`'s server may mirror it, as JSON-ready data.

    Every published course with its mirrored size, the school's subscriptions
    (each with the courses it selects and their size, shared blobs counted once),
    and the famous schools it is paired with (whose courses it may subscribe to
    as a whole).
    """
    ids = list(session.scalars(select(Course.id).where(Course.status == "published").order_by(Course.id)))
    summaries = SUMMARIES.summaries(session, ids, profiles)
    by_id = {s.id: s for s in summaries}
    subscriptions = list(
        session.scalars(select(Subscription).where(Subscription.school_id == school.id).order_by(Subscription.id))
    )
    subscribed: set[int] = set()
    subs_out = []
    for sub in subscriptions:
        selected = [cid for cid in mf.select_course_ids(session, [sub]) if cid in by_id]
        subscribed.update(selected)
        paired = session.get(School, sub.paired_school_id) if sub.paired_school_id else None
        subs_out.append(
            {
                "id": sub.id,
                "kind": sub.kind,
                "course": sub.course_id,
                "subject": sub.subject,
                "grade_min": sub.grade_min,
                "grade_max": sub.grade_max,
                "paired_with": {"id": paired.id, "name": paired.name} if paired else None,
                "textbook": sub.textbook_key,
                "courses": selected,
                "bytes": _total(by_id[cid] for cid in selected),
            }
        )
    famous = session.scalars(
        select(School)
        .join(Pairing, Pairing.famous_school_id == School.id)
        .where(Pairing.rural_school_id == school.id)
        .order_by(School.name)
    )
    paired_out = []
    for other in famous:
        theirs = [s for s in summaries if s.school_id == other.id]
        paired_out.append({"id": other.id, "name": other.name, "courses": len(theirs), "bytes": _total(theirs)})
    return {
        "school": {"id": school.id, "name": school.name},
        "profiles": [p for p in profiles if p not in mf.EXTRAS],  # the video preference; not the extras
        "courses": [
            {
                "id": s.id,
                "title": s.title,
                "subject": s.subject,
                "grades": list(s.grades),
                "category": s.category,
                "edition": s.edition,
                "volume": s.volume,
                "language": s.language,
                "school": {"id": s.school_id, "name": s.school_name},
                "lessons": s.lessons,
                "bytes": s.size,
                "subscribed": s.id in subscribed,
            }
            for s in summaries
        ],
        "subscriptions": subs_out,
        "subscribed_bytes": _total(by_id[cid] for cid in sorted(subscribed)),
        "paired": paired_out,
    }
