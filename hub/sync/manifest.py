"""The sync manifest as data: what a school server mirrors, signed by the upstream.

A manifest lists, for one subscriber school, every published course its
subscriptions select, with their lessons, materials and the renditions chosen
for mirroring (each named by sha256, with its size and media type). It is built
on the upstream, signed with the upstream's Ed25519 key, and verified on the
school server before anything in it is used. Nothing in a manifest is ever
executed or unpickled: it is JSON, parsed into the strict pydantic models below,
and a field that is missing, unknown or of the wrong type refuses the whole
manifest.

Format (``oer-hub-manifest/1``), the payload that is signed::

    {
      "format": "oer-hub-manifest/1",
      "version": 7,                 # per subscriber; only ever goes up
      "cursor": 1234,               # the change feed's last seq when it was built
      "issued_at": "2026-12-01T20:00:00Z",
      "expires_at": "2026-12-08T20:00:00Z",
      "subscriber": {"id": 3, "name": "…", "kind": "rural", "region": "…", "county": "…"},
      "courses": [
        {"id": 12, "version": 4, "revision": "<16 hex: hash of this entry>",
         "title": "…", "summary": "…", "category": "curriculum", "subject": "math",
         "grades": [9], "edition": "人教版", "volume": "上册", "language": "zh",
         "license": "CC-BY-SA-4.0", "teacher": "…", "published_at": "…" | null,
         "school": {"id": 1, "name": "…", "kind": "famous", "region": "…", "county": "…"},
         "lessons": [
           {"id": 40, "position": 1, "title": "…", "summary": "…", "unit": "…",
            "materials": [
              {"id": 77, "kind": "video", "title": "…", "filename": "…", "status": "ready",
               "original": {"sha256": "…", "size": 123, "media_type": "video/mp4"},
               "renditions": [
                 {"profile": "video-360p", "sha256": "…", "size": 45, "media_type": "video/mp4",
                  "kbps": 300.0, "width": 640, "height": 360, "duration": 3.0, "ssim": 0.97}]}]}]}]
    }

Only the renditions listed are mirrored; originals are described (the school
server's catalog needs their row) but their bytes are not carried: a school
server serves the small renditions, never a multi-GB recording. For a video the
first ready profile of the preference list is chosen (plus its poster), so a
school never pays for two resolutions of the same lesson.

The signed envelope (what travels, over HTTP or on a USB drive) is one header
line, then the payload bytes exactly as signed::

    {"format":"oer-hub-signed/1","key":"<base64 public key>","sha256":"<hex of the payload>",
     "signature":"<base64 Ed25519 of b'oer-hub-manifest sha256:' + that hex>"}\n
    <payload>

Signing the payload's sha256 rather than the payload keeps a 100,000-lesson
manifest cheap to sign (one hash pass, no re-encoding into a JSON string); the
verifier hashes the payload and checks both. ``key`` is informational: a school
server trusts only the key it was configured with.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.orm import Session

from hub.accounts.models import School
from hub.catalog.models import Course, Lesson, Material
from hub.errors import HubError
from hub.media.models import Blob, Rendition
from hub.vocab import CategoryCode, LanguageCode, LicenseId, SubjectCode

FORMAT = "oer-hub-manifest/1"
ENVELOPE_FORMAT = "oer-hub-signed/1"
MAX_ENVELOPE_BYTES = 256 * 1024 * 1024
"""A manifest of 100,000 lessons is some 60 MB; anything far beyond is not ours."""

DEFAULT_VIDEO_PROFILES: tuple[str, ...] = ("video-360p", "video-240p")
"""Which one video rendition a school server mirrors: the first of these that is ready."""


class ManifestRefused(HubError):
    """A manifest that must not be used; the school server keeps its old state."""

    status = 422
    code = "manifest_refused"


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


class ManifestMaterial(_Data):
    id: Id
    kind: Literal["video", "audio", "document", "image"]
    title: Text200
    filename: Annotated[str, Field(max_length=255)] = ""
    status: Literal["pending", "processing", "ready", "failed"]
    original: ManifestFile
    renditions: list[ManifestRendition]


class ManifestLesson(_Data):
    id: Id
    position: int
    title: Text200
    summary: Annotated[str, Field(max_length=20000)] = ""
    unit: Annotated[str, Field(max_length=100)] = ""
    materials: list[ManifestMaterial]


class ManifestCourse(_Data):
    id: Id
    version: Id
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    summary: Annotated[str, Field(max_length=5000)] = ""
    category: CategoryCode
    subject: SubjectCode
    grades: Annotated[list[Annotated[int, Field(ge=1, le=9, strict=True)]], Field(min_length=1, max_length=9)]
    edition: Annotated[str, Field(max_length=50)] = ""
    volume: Literal["", "上册", "下册"] = ""
    language: LanguageCode
    license: LicenseId
    teacher: Annotated[str, Field(max_length=100)] = ""
    published_at: AwareDatetime | None = None
    school: ManifestSchool
    lessons: list[ManifestLesson]

    def files(self) -> dict[str, ManifestFile]:
        """The blobs a school server needs for this course, by sha256."""
        return {r.sha256: r for lesson in self.lessons for m in lesson.materials for r in m.renditions}


class Manifest(_Data):
    format: Literal["oer-hub-manifest/1"]
    version: Id
    cursor: Annotated[int, Field(ge=0, strict=True)]
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    subscriber: ManifestSchool
    courses: list[ManifestCourse]

    def files(self) -> dict[str, ManifestFile]:
        """Every blob the manifest lists, by sha256 (content addressing dedupes them)."""
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
    def kind(self) -> str: ...  # course | subject | paired
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
    clauses = []
    for sub in subscriptions:
        if sub.kind == "course" and sub.course_id is not None:
            clauses.append(Course.id == sub.course_id)
        elif sub.kind == "subject" and sub.subject:
            mask = _grade_range_mask(sub.grade_min or 1, sub.grade_max or 9)
            clauses.append(and_(Course.subject == sub.subject, Course.grades_mask.op("&")(mask) != 0))
        elif sub.kind == "paired" and sub.paired_school_id is not None:
            clauses.append(Course.school_id == sub.paired_school_id)
    where = or_(*clauses) if clauses else false()
    return list(session.scalars(select(Course.id).where(Course.status == "published", where).order_by(Course.id)))


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


def build_courses(
    session: Session, course_ids: Sequence[int], *, video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES
) -> list[dict[str, Any]]:
    """The manifest entries of `course_ids` (published ones only), with their revisions.

    Four set-wise queries whatever the number of lessons: the manifest of a large
    catalog is built in one pass over flat rows, not by walking ORM relationships.
    """
    return [entry for entry, _body in _build(session, course_ids, video_profiles)]


def _entry_bytes(entry: dict[str, Any]) -> tuple[str, bytes]:
    """(revision, canonical JSON with the revision) of an entry, encoding its lessons once.

    The revision is the hash of the entry's canonical JSON without it. Keys sort,
    so the bytes are the keys before "lessons", the lessons, and the keys after:
    the lessons (nearly all of the bytes) are encoded once and spliced into both.
    """
    lessons = canonical_json(entry["lessons"])
    head = canonical_json({k: v for k, v in entry.items() if k < "lessons"})[:-1]
    tail = {k: v for k, v in entry.items() if k > "lessons" and k != "revision"}
    middle = b',"lessons":' + lessons + b","
    revision = hashlib.sha256(head + middle + canonical_json(tail)[1:]).hexdigest()[:16]
    tail["revision"] = revision
    return revision, head + middle + canonical_json(tail)[1:]


def _build(
    session: Session, course_ids: Sequence[int], video_profiles: Sequence[str]
) -> list[tuple[dict[str, Any], bytes]]:
    if not course_ids:
        return []
    wanted = select(Course.id).where(Course.id.in_(course_ids), Course.status == "published")
    courses = list(session.scalars(select(Course).where(Course.id.in_(wanted)).order_by(Course.id)))
    lessons: dict[int, list[dict[str, Any]]] = {}
    lesson_rows = session.execute(
        select(Lesson.id, Lesson.course_id, Lesson.position, Lesson.title, Lesson.summary, Lesson.unit)
        .where(Lesson.course_id.in_(wanted))
        .order_by(Lesson.course_id, Lesson.position, Lesson.id)
    ).all()
    by_lesson: dict[int, list[dict[str, Any]]] = {}
    for lid, cid, position, title, summary, unit in lesson_rows:
        materials: list[dict[str, Any]] = []
        by_lesson[lid] = materials
        lessons.setdefault(cid, []).append(
            {"id": lid, "position": position, "title": title, "summary": summary, "unit": unit, "materials": materials}
        )
    material_rows = session.execute(
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
        )
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Blob, Blob.sha256 == Material.original_sha256)
        .where(Lesson.course_id.in_(wanted))
        .order_by(Material.id)
    ).all()
    ready: dict[int, list[dict[str, Any]]] = {}
    rendition_rows = session.execute(
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
        .join(Material, Material.id == Rendition.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .where(Lesson.course_id.in_(wanted), Rendition.status == "ready")
        .order_by(Rendition.material_id, Rendition.profile)
    ).all()
    for mid, profile, sha, size, media_type, kbps, width, height, duration, ssim in rendition_rows:
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
    for mid, lid, kind, title, filename, status, sha, size, media_type in material_rows:
        by_lesson[lid].append(
            {
                "id": mid,
                "kind": kind,
                "title": title,
                "filename": filename,
                "status": status,
                "original": {"sha256": sha, "size": size, "media_type": media_type},
                "renditions": _choose_renditions(kind, ready.get(mid, []), video_profiles),
            }
        )
    entries = []
    for course in courses:
        entry: dict[str, Any] = {
            "id": course.id,
            "version": course.version,
            **course.description(),
            "published_at": _iso(course.published_at),
            "school": school_entry(course.school),
            "lessons": lessons.get(course.id, []),
        }
        entry["revision"], body = _entry_bytes(entry)
        entries.append((entry, body))
    return entries


def course_markers(session: Session, course_ids: Sequence[int]) -> dict[int, str]:
    """A cheap fingerprint per course of everything its manifest entry is built from.

    Counts and latest ``updated_at`` of its lessons, materials and renditions,
    with the course's own row and its school's: any edit, addition or deletion
    through the services changes one of them. Aggregates in SQL, so checking a
    100,000-lesson catalog for changes reads no row into Python.
    """
    if not course_ids:
        return {}
    ids = list(course_ids)
    markers: dict[int, list[str]] = {}
    for cid, version, status, updated, name, kind, region, county in session.execute(
        select(
            Course.id,
            Course.version,
            Course.status,
            Course.updated_at,
            School.name,
            School.kind,
            School.region,
            School.county,
        )
        .join(School, School.id == Course.school_id)
        .where(Course.id.in_(ids))
    ):
        markers[cid] = [str(version), status, _iso(updated) or "", name, kind, region, county]
    lesson = select(Lesson.course_id, func.count(Lesson.id), func.max(Lesson.updated_at)).where(
        Lesson.course_id.in_(ids)
    )
    material = (
        select(Lesson.course_id, func.count(Material.id), func.max(Material.updated_at))
        .join(Lesson, Lesson.id == Material.lesson_id)
        .where(Lesson.course_id.in_(ids))
    )
    rendition = (
        select(Lesson.course_id, func.count(Rendition.id), func.max(Rendition.updated_at))
        .join(Material, Material.id == Rendition.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .where(Lesson.course_id.in_(ids))
    )
    for query in (lesson, material, rendition):
        for cid, count, latest in session.execute(query.group_by(Lesson.course_id)):
            markers.setdefault(cid, []).extend((str(count), str(latest)))
    for parts in markers.values():
        parts.append("|")  # keeps "no lessons" apart from a shifted list
    return {cid: "\x1f".join(parts) for cid, parts in markers.items()}


@dataclass(frozen=True)
class CachedEntry:
    marker: str
    revision: str
    body: bytes  # canonical JSON of the entry, revision included


class EntryCache:
    """Course entries kept between manifests: an incremental manifest rebuilds only what changed.

    A manifest asked for again after 2 % of a catalog's lessons changed costs
    the fingerprint queries, the rebuild of the changed courses and a join of
    byte strings, instead of a rebuild of every entry. Per process (a web
    worker keeps it warm); thread-safe; keyed by the video profile preference.
    """

    def __init__(self) -> None:
        # Keyed by database too: tests (and tools) run several hubs in one process.
        self._entries: dict[tuple[str, int, tuple[str, ...]], CachedEntry] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def entries(
        self, session: Session, course_ids: Sequence[int], video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES
    ) -> list[tuple[int, CachedEntry]]:
        """(course id, entry) for each published course of `course_ids`, in id order."""
        profiles = tuple(video_profiles)
        where = str(session.get_bind().engine.url)
        markers = course_markers(session, course_ids)
        with self._lock:
            known = {cid: self._entries.get((where, cid, profiles)) for cid in markers}
        stale = [cid for cid, entry in known.items() if entry is None or entry.marker != markers[cid]]
        fresh: dict[int, CachedEntry] = {}
        for built, body in _build(session, stale, profiles):
            fresh[built["id"]] = CachedEntry(markers[built["id"]], built["revision"], body)
        with self._lock:
            for cid in stale:
                if cid in fresh:
                    self._entries[(where, cid, profiles)] = fresh[cid]
                else:  # no longer published
                    self._entries.pop((where, cid, profiles), None)
        result: list[tuple[int, CachedEntry]] = []
        for cid in sorted(markers):
            cached = fresh.get(cid) if cid in stale else known.get(cid)
            if cached is not None:
                result.append((cid, cached))
        return result


ENTRY_CACHE = EntryCache()


def payload_bytes(
    entries: Sequence[CachedEntry],
    *,
    subscriber: School,
    version: int,
    cursor: int,
    now: datetime,
    lifetime: int,
) -> bytes:
    """The canonical JSON payload, joined from cached entry bytes (same bytes as canonical_json of the dict)."""
    rest = canonical_json(
        {
            "cursor": cursor,
            "expires_at": _iso(now + timedelta(seconds=lifetime)),
            "format": FORMAT,
            "issued_at": _iso(now),
            "subscriber": school_entry(subscriber),
            "version": version,
        }
    )
    # "courses" sorts before every other key, so it leads, as canonical_json would put it.
    return b'{"courses":[' + b",".join(e.body for e in entries) + b"]," + rest[1:]


def entries_digest(entries: Sequence[tuple[int, CachedEntry]]) -> str:
    """content_digest over cached entries."""
    digest = hashlib.sha256()
    for cid, entry in entries:
        digest.update(f"{cid}:{entry.revision};".encode())
    return digest.hexdigest()


def content_digest(courses: list[dict[str, Any]]) -> str:
    """What the subscriber would get, as one hash: unchanged digest, unchanged manifest."""
    digest = hashlib.sha256()
    for course in courses:
        digest.update(f"{course['id']}:{course['revision']};".encode())
    return digest.hexdigest()


def build_manifest(
    session: Session,
    subscriptions: Iterable[SubscriptionLike],
    *,
    subscriber: School,
    version: int,
    cursor: int,
    now: datetime,
    lifetime: int,
    video_profiles: Sequence[str] = DEFAULT_VIDEO_PROFILES,
    courses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest payload (a plain dict) for `subscriber`; `courses` reuses entries already built."""
    if courses is None:
        courses = build_courses(session, select_course_ids(session, subscriptions), video_profiles=video_profiles)
    return {
        "format": FORMAT,
        "version": version,
        "cursor": cursor,
        "issued_at": _iso(now),
        "expires_at": _iso(now + timedelta(seconds=lifetime)),
        "subscriber": school_entry(subscriber),
        "courses": courses,
    }


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
        raise HubError(f"There is no signing key at {path}; run `hub keys generate`.") from None
    except ValueError as exc:
        raise HubError(f"The signing key at {path} cannot be read: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HubError(f"The signing key at {path} is not an Ed25519 key.")
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
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (44 base64 characters)")
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
) -> Manifest:
    """The manifest inside a signed envelope, or ManifestRefused saying why.

    Refused: not an envelope (unsigned), a signature that does not verify with
    `public_key`, a payload that is not a valid manifest, a version below
    `not_older_than` (a replay of an older state), or an expiry in the past.
    The signature is checked before the payload is parsed, so unsigned bytes
    never reach the validator.
    """
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        raise ManifestRefused("The manifest is larger than any this hub accepts.")
    newline = envelope_bytes.find(b"\n", 0, _MAX_HEADER)
    try:
        if newline < 0:
            raise ValueError("no header line")
        envelope = _Envelope.model_validate(json.loads(envelope_bytes[:newline]))
    except (ValueError, UnicodeDecodeError, ValidationError):
        raise ManifestRefused("The manifest is not signed (no valid signature header).") from None
    payload = envelope_bytes[newline + 1 :]
    try:
        if hashlib.sha256(payload).hexdigest() != envelope.sha256:
            raise ValueError("digest")
        signature = base64.b64decode(envelope.signature, validate=True)
        public_key.verify(signature, _SIGNED_PREFIX + envelope.sha256.encode())
    except (binascii.Error, ValueError, InvalidSignature):
        raise ManifestRefused(
            "The manifest's signature does not match the upstream's public key (HUB_UPSTREAM_PUBLIC_KEY): "
            "it was altered, or signed by another key."
        ) from None
    try:
        manifest = Manifest.model_validate_json(payload)
    except (ValueError, ValidationError) as exc:
        raise ManifestRefused(f"The signed manifest is not a valid manifest: {exc}".splitlines()[0]) from None
    if not_older_than is not None and manifest.version < not_older_than:
        raise ManifestRefused(
            f"The manifest is version {manifest.version}, older than version {not_older_than} already seen: "
            "a replay of an old state."
        )
    if manifest.expires_at <= now:
        raise ManifestRefused(f"The manifest expired at {_iso(manifest.expires_at)}; fetch or export a fresh one.")
    return manifest
