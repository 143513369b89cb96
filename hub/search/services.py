"""Search use cases, shared by the JSON API, the HTML page, the CLI and the worker.

The index never decides what a reader may see: it only holds published
courses, and every hit is hydrated from the database through the catalog's
visibility rule before it is shown, so a course withdrawn a second ago (its
index update still queued) is already gone from results.
"""

from __future__ import annotations

import gc
import logging
import pickle
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import pagecache
from hub.accounts.models import School, User
from hub.catalog.models import Course, Lesson, Material
from hub.catalog.services import visible_clause
from hub.i18n import N_
from hub.media.models import Rendition
from hub.search import SearchEngine, analysis, replica
from hub.search.changes import SearchReplica
from hub.search.documents import Document, course_documents, digests, load_courses
from hub.search.index import IndexBusy, IndexState, IndexUnavailable
from hub.search.query import RawHit, RawResults, SearchParams, highlight
from hub.subtitles.models import Subtitle
from hub.subtitles.webvtt import parse_transcript

__all__ = [
    "CheckReport",
    "IndexBusy",
    "RebuildReport",
    "SearchHit",
    "SearchPage",
    "Suggestion",
    "catch_up",
    "check",
    "index_course",
    "rebuild",
    "search",
    "suggest",
]

log = logging.getLogger(__name__)

# How long `hub search rebuild` waits for a worker's update to finish.
REBUILD_LOCK_WAIT = 60.0


@dataclass(frozen=True)
class RebuildReport:
    documents: int
    seconds: float


def index_course(session: Session, engine: SearchEngine, course_id: int) -> None:
    """Bring the index in line with the course as it is now (reindex it, or remove it), and with the change log.

    Raises :class:`IndexBusy` while another process writes (the task retries).
    A missing or outdated index is rebuilt whole, which includes this course.
    """
    catch_up(session, engine, [course_id])


def index_courses(session: Session, engine: SearchEngine, course_ids: Sequence[int], wait: float = 0.0) -> None:
    """:func:`index_course` for many courses: one writer lock, one commit per batch.

    A school server's pull calls it for what it applied, so the courses are searchable
    when the pull ends without a worker. Raises :class:`IndexBusy` when another process
    holds the writer past ``wait`` seconds.
    """
    catch_up(session, engine, course_ids, wait=wait)


_last_prune = 0.0


def catch_up(session: Session, engine: SearchEngine, course_ids: Sequence[int] = (), wait: float = 0.0) -> int:
    """Apply the change log (:mod:`hub.search.changes`) to this process's index, from its cursor.

    What the worker's index task does on one machine, and what each web node's
    follower does every ``HUB_SEARCH_FOLLOW_MS`` with ``HUB_SEARCH_REPLICA=on``.
    ``course_ids`` are applied too (a task sent before the log existed). Returns
    how many courses were indexed; :class:`IndexBusy` when another process writes.
    """
    global _last_prune
    settings = session.info["hub.app"].extensions["hub.settings"] if "hub.app" in session.info else None
    keep_days = settings.search_changes_days if settings is not None else 7
    index = engine.index
    applied = 0
    with index.writer_lock(wait=wait):
        state = index.state()
        now = time.time()
        cursor = replica.read_cursor(index, state.generation) if state.ok else replica.Cursor()
        if not state.ok or replica.behind_the_log(cursor, keep_days, now):
            log.warning("search index %s: rebuilding it whole", state.status if not state.ok else "behind the log")
            count = _rebuild_locked(session, engine)
            _report(session, engine, count)
            return count
        extra = set(course_ids)
        while True:
            pending = replica.poll(session, cursor, now)
            courses = pending.courses | extra
            extra = set()
            if courses:
                documents: dict[int, list[Document]] = {course_id: [] for course_id in courses}  # unpublished: it goes
                for source in load_courses(session, sorted(courses)):
                    documents[source.id] = course_documents(source)
                index.update_courses(documents)
                applied += len(courses)
                # Search pages cached before this update are stale now (hub.pagecache).
                pagecache.bump(session.get_bind())
            if courses or pending.cursor.gaps != cursor.gaps or now - cursor.synced_at > replica.HEARTBEAT:
                replica.write_cursor(index, state.generation, pending.cursor)
                session.rollback()  # the next poll reads what has committed since
                _report(session, engine)
            cursor = pending.cursor
            if not pending.more:
                break
            now = time.time()
    if time.monotonic() - _last_prune > 3600:
        _last_prune = time.monotonic()
        if removed := replica.prune(session, keep_days):
            log.info("search change log: %d changes older than %d days removed", removed, keep_days)
        session.commit()
    return applied


def _report(session: Session, engine: SearchEngine, documents: int | None = None) -> None:
    """Tell the database where this copy stands (``hub search check`` lists every copy)."""
    index = engine.index
    generation = index.current_generation()
    if documents is None:
        with index.searcher() as searcher:
            documents = int(searcher.doc_count())
    replica.report(session, index, generation, replica.read_cursor(index, generation), documents)
    session.commit()


def rebuild(session: Session, engine: SearchEngine, wait: float = REBUILD_LOCK_WAIT) -> RebuildReport:
    """Build a new index from the database and swap it in; searches go on meanwhile."""
    started = time.perf_counter()
    with engine.index.writer_lock(wait=wait):
        count = _rebuild_locked(session, engine)
        _report(session, engine, count)
    return RebuildReport(count, time.perf_counter() - started)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    # A rebuild allocates millions of small acyclic objects (posting tuples);
    # the cyclic collector rescans all of them again and again, which made a
    # 100,000-lesson rebuild about twice as slow. Reference counting still
    # frees everything; the collector runs again afterwards.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _all_documents(session: Session) -> Iterator[Document]:
    for source in load_courses(session):
        yield from course_documents(source)


def _rebuild_locked(session: Session, engine: SearchEngine) -> int:
    cursor = replica.rebuild_cursor(session)  # before reading: what commits later is applied after the swap
    with _no_cyclic_gc():
        count = engine.index.rebuild(_all_documents(session), files={replica.FOLLOW: cursor.dumps()})
    session.rollback()  # end the long read transaction
    pagecache.bump(session.get_bind())
    log.info("search index rebuilt: %d documents", count)
    return count


@dataclass
class CheckReport:
    state: IndexState
    documents: int = 0
    expected: int = 0
    missing: list[str] = field(default_factory=list)  # published in the database, absent from the index
    stale: list[str] = field(default_factory=list)  # in the index with an older content digest
    extra: list[str] = field(default_factory=list)  # in the index, no longer published
    lock_holder: str = ""
    digest: str = ""  # of this copy's (key, content digest) pairs: copies that agree have the same
    replicas: list[SearchReplica] = field(default_factory=list)  # every copy's last report, this one's included
    name: str = ""  # this copy's in `replicas`

    @property
    def disagreeing(self) -> list[SearchReplica]:
        """Other copies that checked at the same change as this one, yet hold other documents."""
        mine = next((r for r in self.replicas if r.name == self.name), None)
        if mine is None or not self.digest:
            return []
        return [
            r
            for r in self.replicas
            if r.name != self.name and r.digest and r.checked_cursor == mine.checked_cursor and r.digest != self.digest
        ]

    @property
    def ok(self) -> bool:
        return self.state.ok and not (self.missing or self.stale or self.extra or self.disagreeing)


def check(session: Session, engine: SearchEngine) -> CheckReport:
    """Compare the index with the database, document by document."""
    state = engine.index.verify()
    report = CheckReport(state, lock_holder=engine.index.lock_holder())
    expected: dict[str, str] = {}
    for source in load_courses(session):
        expected.update(digests(course_documents(source)))
    report.expected = len(expected)
    if not state.ok:
        report.missing = sorted(expected)
        return report
    indexed: dict[str, str] = {}
    with engine.index.searcher() as searcher:
        for stored in searcher.all_stored_fields():
            indexed[stored["key"]] = stored.get("digest", "")
    report.documents = len(indexed)
    report.digest = replica.digest(indexed.items())
    replica.record_check(session, engine.index, state.generation, report.documents, report.digest)
    session.commit()
    report.replicas, report.name = replica.replicas(session), replica.node_name(engine.index)
    report.missing = sorted(set(expected) - set(indexed))
    report.extra = sorted(set(indexed) - set(expected))
    report.stale = sorted(k for k in set(expected) & set(indexed) if expected[k] != indexed[k])
    return report


@dataclass(frozen=True)
class SearchHit:
    type: str  # course | lesson
    id: int
    title: str
    snippet: str  # HTML: escaped text with <mark> around matches
    title_html: str
    course: Course
    lesson: Lesson | None
    score: float
    # Where in a recording the words were spoken, when only a transcript has them: the
    # hit links there (hub.subtitles.views), whole seconds.
    time: int | None = None
    material: int | None = None


@dataclass
class SearchPage:
    total: int
    page: int
    per_page: int
    hits: list[SearchHit]
    facets: dict[str, dict[str, int]]
    suggestion: str | None
    relaxed: bool = False
    notice: str = ""
    school_names: dict[str, str] = field(default_factory=dict)
    posters: dict[int, Rendition] = field(default_factory=dict)  # lesson id → its first ready poster

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


UNAVAILABLE = N_("The search index is being rebuilt; try again in a moment.")  # translated on the page


# What damaged index files raise from deep inside Whoosh (a truncated posting
# block, a bad pickle, a missing segment file): answered like a missing index.
DAMAGED = (IndexUnavailable, OSError, EOFError, ValueError, IndexError, struct.error, zlib.error, pickle.PickleError)


def search(session: Session, engine: SearchEngine, actor: User | None, params: SearchParams) -> SearchPage:
    try:
        raw = engine.query.run(params)
    except DAMAGED as exc:
        log.warning("search index unusable (%s: %s); starting a rebuild", type(exc).__name__, exc)
        engine.index.close()
        engine.request_rebuild()
        return SearchPage(0, params.page, params.per_page, [], {}, None, notice=UNAVAILABLE)
    hits = _hydrate(session, actor, raw)
    school_ids = [int(s) for s in raw.facets.get("school", {}) if s.isdigit()]
    names = {
        str(i): name for i, name in session.execute(select(School.id, School.name).where(School.id.in_(school_ids)))
    }
    return SearchPage(
        total=raw.total,
        page=params.page,
        per_page=params.per_page,
        hits=hits,
        facets=raw.facets,
        suggestion=raw.suggestion,
        relaxed=raw.relaxed,
        school_names=names,
        posters=_posters(session, [hit.lesson.id for hit in hits if hit.lesson is not None]),
    )


def _posters(session: Session, lesson_ids: list[int]) -> dict[int, Rendition]:
    """One query for the posters of a page of lesson hits (the page shows them as thumbnails)."""
    if not lesson_ids:
        return {}
    rows = session.execute(
        select(Material.lesson_id, Rendition)
        .join(Rendition.material)
        .where(Material.lesson_id.in_(lesson_ids), Rendition.profile == "poster", Rendition.status == "ready")
        .order_by(Material.id)
    )
    posters: dict[int, Rendition] = {}
    for lesson_id, rendition in rows:
        posters.setdefault(lesson_id, rendition)
    return posters


def _hydrate(session: Session, actor: User | None, raw: RawResults) -> list[SearchHit]:
    course_ids = {hit.course for hit in raw.hits}
    lesson_ids = [hit.id for hit in raw.hits if hit.type == "lesson"]
    if not course_ids:
        return []
    courses = {c.id: c for c in session.scalars(select(Course).where(Course.id.in_(course_ids), visible_clause(actor)))}
    lessons = (
        {lesson.id: lesson for lesson in session.scalars(select(Lesson).where(Lesson.id.in_(lesson_ids)))}
        if lesson_ids
        else {}
    )
    transcripts: dict[int, list[tuple[int, str]]] = {}
    if lessons and raw.units:
        for lesson_id, material_id, transcript in session.execute(
            select(Material.lesson_id, Material.id, Subtitle.transcript)
            .join(Subtitle, Subtitle.material_id == Material.id)
            .where(Material.lesson_id.in_(list(lessons)))
            .order_by(Material.id, Subtitle.language)
        ):
            transcripts.setdefault(lesson_id, []).append((material_id, transcript))
    hits: list[SearchHit] = []
    for hit in raw.hits:
        course = courses.get(hit.course)
        if course is None or course.status != "published":
            continue  # withdrawn or deleted since it was indexed: never shown from search
        lesson = lessons.get(hit.id) if hit.type == "lesson" else None
        if hit.type == "lesson" and (lesson is None or lesson.course_id != course.id):
            continue
        spoken = transcripts.get(lesson.id, []) if lesson is not None else []
        hits.append(_hit(hit, course, lesson, raw, spoken))
    return hits


_MARK = "<mark>"
_MAX_CANDIDATES = 200
"""Cue lines looked at per transcript: a word found in none of the first 200 that share its
first letters gets no time (the lesson is still the hit, linked without one)."""


def _first_cue_speaking(transcript: str, raw: RawResults) -> tuple[float, str] | None:
    """(start, text) of the earliest cue of `transcript` the query marks, or None.

    A transcript may have 20,000 cues: rather than mark up each, the query's needles
    (a bigram of each Chinese unit, the first letters of each English stem, as a stem
    keeps a word's start: "happi" of "happy") are found in the lower-cased text at C
    speed, and only the lines around those places are marked up, earliest first.
    Lower-casing, not analysis.fold (160 ms for 500,000 characters, 0.5 ms): a transcript
    in traditional characters is still found by search, but its hits get no time.
    """
    cjk, stems = analysis.highlight_terms(raw.units)
    needles = [n[:2] for n in cjk] + [stem[:4] for stem in stems]
    folded = transcript.lower()
    if not needles or len(folded) != len(transcript):
        return None
    starts: set[int] = set()
    for needle in needles:
        at = folded.find(needle)
        while at != -1 and len(starts) < _MAX_CANDIDATES * len(needles):
            starts.add(transcript.rfind("\n", 0, at) + 1)
            at = folded.find(needle, at + len(needle))
    for line_start in sorted(starts)[:_MAX_CANDIDATES]:
        line_end = transcript.find("\n", line_start)
        pairs = parse_transcript(transcript[line_start : None if line_end == -1 else line_end])
        if pairs and _MARK in highlight(pairs[0][1], raw.units):
            return pairs[0]
    return None


def _hit(
    hit: RawHit, course: Course, lesson: Lesson | None, raw: RawResults, spoken: list[tuple[int, str]]
) -> SearchHit:
    title = lesson.title if lesson is not None else course.title
    summary = lesson.summary if lesson is not None else course.summary
    if lesson is not None and not summary:
        summary = " · ".join(m.title for m in lesson.materials) or lesson.unit
    snippet = highlight(summary, raw.units)
    title_html = highlight(title, raw.units, max_chars=200)
    time = material = None
    if spoken and _MARK not in snippet and _MARK not in title_html:
        # The words are not in what the lesson says of itself: show the first cue that speaks
        # them, and link to when it is spoken.
        for material_id, transcript in spoken:
            cue = _first_cue_speaking(transcript, raw)
            if cue is not None:
                snippet = highlight(cue[1], raw.units)
                time, material = int(cue[0]), material_id
                break
    return SearchHit(
        type=hit.type,
        id=hit.id,
        title=title,
        snippet=snippet,
        title_html=title_html,
        course=course,
        lesson=lesson,
        score=hit.score,
        time=time,
        material=material,
    )


@dataclass(frozen=True)
class Suggestion:
    type: str
    id: int
    title: str
    course: int


def suggest(
    session: Session, engine: SearchEngine, actor: User | None, prefix: str, limit: int = 8
) -> list[Suggestion]:
    """Titles for the autocomplete box: visible, distinct, best first."""
    try:
        raw = engine.query.suggest_titles(prefix, limit=limit * 2)
    except DAMAGED:
        engine.index.close()
        engine.request_rebuild()
        return []
    page = RawResults(total=len(raw), hits=raw, facets={}, units=[])
    out: list[Suggestion] = []
    seen: set[str] = set()
    for hit in _hydrate(session, actor, page):
        if hit.title in seen:
            continue
        seen.add(hit.title)
        out.append(Suggestion(hit.type, hit.id, hit.title, hit.course.id))
        if len(out) >= limit:
            break
    return out
