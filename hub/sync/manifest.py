"""The sync manifest as data: what a school server mirrors, signed by the upstream.

A manifest lists, for one subscriber school, every published course its
subscriptions select, with their lessons, materials and the renditions chosen
for mirroring (each named by sha256, with its size and media type). It is built
on the upstream, signed with the upstream's Ed25519 key, and verified on the
school server before anything in it is used. Nothing in a manifest is ever
executed or unpickled: it is JSON, parsed into the strict pydantic models below,
and a field that is missing, unknown or of the wrong type refuses it.

It travels in two parts. The signed **index** (``oer-hub-manifest/2``) is small,
a line per course::

    {
      "format": "oer-hub-manifest/2",
      "version": 7,                 # per subscriber; only ever goes up
      "cursor": 1234,               # the change feed's last seq when it was built
      "issued_at": "2026-12-01T20:00:00Z",
      "expires_at": "2026-12-08T20:00:00Z",
      "subscriber": {"id": 3, "name": "…", "kind": "rural", "region": "…", "county": "…"},
      "courses": [{"id": 12, "version": 4, "revision": "<sha256 of the course's entry>"}]
    }

Each course's **entry** is fetched apart (``POST /api/v1/sync/courses``), and is
used only if the sha256 of its canonical JSON is the revision the signed index
gives, so the signature covers it as surely as if it were inside::

    {"id": 12, "version": 4, "title": "…", "summary": "…", "category": "curriculum",
     "subject": "math", "grades": [9], "edition": "人教版", "volume": "上册", "language": "zh",
     "license": "CC-BY-SA-4.0", "teacher": "…", "published_at": "…" | null,
     "school": {"id": 1, "name": "…", "kind": "famous", "region": "…", "county": "…"},
     "lessons": [
       {"id": 40, "position": 1, "title": "…", "summary": "…", "unit": "…",
        "materials": [
          {"id": 77, "kind": "video", "title": "…", "filename": "…", "status": "ready",
           "original": {"sha256": "…", "size": 123, "media_type": "video/mp4"},
           "renditions": [
             {"profile": "video-360p", "sha256": "…", "size": 45, "media_type": "video/mp4",
              "kbps": 300.0, "width": 640, "height": 360, "duration": 3.0, "ssim": 0.97}]}]}]}

Why two parts: an incremental sync must cost little more than the blobs that
changed. A school server asks only for the entries whose revision it does not
hold, and for a course it holds, only the lessons changed since the manifest
its entry came with (a patch, :func:`merge_patch`), then checks the merged entry
against the signed revision. The upstream keeps lesson entries in a cache
(:class:`EntryCache`) and rebuilds only the lessons whose ``changed_at`` stamp
moved (hub.catalog.models stamps it on every write), so an incremental index of
a 100,000-lesson catalog costs well under the time of reading every row once.

A material may also carry ``"subtitles": [{"language": "zh", "label": "中文", "cues": 42,
"sha256": "…", "size": 1234, "media_type": "text/vtt"}]``, its WebVTT tracks, mirrored
like renditions. The key is there only for a school server that asked for it
(``?with=subtitles`` on the manifest and entry requests, :data:`SUBTITLES` among the
profiles the entries are built for) and only where the material has tracks: the
models below refuse unknown keys, so a school server running an older release, which
never asks, keeps getting entries it can read, byte for byte as before.

Only the renditions listed are mirrored; originals are described (the school
server's catalog needs their row) but their bytes are not carried: a school
server serves the small renditions, never a multi-GB recording. The exception is
an original no rendition stands in for (each was skipped as bigger than it): that
original is the small form, and is mirrored. For a video the first ready profile
of the preference list is chosen (plus its poster), so a school never pays for
two resolutions of the same lesson.

The signed envelope (what travels, over HTTP or on a USB drive) is one header
line, then the index's bytes exactly as signed::

    {"format":"oer-hub-signed/1","key":"<base64 public key>","sha256":"<hex of the payload>",
     "signature":"<base64 Ed25519 of b'oer-hub-manifest sha256:' + that hex>"}\n
    <payload>

The verifier hashes the payload and checks both. ``key`` is informational: a
school server trusts only the key it was configured with. A bundle's
``manifest.json`` is the envelope followed by every entry, a line each
(:func:`document`).

``revision`` changes whenever anything in the course entry changes (a lesson
added, a rendition redone), even when the upstream course ``version`` does
not: the school server applies a course when its revision differs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.orm import Session, joinedload

from hub.accounts.models import School
from hub.catalog.models import Course, Lesson, Material
from hub.errors import HubError, Text
from hub.i18n import N_
from hub.media.chapters import MAX_CHAPTERS, clean_chapters
from hub.media.models import Blob, Rendition
from hub.media.profiles import original_stands_in
from hub.subtitles.models import Subtitle
from hub.textbooks.models import Textbook
from hub.vocab import CategoryCode, LanguageCode, LicenseId, SubjectCode, VolumeName

FORMAT = "oer-hub-manifest/2"
ENVELOPE_FORMAT = "oer-hub-signed/1"
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024
"""A signed index of 100,000 courses is some 12 MB; anything far beyond is not ours."""
MAX_DOCUMENT_BYTES = 1024 * 1024 * 1024
"""A bundle's manifest with every entry: 100,000 lessons are some 130 MB."""

DEFAULT_VIDEO_PROFILES: tuple[str, ...] = ("video-360p", "video-240p")
"""Which one video rendition a school server mirrors: the first of these that is ready."""

CHAPTERS = "chapters"
"""Among the profiles entries are built for: the school server reads materials' chapter starts
(``"chapters": [0.0, 8.0, 17.0]``, only where a material has some), like :data:`SUBTITLES`."""

SUBTITLES = "subtitles"
"""Among the profiles entries are built for: the school server reads materials' subtitle tracks.

Kept in the same tuple as the video profiles because it changes the entries the same way
(another cache key, another revision), and no rendition profile has this name."""

TEXTBOOKS = "textbooks"
"""Among the profiles entries are built for: the school server reads each lesson's textbook alignment
(``"textbook": "renjiao-math-3-1", "node": "2.1"``, keys as every hub names them; only where the
lesson is on a chapter), like :data:`SUBTITLES`. Its teaching calendar orders the pull by them.
A course that follows a textbook also carries it (``"textbook"``: its key, fields and tree in
hub.textbooks.files' format), so a school server creates a book it lacks."""

EXTRAS = (SUBTITLES, CHAPTERS, TEXTBOOKS)
"""What a school server may ask for beyond the base entries (``?with=``), in the order profiles list them."""


class ManifestRefused(HubError):
    """A manifest that must not be used; the school server keeps its old state."""

    status = 422
    code = "manifest_refused"


def _first_line(exc: Exception) -> str:
    """A validator's message, for the technician (hub.errors.details): its first line is enough."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- the payload, validated ----------------------------------------------------------

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, Field(ge=0, strict=True)]
Id = Annotated[int, Field(ge=1, strict=True)]
Text200 = Annotated[str, Field(max_length=200)]
MediaType = Annotated[str, Field(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestSchool(_Data):
    id: Id
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["famous", "rural", "urban"]
    region: Annotated[str, Field(max_length=100)] = ""
    county: Annotated[str, Field(max_length=100)] = ""


class ManifestFile(_Data):
    sha256: Sha256
    size: Size
    media_type: MediaType


class ManifestRendition(ManifestFile):
    profile: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")]
    kbps: float | None = None
    width: Annotated[int, Field(ge=0)] | None = None
    height: Annotated[int, Field(ge=0)] | None = None
    duration: Annotated[float, Field(ge=0)] | None = None
    ssim: float | None = None


class ManifestSubtitle(ManifestFile):
    language: LanguageCode
    label: Annotated[str, Field(max_length=100)] = ""
    cues: Annotated[int, Field(ge=0, strict=True)] = 0


class ManifestMaterial(_Data):
    id: Id
    kind: Literal["video", "audio", "document", "image"]
    title: Text200
    filename: Annotated[str, Field(max_length=255)] = ""
    status: Literal["pending", "processing", "ready", "failed"]
    original: ManifestFile
    renditions: list[ManifestRendition]
    subtitles: Annotated[list[ManifestSubtitle], Field(max_length=len(get_args(LanguageCode)))] = []
    chapters: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(max_length=MAX_CHAPTERS)] = []


BookKey = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
NodeKey = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")]


class ManifestNode(_Data):
    key: NodeKey
    kind: Literal["chapter", "section", "lesson"]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    week: Annotated[int, Field(ge=1, le=30, strict=True)] | None = None
    children: Annotated[list[ManifestNode], Field(max_length=2000)] = []


class ManifestTextbook(_Data):
    """The textbook a course follows, in the textbook file's format (hub.textbooks.files), checked again on import."""

    format: Literal["oer-hub-textbook/1"]
    key: BookKey
    subject: SubjectCode
    edition: Annotated[str, Field(min_length=1, max_length=50)]
    grade: Annotated[int, Field(ge=1, le=9, strict=True)]
    volume: Literal["上册", "下册", "全一册"]
    school_system: Literal["", "六三", "五四"] = ""
    title: Annotated[str, Field(min_length=1, max_length=200)]
    nodes: Annotated[list[ManifestNode], Field(min_length=1, max_length=2000)]


class ManifestLesson(_Data):
    id: Id
    position: int
    title: Text200
    summary: Annotated[str, Field(max_length=20000)] = ""
    unit: Annotated[str, Field(max_length=100)] = ""
    # The chapter node the lesson is on, by keys (TEXTBOOKS); "" where it is on none.
    textbook: Annotated[str, Field(max_length=100)] = ""
    node: Annotated[str, Field(max_length=50)] = ""
    materials: list[ManifestMaterial]


class ManifestCourse(_Data):
    """One course's entry: fetched apart from the index and checked against its revision there."""

    id: Id
    version: Id
    revision: Sha256  # sha256 of the entry's canonical JSON (which does not hold it)
    title: Annotated[str, Field(min_length=1, max_length=200)]
    summary: Annotated[str, Field(max_length=5000)] = ""
    category: CategoryCode
    subject: SubjectCode
    grades: Annotated[list[Annotated[int, Field(ge=1, le=9, strict=True)]], Field(min_length=1, max_length=9)]
    edition: Annotated[str, Field(max_length=50)] = ""
    volume: VolumeName = ""
    language: LanguageCode
    license: LicenseId
    teacher: Annotated[str, Field(max_length=100)] = ""
    published_at: AwareDatetime | None = None
    school: ManifestSchool
    textbook: ManifestTextbook | None = None  # TEXTBOOKS; only where the course follows one
    lessons: list[ManifestLesson]

    def files(self) -> dict[str, ManifestFile]:
        """The blobs a school server needs for this course, by sha256.

        The renditions listed; and the original of a material for which no rendition
        stands in (each was skipped as bigger than it), or the school would have nothing
        of that material.
        """
        found: dict[str, ManifestFile] = {}
        for lesson in self.lessons:
            for m in lesson.materials:
                found.update((r.sha256, r) for r in m.renditions)
                found.update((t.sha256, t) for t in m.subtitles)
                if original_stands_in(m.status, (r.profile for r in m.renditions)):
                    found[m.original.sha256] = m.original
        return found


class IndexCourse(_Data):
    id: Id
    version: Id
    revision: Sha256


class Index(_Data):
    """The signed part of a manifest: every course the subscriber gets, with its entry's sha256."""

    format: Literal["oer-hub-manifest/2"]
    version: Id
    cursor: Annotated[int, Field(ge=0, strict=True)]
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    subscriber: ManifestSchool
    courses: Annotated[list[IndexCourse], Field(max_length=1_000_000)]


@dataclass(frozen=True)
class Manifest:
    """A verified index and the course entries at hand, each checked against it.

    A bundle carries every entry; a pull fetches only the entries whose revision
    the school server does not hold, so `courses` may list fewer than `index`.
    `bodies` keeps each entry's canonical bytes (what its revision hashes): the
    school server stores them, to merge later patches into and to re-export.
    """

    index: Index
    courses: list[ManifestCourse]
    bodies: dict[int, bytes]

    @property
    def version(self) -> int:
        return self.index.version

    @property
    def cursor(self) -> int:
        return self.index.cursor

    @property
    def issued_at(self) -> datetime:
        return self.index.issued_at

    @property
    def expires_at(self) -> datetime:
        return self.index.expires_at

    def files(self) -> dict[str, ManifestFile]:
        """Every blob the entries at hand list, by sha256 (content addressing dedupes them)."""
        found: dict[str, ManifestFile] = {}
        for course in self.courses:
            found.update(course.files())
        return found


class _Envelope(_Data):
    format: Literal["oer-hub-signed/1"]
    key: Annotated[str, Field(max_length=100)] = ""
    sha256: Sha256
    signature: Annotated[str, Field(max_length=200)]


# -- building (upstream) -------------------------------------------------------------


class SubscriptionLike(Protocol):
    """What selects courses: hub.sync.models.Subscription, or any object shaped like it."""

    @property
    def kind(self) -> str: ...  # course | subject | paired | textbook (with a textbook_key)
    @property
    def course_id(self) -> int | None: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def grade_min(self) -> int | None: ...
    @property
    def grade_max(self) -> int | None: ...
    @property
    def paired_school_id(self) -> int | None: ...


def _grade_range_mask(low: int, high: int) -> int:
    return sum(1 << g for g in range(low, high + 1))


def select_course_ids(session: Session, subscriptions: Iterable[SubscriptionLike]) -> list[int]:
    """Ids of the published courses any of `subscriptions` selects, in id order."""
    where = subscribed_clause(subscriptions)
    return list(session.scalars(select(Course.id).where(where).order_by(Course.id)))


def subscribed_clause(subscriptions: Iterable[SubscriptionLike]) -> ColumnElement[bool]:
    """A WHERE clause on Course: published and selected by any of `subscriptions` (false for none)."""
    clauses = []
    for sub in subscriptions:
        if sub.kind == "course" and sub.course_id is not None:
            clauses.append(Course.id == sub.course_id)
        elif sub.kind == "subject" and sub.subject:
            mask = _grade_range_mask(sub.grade_min or 1, sub.grade_max or 9)
            clauses.append(and_(Course.subject == sub.subject, Course.grades_mask.op("&")(mask) != 0))
        elif sub.kind == "paired" and sub.paired_school_id is not None:
            clauses.append(Course.school_id == sub.paired_school_id)
        elif sub.kind == "textbook" and getattr(sub, "textbook_key", None):
            clauses.append(_textbook_clause(sub.textbook_key))  # type: ignore[attr-defined]
    if not clauses:
        return false()
    return and_(Course.status == "published", or_(*clauses))


def _textbook_clause(key: str) -> ColumnElement[bool]:
    """Courses that follow the textbook `key`, or have a lesson on one of its chapters."""
    from hub.textbooks.models import Textbook, TextbookNode

    book = select(Textbook.id).where(Textbook.key == key).scalar_subquery()
    aligned = (
        select(Lesson.course_id)
        .join(TextbookNode, TextbookNode.id == Lesson.textbook_node_id)
        .where(TextbookNode.textbook_id == book)
    )
    return or_(Course.textbook_id == book, Course.id.in_(aligned))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def school_entry(school: School) -> dict[str, Any]:
    return {
        "id": school.id,
        "name": school.name,
        "kind": school.kind,
        "region": school.region,
        "county": school.county,
    }


def _choose_renditions(kind: str, ready: list[dict[str, Any]], video_profiles: Sequence[str]) -> list[dict[str, Any]]:
    if kind != "video":
        return ready
    by_profile = {r["profile"]: r for r in ready}
    chosen = next((by_profile[p] for p in video_profiles if p in by_profile), None)
    if chosen is None:
        # Nothing preferred is ready: the smallest video rendition there is.
        videos = sorted((r for r in ready if r["profile"].startswith("video-")), key=lambda r: r["size"])
        chosen = videos[0] if videos else None
    rest = [r for r in ready if not r["profile"].startswith("video-")]
    return ([chosen] if chosen else []) + rest


_IN_CHUNK = 5000
"""Ids per IN (...) list: well under SQLite's bound-parameter limit."""


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _IN_CHUNK):
        yield list(ids[i : i + _IN_CHUNK])


def _build_lessons(session: Session, lesson_ids: Sequence[int], video_profiles: Sequence[str]) -> dict[int, bytes]:
    """The canonical JSON of each lesson's entry, by id: three set-wise queries per chunk of ids.

    Flat rows, not ORM objects: a 100,000-lesson catalog is built in one pass.
    """
    bodies: dict[int, bytes] = {}
    for chunk in _chunks(lesson_ids):
        lessons: dict[int, dict[str, Any]] = {}
        for lid, position, title, summary, unit in session.execute(
            select(Lesson.id, Lesson.position, Lesson.title, Lesson.summary, Lesson.unit).where(Lesson.id.in_(chunk))
        ):
            lessons[lid] = {
                "id": lid,
                "position": position,
                "title": title,
                "summary": summary,
                "unit": unit,
                "materials": [],
            }
        materials = session.execute(
            select(
                Material.id,
                Material.lesson_id,
                Material.kind,
                Material.title,
                Material.filename,
                Material.status,
                Blob.sha256,
                Blob.size,
                Blob.media_type,
                Material.chapters,
            )
            .join(Blob, Blob.sha256 == Material.original_sha256)
            .where(Material.lesson_id.in_(chunk))
        ).all()
        ready: dict[int, list[dict[str, Any]]] = {}
        # By material id, not by a join on the lesson: given "material.lesson_id IN (…)" through
        # a join, SQLite scans every rendition (1.2 s per 5,000 of 100,000 lessons, 0.04 s so).
        material_ids = [row[0] for row in materials]
        for start in range(0, len(material_ids), _IN_CHUNK):
            for mid, profile, sha, size, media_type, kbps, width, height, duration, ssim in session.execute(
                select(
                    Rendition.material_id,
                    Rendition.profile,
                    Blob.sha256,
                    Blob.size,
                    Blob.media_type,
                    Rendition.kbps,
                    Rendition.width,
                    Rendition.height,
                    Rendition.duration,
                    Rendition.ssim,
                )
                .join(Blob, Blob.sha256 == Rendition.blob_sha256)
                .where(Rendition.material_id.in_(material_ids[start : start + _IN_CHUNK]), Rendition.status == "ready")
            ):
                ready.setdefault(mid, []).append(
                    {
                        "profile": profile,
                        "sha256": sha,
                        "size": size,
                        "media_type": media_type,
                        "kbps": kbps,
                        "width": width,
                        "height": height,
                        "duration": duration,
                        "ssim": ssim,
                    }
                )
        for renditions in ready.values():
            renditions.sort(key=lambda r: r["profile"])
        tracks = _subtitles(session, material_ids) if SUBTITLES in video_profiles else {}
        with_chapters = CHAPTERS in video_profiles
        if TEXTBOOKS in video_profiles:
            # Only where a lesson is on a chapter: an entry of any other lesson stays what it always was.
            for lid, book_key, node_key in _alignments(session, chunk):
                lessons[lid] |= {"textbook": book_key, "node": node_key}
        for mid, lid, kind, title, filename, status, sha, size, media_type, chapters in sorted(
            materials, key=lambda row: row[0]
        ):
            material = {
                "id": mid,
                "kind": kind,
                "title": title,
                "filename": filename,
                "status": status,
                "original": {"sha256": sha, "size": size, "media_type": media_type},
                "renditions": _choose_renditions(kind, ready.get(mid, []), video_profiles),
            }
            if mid in tracks:  # only then: an entry without tracks stays what it always was
                material["subtitles"] = tracks[mid]
            if with_chapters and (starts := clean_chapters(chapters)):  # the same: only where there are some
                material["chapters"] = starts
            lessons[lid]["materials"].append(material)
        bodies.update((lid, canonical_json(lesson)) for lid, lesson in lessons.items())
    return bodies


def _alignments(session: Session, lesson_ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(lesson id, textbook key, node key) of the lessons among `lesson_ids` that are on a chapter."""
    from hub.textbooks.models import Textbook, TextbookNode

    rows = session.execute(
        select(Lesson.id, Textbook.key, TextbookNode.key)
        .join(TextbookNode, TextbookNode.id == Lesson.textbook_node_id)
        .join(Textbook, Textbook.id == TextbookNode.textbook_id)
        .where(Lesson.id.in_(list(lesson_ids)))
    )
    return [(lid, book, node) for lid, book, node in rows]


def _subtitles(session: Session, material_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The subtitle tracks of these materials, by material id, each material's by language."""
    found: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(material_ids), _IN_CHUNK):
        for mid, language, label, cues, sha, size, media_type in session.execute(
            select(
                Subtitle.material_id,
                Subtitle.language,
                Subtitle.label,
                Subtitle.cues,
                Blob.sha256,
                Blob.size,
                Blob.media_type,
            )
            .join(Blob, Blob.sha256 == Subtitle.blob_sha256)
            .where(Subtitle.material_id.in_(material_ids[start : start + _IN_CHUNK]))
            .order_by(Subtitle.material_id, Subtitle.language)
        ):
            found.setdefault(mid, []).append(
                {
                    "language": language,
                    "label": label,
                    "cues": cues,
                    "sha256": sha,
                    "size": size,
                    "media_type": media_type,
                }
            )
    return found


@dataclass(frozen=True)
class _CachedCourse:
    marker: tuple[Any, ...]
    version: int
    fields: bytes  # canonical JSON of the entry without its lessons: the head of a patch
    prefix: bytes  # the entry's bytes before its lessons' and after them, as canonical JSON orders
    suffix: bytes
    lessons: tuple[int, ...]  # lesson ids in entry order
    revision: str


@dataclass(frozen=True)
class _CachedLesson:
    stamp: datetime | None  # Lesson.changed_at when built
    body: bytes


@dataclass(frozen=True)
class IndexLine:
    id: int
    version: int
    revision: str


class EntryCache:
    """Lesson and course entries kept between manifests: an incremental manifest rebuilds only what changed.

    Change detection reads two rows per course (the course and an aggregate of
    its lessons' ``changed_at``), then the lesson stamps of the courses that
    moved; only the lessons whose stamp moved are rebuilt, and a course's bytes
    are the join of its lessons'. Per process (a web worker keeps it warm);
    thread-safe; keyed by database and video profile preference.
    """

    def __init__(self) -> None:
        self._courses: dict[tuple[str, int, tuple[str, ...]], _CachedCourse] = {}
        self._lessons: dict[tuple[str, int, tuple[str, ...]], _CachedLesson] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._courses.clear()
            self._lessons.clear()

    def index(
        self, session: Session, course_ids: Sequence[int], video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES
    ) -> list[IndexLine]:
        """(id, version, revision) of each published course of `course_ids`, in id order."""
        courses = self._refresh(session, course_ids, tuple(video_profiles))
        return [IndexLine(cid, c.version, c.revision) for cid, c in sorted(courses.items())]

    def entries(
        self, session: Session, course_ids: Sequence[int], video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES
    ) -> dict[int, bytes]:
        """The canonical JSON of each published course's entry (what its revision hashes), by id."""
        profiles = tuple(video_profiles)
        where = _where(session)
        courses = self._refresh(session, course_ids, profiles)
        with self._lock:
            return {cid: self._body(where, c, profiles) for cid, c in courses.items()}

    def patches(
        self,
        session: Session,
        course_ids: Sequence[int],
        since: datetime,
        video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES,
    ) -> dict[int, bytes]:
        """Per course, what changed since `since`: its fields, its lesson ids, the lessons stamped since.

        A school server holding the course's entry as of `since` merges these
        into it and checks the result against the signed revision; a lesson
        whose stamp is older than `since` minus a margin is left out.
        """
        profiles = tuple(video_profiles)
        where = _where(session)
        courses = self._refresh(session, course_ids, profiles)
        after = since - PATCH_MARGIN
        patches: dict[int, bytes] = {}
        with self._lock:
            for cid, course in courses.items():
                changed = []
                for lid in course.lessons:
                    lesson = self._lessons[(where, lid, profiles)]
                    if lesson.stamp is None or lesson.stamp > after:
                        changed.append(lesson.body)
                patches[cid] = (
                    b'{"changed":['
                    + b",".join(changed)
                    + b'],"fields":'
                    + course.fields
                    + b',"lessons":'
                    + canonical_json(list(course.lessons))
                    + b"}"
                )
        return patches

    def _body(self, where: str, course: _CachedCourse, profiles: tuple[str, ...]) -> bytes:
        lessons = b",".join(self._lessons[(where, lid, profiles)].body for lid in course.lessons)
        return course.prefix + b',"lessons":[' + lessons + b"]," + course.suffix

    def _refresh(
        self, session: Session, course_ids: Sequence[int], profiles: tuple[str, ...]
    ) -> dict[int, _CachedCourse]:
        where = _where(session)
        markers = _course_markers(session, course_ids)
        with self._lock:
            known = {cid: self._courses.get((where, cid, profiles)) for cid in markers}
        stale = sorted(cid for cid, cached in known.items() if cached is None or cached.marker != markers[cid])
        result = {cid: cached for cid, cached in known.items() if cached is not None and cid not in stale}
        if not stale:
            return result
        # The lessons of the courses that moved, and of those only the ones whose stamp moved.
        order: dict[int, list[int]] = {cid: [] for cid in stale}
        stamps: dict[int, datetime | None] = {}
        for chunk in _chunks(stale):
            for lid, cid, stamp in session.execute(
                select(Lesson.id, Lesson.course_id, Lesson.changed_at)
                .where(Lesson.course_id.in_(chunk))
                .order_by(Lesson.course_id, Lesson.position, Lesson.id)
            ):
                order[cid].append(lid)
                stamps[lid] = stamp
        with self._lock:
            have = {lid: self._lessons.get((where, lid, profiles)) for lid in stamps}
        rebuild = [lid for lid, cached in have.items() if cached is None or cached.stamp != stamps[lid]]
        built = _build_lessons(session, rebuild, profiles)
        fresh = {lid: _CachedLesson(stamps[lid], body) for lid, body in built.items()}
        rows = session.scalars(
            select(Course).where(Course.id.in_(stale), Course.status == "published").options(joinedload(Course.school))
        )
        heads = {course.id: course for course in rows}
        with self._lock:
            for lid, lesson in fresh.items():
                self._lessons[(where, lid, profiles)] = lesson
            for cid in stale:
                old = known.get(cid)
                keep = set(order[cid]) if cid in heads else set()
                for lid in old.lessons if old is not None else ():
                    if lid not in keep:
                        self._lessons.pop((where, lid, profiles), None)
                course = heads.get(cid)
                if course is None:  # withdrawn while we looked
                    self._courses.pop((where, cid, profiles), None)
                    continue
                cached = self._course_entry(where, course, markers[cid], tuple(order[cid]), profiles)
                self._courses[(where, cid, profiles)] = cached
                result[cid] = cached
        return result

    def _course_entry(
        self, where: str, course: Course, marker: tuple[Any, ...], lessons: tuple[int, ...], profiles: tuple[str, ...]
    ) -> _CachedCourse:
        fields: dict[str, Any] = {
            "id": course.id,
            "version": course.version,
            **course.description(),
            "published_at": _iso(course.published_at),
            "school": school_entry(course.school),
        }
        if TEXTBOOKS in profiles and course.textbook is not None:
            fields["textbook"] = textbook_entry(course.textbook)
        # Keys sort, so an entry's bytes are the keys before "lessons", the lessons, and the keys
        # after: the lessons (nearly all of the bytes) are joined from their cached bytes.
        prefix = canonical_json({k: v for k, v in fields.items() if k < "lessons"})[:-1]
        suffix = canonical_json({k: v for k, v in fields.items() if k > "lessons"})[1:]
        cached = _CachedCourse(marker, course.version, canonical_json(fields), prefix, suffix, lessons, "")
        body = self._body(where, cached, profiles)
        return replace(cached, revision=hashlib.sha256(body).hexdigest())


PATCH_MARGIN = timedelta(seconds=2)
"""How far before `since` a patch still re-sends lessons: a write stamped just before an index was
built may commit just after it. A write older than that is in the index the school holds; one
missed anyway (a transaction open longer) makes the merged entry's hash differ, and the school
server then fetches the whole entry: the margin costs bytes, never correctness."""


def textbook_entry(book: Textbook) -> dict[str, Any]:
    """A textbook as entries carry it: the textbook file's JSON format, tree and all."""
    from hub.textbooks.files import to_data
    from hub.textbooks.services import to_spec

    return to_data(to_spec(book))


def _where(session: Session) -> str:
    # Keyed by database: tests (and tools) run several hubs in one process.
    return str(session.get_bind().engine.url)


def _course_markers(session: Session, course_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """A fingerprint per published course of everything its entry is built from.

    The course's row (its ``updated_at`` moves with every ORM write) and school,
    with the count and latest ``changed_at`` of its lessons (stamped by every
    write to a lesson, its materials or their renditions): two aggregate queries,
    no lesson row read into Python.
    """
    markers: dict[int, tuple[Any, ...]] = {}
    lessons: dict[int, tuple[int, datetime | None]] = {}
    for chunk in _chunks(list(course_ids)):
        for cid, version, updated, name, kind, region, county in session.execute(
            select(
                Course.id,
                Course.version,
                Course.updated_at,
                School.name,
                School.kind,
                School.region,
                School.county,
            )
            .join(School, School.id == Course.school_id)
            .where(Course.id.in_(chunk), Course.status == "published")
        ):
            markers[cid] = (version, updated, name, kind, region, county)
        for cid, count, latest in session.execute(
            select(Lesson.course_id, func.count(Lesson.id), func.max(Lesson.changed_at))
            .where(Lesson.course_id.in_(chunk))
            .group_by(Lesson.course_id)
        ):
            lessons[cid] = (count, latest)
    return {cid: (*marker, *lessons.get(cid, (0, None))) for cid, marker in markers.items()}


ENTRY_CACHE = EntryCache()


def build_courses(
    session: Session, course_ids: Sequence[int], *, video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES
) -> list[dict[str, Any]]:
    """The entries of `course_ids` (published ones only) as plain data with their revisions, built afresh."""
    cache = EntryCache()
    bodies = cache.entries(session, course_ids, video_profiles)
    return [
        {**json.loads(bodies[line.id]), "revision": line.revision}
        for line in cache.index(session, course_ids, video_profiles)
    ]


def index_payload(
    lines: Sequence[IndexLine], *, subscriber: School, version: int, cursor: int, now: datetime, lifetime: int
) -> bytes:
    """The canonical JSON of the signed index."""
    return canonical_json(
        {
            "courses": [{"id": line.id, "revision": line.revision, "version": line.version} for line in lines],
            "cursor": cursor,
            "expires_at": _iso(now + timedelta(seconds=lifetime)),
            "format": FORMAT,
            "issued_at": _iso(now),
            "subscriber": school_entry(subscriber),
            "version": version,
        }
    )


def index_digest(lines: Sequence[IndexLine]) -> str:
    """What the subscriber would get, as one hash: unchanged digest, unchanged manifest version."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(f"{line.id}:{line.revision};".encode())
    return digest.hexdigest()


# -- course entries on the school server ---------------------------------------------


def entry_from(data: Any, expected: IndexCourse) -> ManifestCourse:
    """A course entry (parsed JSON) checked against its line of a verified index; ManifestRefused otherwise."""
    try:
        body = canonical_json(data)
    except (TypeError, ValueError, RecursionError):
        raise ManifestRefused(N_("The entry of course %(id)s is not JSON data."), id=expected.id) from None
    return entry_from_bytes(body, expected, data)


def entry_from_bytes(body: bytes, expected: IndexCourse, data: Any = None) -> ManifestCourse:
    """A course entry from its canonical bytes, if they hash to the revision the signed index gives."""
    if hashlib.sha256(body).hexdigest() != expected.revision:
        raise ManifestRefused(
            N_("The entry of course %(id)s does not match the signed index (its sha256 differs): refused."),
            id=expected.id,
        )
    try:
        parsed = json.loads(body) if data is None else data
        if not isinstance(parsed, dict) or "revision" in parsed:
            raise ValueError("not an entry")
        course = ManifestCourse.model_validate({**parsed, "revision": expected.revision})
    except (ValueError, ValidationError) as exc:
        raise ManifestRefused(
            N_("The entry of course %(id)s is not valid."), id=expected.id, detail=_first_line(exc)
        ) from None
    if course.id != expected.id or course.version != expected.version:
        raise ManifestRefused(N_("The entry of course %(id)s is not the one the signed index lists."), id=expected.id)
    return course


def merge_patch(held: bytes, patch: Any) -> dict[str, Any] | None:
    """The entry `held` (canonical bytes) with `patch` applied, or None when the patch does not fit it.

    `patch` comes before any check (its result is checked against the signed
    revision), so anything malformed gives None, never an exception.
    """
    try:
        old = json.loads(held) if held else None
        if not isinstance(old, dict) or not isinstance(patch, dict):
            return None
        fields, order, changed = patch["fields"], patch["lessons"], patch["changed"]
        if not isinstance(fields, dict) or "lessons" in fields or not isinstance(order, list):
            return None
        lessons = {lesson["id"]: lesson for lesson in old.get("lessons", [])}
        lessons.update((lesson["id"], lesson) for lesson in changed)
        return {**fields, "lessons": [lessons[lid] for lid in order]}
    except (KeyError, TypeError, ValueError, RecursionError):
        return None


def canonical_json(data: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8 (Chinese stays as is)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# -- keys, signing and verifying -----------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write the key as PKCS#8 PEM, readable by its owner only, never over an existing key."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two `hub keys generate` at once must not leave a key that signed nothing.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise HubError(N_("There is no signing key at %(path)s; run `hub keys generate`."), path=str(path)) from None
    except ValueError as exc:
        raise HubError(
            N_("The signing key at %(path)s cannot be read."), path=str(path), detail=_first_line(exc)
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HubError(N_("The signing key at %(path)s is not an Ed25519 key."), path=str(path))
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as the school server's HUB_UPSTREAM_PUBLIC_KEY: base64 of its 32 bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse a public key as printed by `hub keys generate`; ValueError when it is not one."""
    text = text.strip().removeprefix("ed25519:")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(Text(N_("not base64"))) from None
    if len(raw) != 32:
        raise ValueError(Text(N_("an Ed25519 public key is 32 bytes (44 base64 characters)")))
    return Ed25519PublicKey.from_public_bytes(raw)


_SIGNED_PREFIX = b"oer-hub-manifest sha256:"
"""What is signed: this prefix and the payload's sha256 in hex (no other message can collide with it)."""
_MAX_HEADER = 4096


def sign(payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The signed envelope carrying `payload` (canonical JSON bytes): a header line, then the payload as is."""
    digest = hashlib.sha256(payload).hexdigest()
    header = {
        "format": ENVELOPE_FORMAT,
        "key": public_key_text(private_key),
        "sha256": digest,
        "signature": base64.b64encode(private_key.sign(_SIGNED_PREFIX + digest.encode())).decode(),
    }
    return canonical_json(header) + b"\n" + payload


def manifest_etag(version: int) -> str:
    """The entity tag of manifest `version`: the upstream answers 304 while it is still current."""
    return f'"manifest-{version}"'


def unverified_version(envelope_bytes: bytes) -> int:
    """The version an envelope this hub just signed carries (for its ETag); never use on received bytes."""
    payload = envelope_bytes[envelope_bytes.index(b"\n") + 1 :]
    marker = payload.rindex(b',"version":')
    return int(payload[marker + len(b',"version":') : -1])


def verify(
    envelope_bytes: bytes,
    public_key: Ed25519PublicKey,
    *,
    not_older_than: int | None,
    now: datetime,
) -> Index:
    """The index inside a signed envelope, or ManifestRefused saying why.

    Refused: not an envelope (unsigned), a signature that does not verify with
    `public_key`, a payload that is not a valid manifest, a version below
    `not_older_than` (a replay of an older state), or an expiry in the past.
    The signature is checked before the payload is parsed, so unsigned bytes
    never reach the validator.
    """
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        raise ManifestRefused(N_("The manifest is larger than any this hub accepts."))
    newline = envelope_bytes.find(b"\n", 0, _MAX_HEADER)
    try:
        if newline < 0:
            raise ValueError("no header line")
        envelope = _Envelope.model_validate(json.loads(envelope_bytes[:newline]))
    except (ValueError, UnicodeDecodeError, ValidationError):
        raise ManifestRefused(N_("The manifest is not signed (no valid signature header).")) from None
    payload = envelope_bytes[newline + 1 :]
    try:
        if hashlib.sha256(payload).hexdigest() != envelope.sha256:
            raise ValueError("digest")
        signature = base64.b64decode(envelope.signature, validate=True)
        public_key.verify(signature, _SIGNED_PREFIX + envelope.sha256.encode())
    except (binascii.Error, ValueError, InvalidSignature):
        raise ManifestRefused(
            N_(
                "The manifest's signature does not match the upstream's public key (HUB_UPSTREAM_PUBLIC_KEY): "
                "it was altered, or signed by another key."
            )
        ) from None
    try:
        manifest = Index.model_validate_json(payload)
    except (ValueError, ValidationError) as exc:
        raise ManifestRefused(N_("The signed manifest is not a valid manifest."), detail=_first_line(exc)) from None
    if len({c.id for c in manifest.courses}) != len(manifest.courses):
        raise ManifestRefused(N_("The signed manifest lists a course twice."))
    if not_older_than is not None and manifest.version < not_older_than:
        raise ManifestRefused(
            N_(
                "The manifest is version %(version)d, older than version %(seen)d already seen: "
                "a replay of an old state."
            ),
            version=manifest.version,
            seen=not_older_than,
        )
    if manifest.expires_at <= now:
        raise ManifestRefused(
            N_("The manifest expired at %(when)s; fetch or export a fresh one."), when=_iso(manifest.expires_at)
        )
    return manifest


# -- the whole manifest as one document (USB bundles) --------------------------------


def document(envelope: bytes, entries: Sequence[bytes]) -> bytes:
    """The signed index followed by every course entry, one canonical JSON line each, in index order."""
    return b"\n".join([envelope, *entries]) + b"\n"


def verify_document(
    data: bytes, public_key: Ed25519PublicKey, *, not_older_than: int | None, now: datetime
) -> tuple[Manifest, bytes]:
    """The manifest a document carries and its signed envelope; every entry checked against the index."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ManifestRefused(N_("The manifest is larger than any this hub accepts."))
    first = data.find(b"\n", 0, _MAX_HEADER)
    second = data.find(b"\n", first + 1) if first >= 0 else -1
    if second < 0:
        raise ManifestRefused(N_("The manifest is not signed (no valid signature header)."))
    envelope = data[:second]
    index = verify(envelope, public_key, not_older_than=not_older_than, now=now)
    lines = data[second + 1 :].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != len(index.courses):
        raise ManifestRefused(
            N_("The manifest holds %(entries)d course entries; its signed index lists %(listed)d."),
            entries=len(lines),
            listed=len(index.courses),
        )
    courses = [entry_from_bytes(line, listed) for line, listed in zip(lines, index.courses, strict=True)]
    bodies = {listed.id: line for line, listed in zip(lines, index.courses, strict=True)}
    return Manifest(index=index, courses=courses, bodies=bodies), envelope
