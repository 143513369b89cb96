"""Sync use cases on both sides of the link.

Upstream: the change feed, subscriptions, issuing signed manifests. School
server (mirror mode): mirror state, what a verified manifest asks for, applying
one course version at a time. Download counts, both ways, are hub.sync.counts.

Applying is what keeps teachers on the LAN safe from half an update: a course
is applied only when every blob it lists is already in storage (each verified
against its sha256 when it was stored), and its metadata changes in one
transaction, so a reader sees the old version or the new one. A sync killed at
any point leaves applied courses whole and the rest untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import CompoundSelect, Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from hub.accounts.models import Pairing, School, User
from hub.catalog.models import Course, Lesson, Material
from hub.db import utcnow
from hub.errors import Conflict, HubError, Invalid, NotFound, Text, english
from hub.i18n import N_
from hub.inputs import parse_int
from hub.media.models import Blob, Rendition
from hub.media.storage import BlobBatch, Storage
from hub.search import changes as search_changes
from hub.subtitles.models import Subtitle
from hub.sync import manifest as mf
from hub.sync import wording
from hub.sync.models import (
    Change,
    ManifestState,
    MirrorCourse,
    MirrorState,
    Subscription,
    SyncRun,
)
from hub.vocab import SUBJECTS

log = logging.getLogger(__name__)

# -- upstream: the change feed -------------------------------------------------------

FEED_PAGE = 1000


@dataclass(frozen=True)
class FeedPage:
    changes: list[Change]
    cursor: int  # pass it back as `since` for the next page
    more: bool


def feed(session: Session, since: int, limit: int = FEED_PAGE) -> FeedPage:
    """Published catalog changes after `since`, oldest first."""
    limit = max(1, min(limit, FEED_PAGE))
    rows = list(session.scalars(select(Change).where(Change.seq > since).order_by(Change.seq).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedPage(rows, rows[-1].seq if rows else since, more)


def pending_changes(session: Session, since: int) -> int:
    return session.scalar(select(func.count(Change.seq)).where(Change.seq > since)) or 0


def current_cursor(session: Session) -> int:
    return session.scalar(select(func.max(Change.seq))) or 0


# -- upstream: subscriptions ---------------------------------------------------------


def subscribe(
    session: Session,
    school: School,
    *,
    course_id: int | None = None,
    subject: str | None = None,
    grades: tuple[int, int] | None = None,
    paired_with: str | None = None,
    textbook: str | None = None,
) -> Subscription:
    """Subscribe `school` to one course, a subject over grades, its paired famous school's courses or a textbook.

    Subscribing twice to the same thing returns the existing subscription.
    """
    given = [course_id is not None, subject is not None, paired_with is not None, textbook is not None]
    if sum(given) != 1:
        raise Invalid(
            N_("Subscribe to exactly one of: a course, a subject with grades, a paired school or a textbook.")
        )
    values: dict[str, Any]
    if course_id is not None:
        course = session.get(Course, course_id)
        if course is None or course.status != "published":
            raise NotFound(N_("There is no published course %(id)s."), id=course_id)
        values = {"kind": "course", "course_id": course_id}
    elif subject is not None:
        if subject not in SUBJECTS:
            raise Invalid(
                N_("Unknown subject %(subject)s; use one of %(subjects)s."),
                {"subject": N_("unknown")},
                subject=repr(subject),
                subjects=", ".join(SUBJECTS),
            )
        low, high = grades or (1, 9)
        if not 1 <= low <= high <= 9:
            raise Invalid(N_("Grades are a range A-B within 1-9, A not above B."), {"grades": "1-9"})
        values = {"kind": "subject", "subject": subject, "grade_min": low, "grade_max": high}
    elif textbook is not None:
        from hub.textbooks.models import Textbook

        if session.scalar(select(Textbook.id).where(Textbook.key == textbook)) is None:
            raise NotFound(N_("There is no textbook %(key)s."), key=textbook)
        values = {"kind": "textbook", "textbook_key": textbook}
    else:
        assert paired_with is not None
        famous = session.scalar(select(School).where(School.name == paired_with))
        school_id = parse_int(paired_with, low=1)  # or its id; "²" and 2^63 are neither
        if famous is None and school_id is not None:
            famous = session.get(School, school_id)
        if famous is None:
            raise NotFound(N_("There is no school %(name)s."), name=repr(paired_with))
        paired = session.scalar(
            select(Pairing.id).where(Pairing.famous_school_id == famous.id, Pairing.rural_school_id == school.id)
        )
        if paired is None:
            raise Conflict(
                N_(
                    "%(school)s is not paired with %(famous)s; an admin pairs schools first "
                    '(on the upstream: hub school pair "%(famous)s" "%(school)s").'
                ),
                school=school.name,
                famous=famous.name,
            )
        values = {"kind": "paired", "paired_school_id": famous.id}
    existing = session.scalar(
        select(Subscription).filter_by(school_id=school.id, **values).order_by(Subscription.id).limit(1)
    )
    if existing is not None:
        return existing
    subscription = Subscription(school_id=school.id, **values)
    session.add(subscription)
    session.flush()
    return subscription


def list_subscriptions(session: Session, school_id: int) -> list[Subscription]:
    return list(
        session.scalars(select(Subscription).where(Subscription.school_id == school_id).order_by(Subscription.id))
    )


def unsubscribe(session: Session, school_id: int, subscription_id: int) -> None:
    subscription = session.get(Subscription, subscription_id)
    if subscription is None or subscription.school_id != school_id:
        raise NotFound(N_("There is no subscription %(id)s."), id=subscription_id)
    session.delete(subscription)
    session.flush()


def describe_subscription(subscription: Subscription, session: Session) -> str:
    if subscription.kind == "course":
        return f"course {subscription.course_id}"
    if subscription.kind == "subject":
        return f"{subscription.subject} grades {subscription.grade_min}-{subscription.grade_max}"
    if subscription.kind == "textbook":
        return f"textbook {subscription.textbook_key}"
    famous = session.get(School, subscription.paired_school_id)
    return f"everything from {famous.name if famous else subscription.paired_school_id}"


# -- upstream: manifests -------------------------------------------------------------


def video_profiles(setting: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in setting.split(",") if p.strip())


def issue_manifest(
    session: Session,
    school: School,
    *,
    private_key: Ed25519PrivateKey,
    lifetime: int,
    now: datetime | None = None,
    profiles: Sequence[str] = mf.DEFAULT_VIDEO_PROFILES,
) -> bytes:
    """The signed index of everything `school` subscribes to (the caller commits).

    Its version goes up exactly when its content does, so a school server can
    refuse anything older than what it has seen, and a manifest fetched twice
    in a row is the same version. The course entries it lists by sha256 are
    fetched apart (:func:`course_entries`), only where the school lacks them.
    """
    now = now or utcnow()
    cursor = current_cursor(session)
    selected = mf.select_course_ids(session, list_subscriptions(session, school.id))
    lines = mf.ENTRY_CACHE.index(session, selected, profiles)
    digest = mf.index_digest(lines)
    state = session.get(ManifestState, school.id, with_for_update=True)
    if state is None:
        state = ManifestState(school_id=school.id, version=1, digest=digest)
        session.add(state)
    elif state.digest != digest:
        state.version += 1
        state.digest = digest
    session.flush()
    payload = mf.index_payload(
        lines, subscriber=school, version=state.version, cursor=cursor, now=now, lifetime=lifetime
    )
    return mf.sign(payload, private_key)


MAX_ENTRIES = 500
"""Course entries per request: bounds one answer to some 15 MB before compression."""


def course_entries(
    session: Session,
    school: School,
    course_ids: Sequence[int],
    *,
    since: datetime | None = None,
    profiles: Sequence[str] = mf.DEFAULT_VIDEO_PROFILES,
) -> list[bytes]:
    """One JSON line per course of `course_ids` that `school` subscribes to: its entry, or a patch since `since`.

    ``{"id": 12, "entry": {…}}`` carries the whole entry (its canonical JSON is
    what the signed index's revision hashes); ``{"id": 12, "patch": {…}}`` only
    the lessons changed since `since`, for a school server holding the entry of
    that time (:func:`hub.sync.manifest.merge_patch`). A course not selected is
    left out: the school server reports it and asks again next time.
    """
    if len(course_ids) > MAX_ENTRIES:
        raise Invalid(
            N_("Ask for at most %(most)d course entries at a time."), {"courses": N_("too many")}, most=MAX_ENTRIES
        )
    selected = set(mf.select_course_ids(session, list_subscriptions(session, school.id)))
    wanted = sorted({cid for cid in course_ids if cid in selected})
    if since is None:
        bodies = mf.ENTRY_CACHE.entries(session, wanted, profiles)
        return [b'{"entry":' + bodies[cid] + b',"id":%d}' % cid for cid in wanted if cid in bodies]
    patches = mf.ENTRY_CACHE.patches(session, wanted, since, profiles)
    return [b'{"id":%d,"patch":' % cid + patches[cid] + b"}" for cid in wanted if cid in patches]


def readable_blobs(session: Session, actor: User | None, shas: Sequence[str]) -> list[Blob]:
    """The blobs `shas` names, in order, each used by a course `actor` may see; NotFound names the first that is not.

    The set-wise form of hub.media.services.get_readable_blob, for a batch of hundreds.
    """
    from hub.catalog.services import visible_clause

    wanted = list(dict.fromkeys(shas))
    via_renditions = (
        select(Rendition.blob_sha256)
        .join(Material, Material.id == Rendition.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .where(Rendition.blob_sha256.in_(wanted), visible_clause(actor))
    )
    via_originals = (
        select(Material.original_sha256)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .where(Material.original_sha256.in_(wanted), visible_clause(actor))
    )
    from hub.subtitles.services import readable_subtitle_blobs

    visible = {sha for sha in session.scalars(via_renditions) if sha} | set(session.scalars(via_originals))
    visible |= readable_subtitle_blobs(session, actor, wanted)
    rows = {b.sha256: b for b in session.scalars(select(Blob).where(Blob.sha256.in_(visible)))} if visible else {}
    missing = next((sha for sha in wanted if sha not in rows), None)
    if missing is not None:
        raise NotFound(N_("There is no such file (%(file)s)."), file=f"{missing[:12]}…")
    return [rows[sha] for sha in wanted]


# -- school server: state ------------------------------------------------------------


def mirror_state(session: Session) -> MirrorState:
    state = session.get(MirrorState, 1)
    if state is None:
        state = MirrorState(id=1, cursor=0, manifest_version=0, applied_version=0, envelope="")
        session.add(state)
        session.flush()
    return state


def accept_manifest(
    session: Session, envelope: bytes, public_key: Ed25519PublicKey, *, now: datetime | None = None
) -> mf.Index:
    """Verify `envelope` (a signed index) against the mirror's state and remember it (the caller commits).

    Raises ManifestRefused, leaving the state as it was, for an unsigned, wrongly
    signed, invalid, older or expired manifest.
    """
    state = mirror_state(session)
    index = mf.verify(envelope, public_key, not_older_than=state.manifest_version or None, now=now or utcnow())
    if index.version > state.manifest_version or not state.envelope:
        state.manifest_version = index.version
        state.envelope = envelope.decode()
    state.cursor = max(state.cursor, index.cursor)
    session.flush()
    return index


def accept_document(
    session: Session, document: bytes, public_key: Ed25519PublicKey, *, now: datetime | None = None
) -> mf.Manifest:
    """accept_manifest for a whole manifest document (a bundle's): its index and every entry checked."""
    state = mirror_state(session)
    manifest, envelope = mf.verify_document(
        document, public_key, not_older_than=state.manifest_version or None, now=now or utcnow()
    )
    accept_manifest(session, envelope, public_key, now=now)
    return manifest


def stored_manifest(session: Session, public_key: Ed25519PublicKey) -> tuple[mf.Index, bytes] | None:
    """The last accepted index (re-verified, expiry aside) and its envelope, or None before the first sync."""
    state = session.get(MirrorState, 1)
    if state is None or not state.envelope:
        return None
    envelope = state.envelope.encode()
    # Expiry does not matter for what was already applied: only the signature is checked again.
    index = mf.verify(envelope, public_key, not_older_than=None, now=datetime.min.replace(tzinfo=UTC))
    return index, envelope


def entries_needed(session: Session, index: mf.Index) -> list[mf.IndexCourse]:
    """The courses of `index` whose entry this school server does not hold at that revision."""
    held = {cid: revision for cid, revision in session.execute(select(MirrorCourse.upstream_id, MirrorCourse.revision))}
    return [c for c in index.courses if held.get(c.id) != c.revision]


def held_entries(session: Session, course_ids: Sequence[int]) -> dict[int, tuple[bytes, datetime | None]]:
    """The entries this school server holds (as applied) and the upstream time they are of."""
    rows = session.execute(
        select(MirrorCourse.upstream_id, MirrorCourse.entry, MirrorCourse.issued_at).where(
            MirrorCourse.upstream_id.in_(list(course_ids)), MirrorCourse.entry != ""
        )
    )
    return {cid: (entry.encode(), issued) for cid, entry, issued in rows}


@dataclass
class Plan:
    """What a verified manifest asks of this school server."""

    apply: list[mf.ManifestCourse]  # new or changed courses
    remove: list[int]  # upstream ids no longer listed
    missing: dict[str, mf.ManifestFile]  # blobs to fetch, by sha256
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # human-readable: what did not fit
    skipped_titles: list[str] = field(default_factory=list)  # the titles of those courses


def plan(session: Session, storage: Storage, manifest: mf.Manifest) -> Plan:
    """Courses to apply or remove and the blobs missing for them: a set difference."""
    mirrored = {m.upstream_id: m for m in session.scalars(select(MirrorCourse))}
    listed = {c.id for c in manifest.index.courses}
    to_apply = [c for c in manifest.courses if c.id not in mirrored or mirrored[c.id].revision != c.revision]
    current = sum(1 for c in manifest.index.courses if c.id in mirrored and mirrored[c.id].revision == c.revision)
    missing: dict[str, mf.ManifestFile] = {}
    for course in to_apply:
        for sha, file in course.files().items():
            if sha not in missing and not storage.exists(sha):
                missing[sha] = file
    return Plan(apply=to_apply, remove=sorted(set(mirrored) - listed), missing=missing, unchanged=current)


def fit_budget(session: Session, storage: Storage, work: Plan, room: int | None) -> Plan:
    """Keep the courses whose missing blobs fit in `room` bytes (None: no limit), in manifest order.

    A course is all or nothing: half its videos would be of no use to a teacher.
    """
    if room is None:
        return work
    kept: list[mf.ManifestCourse] = []
    missing: dict[str, mf.ManifestFile] = {}
    skipped: list[str] = []
    skipped_titles: list[str] = []
    used = 0
    for course in work.apply:
        extra = {sha: f for sha, f in course.files().items() if sha in work.missing and sha not in missing}
        need = sum(f.size for f in extra.values())
        if used + need > room:
            skipped.append(
                Text(
                    N_("course %(id)s '%(title)s' (%(need)s more than the %(left)s left)"),
                    id=course.id,
                    title=course.title,
                    need=_size(need),
                    left=_size(room - used),
                )
            )
            skipped_titles.append(course.title)
            continue
        used += need
        missing.update(extra)
        kept.append(course)
    return Plan(
        apply=kept,
        remove=work.remove,
        missing=missing,
        unchanged=work.unchanged,
        skipped=skipped,
        skipped_titles=skipped_titles,
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _mirrored_blobs() -> CompoundSelect[str | None]:
    renditions = (
        select(Rendition.blob_sha256)
        .join(Material, Material.id == Rendition.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(MirrorCourse, MirrorCourse.course_id == Lesson.course_id)
        .where(Rendition.blob_sha256.is_not(None))
    )
    subtitles = (
        select(Subtitle.blob_sha256)
        .join(Material, Material.id == Subtitle.material_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(MirrorCourse, MirrorCourse.course_id == Lesson.course_id)
    )
    return renditions.union(subtitles)  # UNION: each blob once


def mirrored_blobs(session: Session) -> set[str]:
    """The blobs the mirrored courses use."""
    return {sha for sha in session.scalars(_mirrored_blobs()) if sha}


def mirrored_bytes(session: Session) -> int:
    """Bytes of the blobs the mirrored courses use (what counts against the storage budget)."""
    used = _mirrored_blobs()
    return int(session.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.sha256.in_(used))) or 0)


class BlobMismatch(HubError):
    """Bytes that are not what the manifest says: never kept."""

    code = "blob_mismatch"


def _mismatch(expected: mf.ManifestFile, sha256: str, size: int) -> BlobMismatch:
    return BlobMismatch(
        N_("A file that should be %(file)s (%(size)d bytes) hashed to %(got)s (%(got_size)d bytes): refused."),
        file=f"{expected.sha256[:12]}…",
        size=expected.size,
        got=f"{sha256[:12]}…",
        got_size=size,
    )


def store_verified(storage: Storage, fileobj: IO[bytes], expected: mf.ManifestFile) -> None:
    """Store bytes only if they hash to `expected`; otherwise nothing new stays in storage."""
    stored = storage.store(fileobj)
    if stored.sha256 != expected.sha256 or stored.size != expected.size:
        if stored.created:
            storage.delete(stored.sha256)
        raise _mismatch(expected, stored.sha256, stored.size)


def add_verified(batch: BlobBatch, fileobj: IO[bytes], expected: mf.ManifestFile) -> None:
    """store_verified into a storage batch: bytes that do not hash to `expected` are not kept."""
    stored = batch.add(fileobj)
    if stored.sha256 != expected.sha256 or stored.size != expected.size:
        if stored.created:
            batch.discard(stored.sha256)
        raise _mismatch(expected, stored.sha256, stored.size)


def apply_course(
    session: Session,
    storage: Storage,
    entry: mf.ManifestCourse,
    *,
    body: bytes,
    issued_at: datetime,
    present: set[str] | None = None,
    reindex: bool = True,
) -> Course:
    """Make the local copy of one upstream course exactly `entry`, in the caller's transaction.

    `body` is the entry's canonical bytes and `issued_at` the upstream time of the
    manifest it came with: kept, so a later pull fetches only what changed since.

    Refuses (Conflict) while any blob it lists is missing from storage; `present`
    names blobs the caller has just seen in storage, so they are not looked up
    again. The caller commits: the old version stays visible until that commit.
    With `reindex` False the caller queues the search-index update
    (`reindex_courses`) in the same transaction.
    """
    absent = [sha for sha in entry.files() if not (present is not None and sha in present) and not storage.exists(sha)]
    if absent:
        raise Conflict(
            N_("Course %(id)s still lacks %(files)d files; it is not applied."), id=entry.id, files=len(absent)
        )
    school = _local_school(session, entry.school)
    link = session.get(MirrorCourse, entry.id)
    course = session.get(Course, link.course_id) if link is not None else None
    if course is None:
        course = Course(school_id=school.id, status="published")
        session.add(course)
    course.school_id = school.id
    course.status = "published"
    for name in ("title", "summary", "category", "subject", "edition", "volume", "language", "license", "teacher"):
        setattr(course, name, getattr(entry, name))
    course.grades = list(entry.grades)
    course.version = entry.version
    course.published_at = entry.published_at or utcnow()
    # Before the lessons' nodes are looked up: the book may be created from the entry.
    course.textbook_id = _local_textbook(session, entry)
    session.flush()
    # Set-based from here: a course of 20 lessons is ~200 rows, and ORM objects for them
    # cost most of a first sync (22,404 objects for 100 courses: 27 s of 67 s profiled).
    # The old lessons go in the same transaction as the new come: a whole replacement.
    _delete_lessons(session, course.id)
    files = {m.original.sha256: m.original for lesson in entry.lessons for m in lesson.materials}
    files.update(entry.files())
    known = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(list(files)))))
    now = utcnow()
    new_blobs = [
        {"sha256": sha, "size": f.size, "media_type": f.media_type, "created_at": now}
        for sha, f in files.items()
        if sha not in known
    ]
    if new_blobs:
        session.execute(insert(_table(Blob)), new_blobs)
    stamps = {"created_at": now, "updated_at": now}
    nodes = _local_nodes(session, entry)
    lesson_ids = _insert_returning_ids(
        session,
        Lesson,
        [
            {
                "course_id": course.id,
                "position": i.position,
                "title": i.title,
                "summary": i.summary,
                "unit": i.unit,
                "textbook_node_id": nodes.get((i.textbook, i.node)),
            }
            | stamps
            for i in entry.lessons
        ],
    )
    materials = [
        (lesson_id, m) for lesson_id, item in zip(lesson_ids, entry.lessons, strict=True) for m in item.materials
    ]
    material_ids = _insert_returning_ids(
        session,
        Material,
        [
            {
                "lesson_id": lesson_id,
                "kind": m.kind,
                "title": m.title,
                "filename": m.filename,
                "original_sha256": m.original.sha256,
                "status": "ready" if m.renditions else m.status,
                "progress": 100 if m.renditions else 0,
                "error": "",
            }
            | stamps
            for lesson_id, m in materials
        ],
    )
    # Chapters after the insert, which matches rows by their values (a JSON list is no key);
    # only slides videos have them.
    for material_id, (_lesson_id, m) in zip(material_ids, materials, strict=True):
        if m.chapters:
            table = _table(Material)
            session.execute(update(table).where(table.c.id == material_id).values(chapters=m.chapters))
    renditions = [
        {
            "material_id": material_id,
            "profile": r.profile,
            "status": "ready",
            "blob_sha256": r.sha256,
            "bytes": r.size,
            "kbps": r.kbps,
            "width": r.width,
            "height": r.height,
            "duration": r.duration,
            "ssim": r.ssim,
            "progress": 100,
            "error": "",
        }
        | stamps
        for material_id, (_lesson_id, m) in zip(material_ids, materials, strict=True)
        for r in m.renditions
    ]
    if renditions:
        session.execute(insert(_table(Rendition)), renditions)
    subtitles = [
        {
            "material_id": material_id,
            "language": t.language,
            "label": t.label,
            "blob_sha256": t.sha256,
            "cues": t.cues,
            "transcript": _transcript(storage, t.sha256),
        }
        | stamps
        for material_id, (_lesson_id, m) in zip(material_ids, materials, strict=True)
        for t in m.subtitles
    ]
    if subtitles:
        session.execute(insert(_table(Subtitle)), subtitles)
    session.expire(course, ["lessons"])
    session.flush()
    if link is None:
        link = MirrorCourse(upstream_id=entry.id, course_id=course.id)
        session.add(link)
    link.course_id, link.version, link.revision, link.applied_at = course.id, entry.version, entry.revision, utcnow()
    link.entry, link.issued_at = body.decode(), issued_at
    session.flush()
    if reindex:
        reindex_courses(session, [course.id])
    return course


def _local_nodes(session: Session, entry: mf.ManifestCourse) -> dict[tuple[str, str], int]:
    """This server's node ids for the (textbook key, node key) alignments of `entry`'s lessons.

    A book this server does not hold leaves its lessons unaligned here; the entry keeps the keys.
    """
    from hub.textbooks.models import Textbook, TextbookNode

    books = {lesson.textbook for lesson in entry.lessons if lesson.textbook}
    if not books:
        return {}
    rows = session.execute(
        select(TextbookNode.id, Textbook.key, TextbookNode.key)
        .join(Textbook, Textbook.id == TextbookNode.textbook_id)
        .where(Textbook.key.in_(sorted(books)))
    )
    return {(book, node): node_id for node_id, book, node in rows}


def _local_textbook(session: Session, entry: mf.ManifestCourse) -> int | None:
    """The id of the entry's textbook on this server, created from the entry when it lacks it (or updated in place).

    The upstream's book is the reference: its tree is imported over the local one when they
    differ, unless that would drop nodes local lessons use (then the local book stays, and a
    lesson whose node it lacks stays unaligned).
    """
    from hub.textbooks import services as textbooks
    from hub.textbooks.files import parse_data

    if entry.textbook is None:
        return None
    try:  # a refused import writes nothing (hub.textbooks.services.import_spec)
        return textbooks.import_textbook(session, parse_data(entry.textbook.model_dump(mode="json"))).id
    except HubError as exc:
        log.warning("textbook %s of course %s kept as it is here: %s", entry.textbook.key, entry.id, exc.message)
        local = textbooks.get_by_key(session, entry.textbook.key)
        return local.id if local is not None else None


def _transcript(storage: Storage, sha256: str) -> str:
    """The searchable transcript of a mirrored .vtt, read from the verified blob (the entry does not carry it).

    A track this release cannot read (another release's rules) still plays; it is only not searchable.
    """
    from hub.subtitles import webvtt

    try:
        return webvtt.normalise(b"".join(storage.open_range(sha256, 0, None))).transcript()
    except HubError:
        log.warning("mirrored subtitle %s is not readable here; it plays but is not searchable", sha256)
        return ""


def reindex_courses(session: Session, course_ids: Sequence[int]) -> None:
    """Queue the search-index update of applied courses, one task for all of them (the caller commits).

    The school's index is rebuilt from the mirrored catalog, never taken from upstream.
    """
    search_changes.reindex(session, course_ids)


def _delete_lessons(session: Session, course_id: int) -> None:
    """Delete a course's lessons, materials, renditions and subtitles with four statements, children first."""
    lessons = select(Lesson.id).where(Lesson.course_id == course_id).scalar_subquery()
    materials = select(Material.id).where(Material.lesson_id.in_(lessons)).scalar_subquery()
    options = {"synchronize_session": False}
    session.execute(delete(Subtitle).where(Subtitle.material_id.in_(materials)), execution_options=options)
    session.execute(delete(Rendition).where(Rendition.material_id.in_(materials)), execution_options=options)
    session.execute(delete(Material).where(Material.lesson_id.in_(lessons)), execution_options=options)
    session.execute(delete(Lesson).where(Lesson.course_id == course_id), execution_options=options)


def _insert_returning_ids(
    session: Session, model: type[Lesson] | type[Material], rows: list[dict[str, Any]]
) -> list[int]:
    """Insert `rows`; their new ids, in the order of `rows`.

    RETURNING gives no row order, and asking SQLAlchemy for one makes it send a
    statement per row on SQLite. So the rows come back with their own values and
    are matched on them: one statement whenever no two rows are alike (always, for
    lessons, which differ by position), a statement per row otherwise.
    """
    if not rows:
        return []
    names = [name for name in rows[0] if name not in ("created_at", "updated_at")]
    keys = [tuple(row[name] for name in names) for row in rows]
    table = _table(model)
    if len(set(keys)) < len(keys):
        result = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars())
    columns = [table.c[name] for name in names]
    returned = session.execute(insert(table).returning(table.c.id, *columns), rows)
    ids = {tuple(row[1:]): row[0] for row in returned}
    return [ids[key] for key in keys]


def _table(model: type[Any]) -> Table:
    """The model's table: Core inserts of plain rows, without the ORM's bulk machinery.

    The rows are dictionaries already and no ORM event is wanted for them; the ORM's
    bulk insert path cost about half of applying a course (0.6 s of 1.2 s profiled for
    100 courses), and it sent one INSERT per rendition when the None columns changed.
    """
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _local_school(session: Session, school: mf.ManifestSchool) -> School:
    local = session.scalar(select(School).where(School.name == school.name))
    if local is None:
        local = School(
            name=school.name,
            kind=school.kind,
            region=school.region,
            county=school.county,
            rural=school.kind == "rural",
        )
        session.add(local)
        session.flush()
    return local


def remove_course(session: Session, upstream_id: int) -> None:
    """Drop a mirrored course the upstream no longer lists (withdrawn or unsubscribed)."""
    link = session.get(MirrorCourse, upstream_id)
    if link is None:
        return
    course_id = link.course_id
    course = session.get(Course, course_id)
    session.delete(link)
    if course is not None:
        session.delete(course)
    session.flush()
    search_changes.reindex(session, [course_id])


def mirrored_courses(session: Session) -> dict[int, MirrorCourse]:
    return {m.upstream_id: m for m in session.scalars(select(MirrorCourse))}


# -- school server: run log ----------------------------------------------------------


def start_run(session: Session, source: str) -> SyncRun:
    run = SyncRun(source=source, status="running")
    session.add(run)
    session.flush()
    return run


def finish_run(
    session: Session, run: SyncRun, status: str, message: str = "", skipped: Sequence[str] | None = None
) -> None:
    """Close a run: its English text for logs and old readers, its wording for each reader's language.

    `skipped` None leaves the run's skip lines as they are (a run closed for its dead process).
    """
    run.status = status
    # The English column is the technician's: a network reason carries the socket's own words.
    run.message = english(message)[:4000]
    if skipped is not None:
        run.skipped = "\n".join(english(line) for line in skipped)
    run.wording = wording.kept(message, skipped)
    run.finished_at = utcnow()
    session.flush()


def recent_runs(session: Session, limit: int = 20) -> list[SyncRun]:
    return list(session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)))


def close_abandoned_runs(session: Session) -> int:
    """Runs left "running" by a killed process: marked failed so the log tells the truth."""
    rows = list(session.scalars(select(SyncRun).where(SyncRun.status == "running")))
    for run in rows:
        finish_run(
            session,
            run,
            "failed",
            run.message or Text(N_("interrupted (the process stopped before it finished)")),
        )
    return len(rows)
