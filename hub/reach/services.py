"""Counting what the lessons reach: plays, downloads and course ZIPs per lesson, material, school and day.

One service per thing counted, shared by the blob route, the course ZIP, the play
beacon and the school servers' reports:

- :func:`record_download`: a completed download of a material's file (original or
  rendition), attributed to the material the URL names (``?m=``) when it uses that
  file, else to the lowest-numbered published material that does (one video in two
  lessons is told apart by the URL the lesson page writes; an API client that sends
  no ``m`` gets the first use);
- :func:`record_zip`: a completed course ZIP (lesson and material 0);
- :func:`record_play`: a play reported by the lesson page's beacon (the player
  reached 10 s or a quarter of the media), once per device, material and day;
- :func:`record_media_request`: the no-JavaScript fallback, the first media request
  of a material from a device on a day counts as its play.

Only published courses count: an uploader previewing a draft reaches nobody.

On a school server (mirror mode) the rows are written in the upstream's ids
(course, lesson, material and the school itself), with source ``lan``: a
mirrored course's local lessons and materials are deleted and inserted again
each time it changes upstream, so a local id would point at nothing a week
later, and the report upstream (hub.sync.counts) then carries the rows as they
are. Courses a school server holds of its own have no upstream id and are not
counted there.

Devices: the de-duplication keeps an HMAC of the device's id under this hub's
secret and the day (:class:`hub.reach.models.PlaySeen`), pruned after a day; it
never leaves the server that counted, and nothing about a person is written in
:class:`hub.reach.models.UsageCount`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import Integer, case, cast, delete, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub.catalog.models import Course, Lesson, Material
from hub.db import Database, get_database, utcnow
from hub.media.models import Rendition
from hub.reach.models import PlaySeen, UsageCount

log = logging.getLogger(__name__)

PLAYABLE = ("video", "audio")
"""Material kinds that have a player, hence plays."""

PLAYER_COOKIE = "hub_player"
"""Set by player.js on /api/v1/blobs only: this browser's media requests are the beacon's to count, not the fallback's.

(Scoped to the blob path so that no page request carries it: pages stay cacheable.)
A browser that ran player.js once and has JavaScript off later is not counted by
the fallback until the cookie expires (30 days): rare, and undercounting is the
safe side."""

NOT_A_DOWNLOAD = ("poster",)
"""Renditions shown beside a material, never fetched for themselves: their requests count nothing."""


@dataclass(frozen=True)
class Attribution:
    """What one use is counted against, in the upstream's ids (0: none, as for a course ZIP's lesson)."""

    course_id: int
    lesson_id: int = 0
    material_id: int = 0


UsageKey = tuple[date, int, int, int, str]
"""(day, course, lesson, material, kind): a row of usage_count without its school and source."""


@dataclass(frozen=True)
class Counting:
    """Where and for whom this hub counts, taken from the app and the request before the answer is sent.

    Plain values only: the counting itself may run after the response, in another
    thread (the server's I/O loop hands a finished download over), without the app
    or the request.
    """

    database: Database
    mirror: bool  # a school server: upstream ids, source "lan", its own school
    secret: str
    school_id: int  # the signed-in reader's school on this hub, 0 when anonymous

    @classmethod
    def for_app(cls, app: Flask, school_id: int | None) -> Counting:
        settings = app.extensions["hub.settings"]
        return cls(get_database(app), bool(settings.upstream_url), settings.secret_key, school_id or 0)

    @property
    def source(self) -> str:
        return "lan" if self.mirror else "hub"


# -- what a use is counted against --------------------------------------------------------


def material_attribution(session: Session, material_id: int, *, mirror: bool) -> Attribution | None:
    """The (course, lesson, material) a use of `material_id` counts against; None when it does not count."""
    row = session.execute(
        select(Material.lesson_id, Lesson.course_id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .where(Material.id == material_id, Course.status == "published")
    ).first()
    if row is None:
        return None
    if not mirror:
        return Attribution(row.course_id, row.lesson_id, material_id)
    return _upstream_material(session, row.course_id, row.lesson_id, material_id)


def course_attribution(session: Session, course_id: int, *, mirror: bool) -> Attribution | None:
    published = session.scalar(select(Course.id).where(Course.id == course_id, Course.status == "published"))
    if published is None:
        return None
    if not mirror:
        return Attribution(course_id)
    upstream = _mirror_link(session, course_id)
    return Attribution(upstream[0]) if upstream is not None else None


def blob_material(session: Session, sha256: str, hint: int | None) -> int | None:
    """The material a request of blob `sha256` is for: `hint` (``?m=``) when it uses the blob, else the first that does.

    Only materials of published courses, and only their originals and renditions
    other than posters (a poster, or a subtitle track, is no download of its own).
    """
    candidates = list(
        session.scalars(
            select(Material.id)
            .join(Lesson, Lesson.id == Material.lesson_id)
            .join(Course, Course.id == Lesson.course_id)
            .outerjoin(
                Rendition,
                (Rendition.material_id == Material.id)
                & (Rendition.blob_sha256 == sha256)
                & Rendition.profile.not_in(NOT_A_DOWNLOAD),
            )
            .where(
                or_(Material.original_sha256 == sha256, Rendition.id.is_not(None)),
                Course.status == "published",
            )
            .order_by(Material.id)
            .distinct()
        )
    )
    if not candidates:
        return None
    return hint if hint in candidates else candidates[0]


# Parsed mirrored entries by revision (the sha256 of the entry: new text, new key).
_ENTRIES: dict[str, dict[int, tuple[int, list[tuple[tuple[str, str, str, str], int]]]]] = {}
_ENTRIES_LOCK = threading.Lock()
_ENTRIES_MAX = 256


def _mirror_link(session: Session, course_id: int) -> tuple[int, str, str] | None:
    from hub.sync.models import MirrorCourse

    row = session.execute(
        select(MirrorCourse.upstream_id, MirrorCourse.revision, MirrorCourse.entry).where(
            MirrorCourse.course_id == course_id
        )
    ).first()
    return (row.upstream_id, row.revision, row.entry) if row is not None else None


def _material_key(kind: str, title: str, filename: str, sha256: str) -> tuple[str, str, str, str]:
    return (kind, title, filename or "", sha256)


def _entry_lessons(revision: str, entry: str) -> dict[int, tuple[int, list[tuple[tuple[str, str, str, str], int]]]]:
    """A mirrored entry's lessons by position: (upstream lesson id, [(material key, upstream material id)])."""
    with _ENTRIES_LOCK:
        found = _ENTRIES.get(revision)
    if found is not None:
        return found
    data: dict[str, Any] = json.loads(entry) if entry else {}
    found = {}
    for lesson in data.get("lessons", []):
        materials = [
            (_material_key(m["kind"], m["title"], m.get("filename", ""), m["original"]["sha256"]), int(m["id"]))
            for m in lesson.get("materials", [])
        ]
        found[int(lesson["position"])] = (int(lesson["id"]), materials)
    with _ENTRIES_LOCK:
        if len(_ENTRIES) >= _ENTRIES_MAX:
            _ENTRIES.clear()
        _ENTRIES[revision] = found
    return found


def _upstream_material(session: Session, course_id: int, lesson_id: int, material_id: int) -> Attribution | None:
    """A mirrored material's upstream ids, from the course's entry as applied (hub.sync.services.apply_course).

    The lesson is the entry's lesson at the same position (positions differ within a
    course); the material the entry's one with the same kind, title, file name and
    original, the n-th of such twins as the local one is the n-th (both are in id order).
    """
    link = _mirror_link(session, course_id)
    if link is None:
        return None  # this school server's own course: the upstream has no id for it
    upstream_course, revision, entry = link
    position = session.scalar(select(Lesson.position).where(Lesson.id == lesson_id))
    lessons = _entry_lessons(revision, entry)
    if position is None or position not in lessons:
        return None
    upstream_lesson, materials = lessons[position]
    local = session.execute(
        select(Material.id, Material.kind, Material.title, Material.filename, Material.original_sha256)
        .where(Material.lesson_id == lesson_id)
        .order_by(Material.id)
    ).all()
    keys = {row.id: _material_key(row.kind, row.title, row.filename, row.original_sha256) for row in local}
    key = keys.get(material_id)
    twins = [mid for mid, k in keys.items() if k == key]
    upstream_twins = [upstream_id for k, upstream_id in materials if k == key]
    index = twins.index(material_id) if material_id in twins else len(upstream_twins)
    if index >= len(upstream_twins):
        return None
    return Attribution(upstream_course, upstream_lesson, upstream_twins[index])


# On a school server, its own school as the upstream knows it, by manifest version.
_SUBSCRIBER: dict[int, int] = {}


def counting_school(session: Session, counting: Counting) -> int:
    """The school a use is counted for: the reader's on the upstream, the school server's own on its LAN.

    A school server's LAN users are its school, whoever signs in there; its id is the
    upstream's (the subscriber of the manifest it holds), so its rows read the same
    there as here. 0 before its first sync.
    """
    if not counting.mirror:
        return counting.school_id
    from hub.sync.models import MirrorState

    state = session.get(MirrorState, 1)
    if state is None or not state.envelope:
        return 0
    cached = _SUBSCRIBER.get(state.manifest_version)
    if cached is not None:
        return cached
    # Verified when it was accepted (hub.sync.services.accept_manifest); here only read.
    try:
        payload = json.loads(state.envelope.split("\n", 1)[1])
        school_id = int(payload["subscriber"]["id"])
    except (IndexError, KeyError, TypeError, ValueError):
        return 0
    _SUBSCRIBER[state.manifest_version] = school_id
    return school_id


# -- writing counts -----------------------------------------------------------------------


def add_usage(
    session: Session, rows: Mapping[UsageKey, int], *, school_id: int, source: str, cap: int | None = None
) -> int:
    """Add `rows` to usage_count for `school_id` and `source` with one upsert; returns what it added.

    With `cap`, no row goes past it (the bound on a school server's report): the
    excess is left out, in the statement itself so that a concurrent writer never
    lifts a row past it either. The caller commits.
    """
    rows = {key: count for key, count in rows.items() if count > 0}
    if not rows:
        return 0
    added = sum(rows.values())
    if cap is not None:
        existing = _existing(session, rows, school_id, source)
        rows = {key: min(count, max(0, cap - existing.get(key, 0))) for key, count in rows.items()}
        rows = {key: count for key, count in rows.items() if count}
        added = sum(rows.values())
        if not rows:
            return 0
    values = [
        {
            "day": day,
            "school_id": school_id,
            "course_id": course,
            "lesson_id": lesson,
            "material_id": material,
            "kind": kind,
            "source": source,
            "count": count,
        }
        for (day, course, lesson, material, kind), count in rows.items()
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(UsageCount) if dialect == "postgresql" else sqlite.insert(UsageCount)
    current, incoming = UsageCount.count, insert.excluded["count"]
    new_count: Any = current + incoming
    if cap is not None:
        limit = cast(literal(cap), Integer)
        new_count = case((current >= limit, current), (current + incoming > limit, limit), else_=current + incoming)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["day", "school_id", "course_id", "lesson_id", "material_id", "kind", "source"],
            set_={"count": new_count},
        ),
        values,
    )
    return added


def _existing(session: Session, rows: Mapping[UsageKey, int], school_id: int, source: str) -> dict[UsageKey, int]:
    days = {key[0] for key in rows}
    courses = {key[1] for key in rows}
    found = session.execute(
        select(
            UsageCount.day,
            UsageCount.course_id,
            UsageCount.lesson_id,
            UsageCount.material_id,
            UsageCount.kind,
            UsageCount.count,
        ).where(
            UsageCount.school_id == school_id,
            UsageCount.source == source,
            UsageCount.day.in_(days),
            UsageCount.course_id.in_(courses),
        )
    )
    return {(day, course, lesson, material, kind): count for day, course, lesson, material, kind, count in found}


def _mark(session: Session, day: date) -> None:
    """Have the roll-up (hub.reach.rollup) re-make `day`, unless it is marked already.

    Marking every use would queue a roll-up task per play; once per day until a
    roll-up claims it is enough. A use that commits just after a roll-up read the
    day (it found the mark still there) is picked up by the next mark or by the
    roll-up's safety run, which re-reads recent days whose totals changed.
    """
    from hub.reach.models import PendingDay
    from hub.reach.rollup import mark_days

    if session.get(PendingDay, day) is None:
        mark_days(session, [day])


def _record(counting: Counting, kind: str, find: Any, day: date | None) -> bool:
    """Count one use in its own short transaction; `find(session)` says what it counts against (None: nothing)."""
    day = day or utcnow().date()
    with counting.database.session() as session:
        attribution: Attribution | None = find(session)
        if attribution is None:
            return False
        key = (day, attribution.course_id, attribution.lesson_id, attribution.material_id, kind)
        add_usage(session, {key: 1}, school_id=counting_school(session, counting), source=counting.source)
        _mark(session, day)
        session.commit()
        return True


def record_download(counting: Counting, sha256: str, hint: int | None = None, *, day: date | None = None) -> bool:
    """A completed download of blob `sha256`, for the material `hint` names (see :func:`blob_material`)."""

    def find(session: Session) -> Attribution | None:
        material_id = blob_material(session, sha256, hint)
        return None if material_id is None else material_attribution(session, material_id, mirror=counting.mirror)

    return _record(counting, "download", find, day)


def record_zip(counting: Counting, course_id: int, *, day: date | None = None) -> bool:
    """A completed course ZIP."""
    return _record(counting, "zip", lambda session: course_attribution(session, course_id, mirror=counting.mirror), day)


def device_key(secret: str, device: str, day: date) -> str:
    """What the de-duplication keeps of a device: an HMAC under this hub's secret and the day (see PlaySeen)."""
    message = f"{day.isoformat()}\n{device}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def first_play_today(session: Session, device: str, material_id: int, day: date) -> bool:
    """Note that `device` (a :func:`device_key`) played `material_id` on `day`; False when it was noted before.

    Prunes the days before yesterday as it goes (yesterday stays: a play that
    straddles midnight UTC is still de-duplicated against it).
    """
    session.execute(delete(PlaySeen).where(PlaySeen.day < day - timedelta(days=1)))
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(PlaySeen) if dialect == "postgresql" else sqlite.insert(PlaySeen)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
    noted = session.execute(
        insert.values(day=day, device=device, material_id=material_id)
        .on_conflict_do_nothing()
        .returning(PlaySeen.material_id)
    ).first()
    return noted is not None


def _play(counting: Counting, material_id: int, device: str, day: date | None) -> bool:
    day = day or utcnow().date()
    with counting.database.session() as session:
        kind = session.scalar(select(Material.kind).where(Material.id == material_id))
        attribution = material_attribution(session, material_id, mirror=counting.mirror) if kind in PLAYABLE else None
        if attribution is None:
            return False
        if not first_play_today(session, device_key(counting.secret, device, day), material_id, day):
            session.commit()  # the pruning
            return False
        key = (day, attribution.course_id, attribution.lesson_id, attribution.material_id, "play")
        add_usage(session, {key: 1}, school_id=counting_school(session, counting), source=counting.source)
        _mark(session, day)
        session.commit()
        return True


def playable(session: Session, material_id: int) -> bool:
    """Whether a play of `material_id` can be counted: a video or audio of a published course."""
    found = session.scalar(
        select(Material.id)
        .join(Lesson, Lesson.id == Material.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .where(Material.id == material_id, Material.kind.in_(PLAYABLE), Course.status == "published")
    )
    return found is not None


def record_play(counting: Counting, material_id: int, device: str, *, day: date | None = None) -> bool:
    """A play the lesson page reported for `device` (its random id); True when it counted (first today)."""
    return _play(counting, material_id, "beacon\n" + device, day)


def record_media_request(
    counting: Counting, sha256: str, hint: int | None, device: str, *, day: date | None = None
) -> bool:
    """The no-JavaScript play: the first request of a material's media from `device` today counts as its play.

    `device` is what the request says of the device (its address and browser): a
    range request for the same media from it later that day finds it noted.
    """
    with counting.database.session() as session:
        material_id = blob_material(session, sha256, hint)
    if material_id is None:
        return False
    return _play(counting, material_id, "media\n" + device, day)


def safely(what: str, count: Any, *args: Any) -> None:
    """Run a counting service without ever breaking the answer it rides on: a failure is logged."""
    try:
        count(*args)
    except Exception:
        log.exception("could not count a %s", what)
