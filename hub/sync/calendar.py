"""Push by the teaching calendar (专递课堂's 按教学进度推送): what a school server fetches first.

A school server subscribed to a textbook keeps a term calendar for it: the first day of
teaching week 1 and the week each chapter node is taught. The weeks come from the textbook
file (``TextbookNode.week``) and a school may move any node to its own week
(:class:`~hub.sync.models.CalendarWeek`), because no two schools keep the same pace.

``hub sync pull`` then ranks every lesson of the courses it fetches by the node it is
aligned to: the lessons of this teaching week and the next ``HUB_SYNC_WEEKS_AHEAD`` weeks
first, then the weeks after in order, then courses without a calendar, then what was
already taught (the latest first) and lessons with no week at all. A school on a thin link
so has next week's lessons before next week; the rest follows as bandwidth allows, or
waits for the next run at a byte cap (``hub sync pull --max-bytes``).

A node's weeks are a span, not a point: a lesson that covers a whole section is used from
the week the section's first 课时 is taught to the week of its last. A node's span covers
its own week and its descendants'; a node with neither takes its nearest ancestor's span
(a 课时 the file gives no week is taught when its section is); a node with none of these
has no week.

The ranking is pure (:func:`lesson_rank`, :func:`node_spans`), so it is tested without a
database; :func:`load_schedule` reads the calendars and books of this server into it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.errors import Invalid, NotFound
from hub.i18n import N_
from hub.sync.models import CalendarWeek, MirrorCourse, TeachingCalendar
from hub.textbooks.files import MAX_WEEK as MAX_WEEK  # a school's own weeks go as far as a file's
from hub.textbooks.models import Textbook, TextbookNode

DUE, LATER, OTHER, TAUGHT, UNDATED = range(5)
"""The order of the pull, first to last: due now, later this term, courses without a calendar,
already taught, no week known."""


@dataclass(frozen=True)
class Node:
    """What the ranking needs of a textbook node."""

    key: str
    parent: str | None  # the parent's key
    week: int | None  # the textbook file's week


@dataclass(frozen=True)
class Span:
    first: int
    last: int


def teaching_week(today: date, term_start: date) -> int:
    """The teaching week `today` falls in: 1 in the term's first seven days, 0 or less before them."""
    return (today - term_start).days // 7 + 1


def due_weeks(today: date, term_start: date, ahead: int) -> Span:
    """The weeks whose lessons are due: this teaching week and the `ahead` after it.

    Before the term starts, the first weeks are the ones coming: weeks 1 to 1 + `ahead`.
    """
    current = max(teaching_week(today, term_start), 1)
    return Span(current, current + max(ahead, 0))


def node_spans(nodes: Sequence[Node], overrides: Mapping[str, int | None] | None = None) -> dict[str, Span]:
    """Each node's teaching span, from the file's weeks with the school's `overrides` over them.

    An override of None takes a node out of the calendar (its own week only: its
    descendants keep theirs). Nodes whose span stays unknown are left out.
    """
    overrides = overrides or {}
    own: dict[str, int | None] = {n.key: overrides.get(n.key, n.week) for n in nodes}
    children: dict[str | None, list[str]] = {}
    parent = {n.key: n.parent for n in nodes}
    for n in nodes:
        children.setdefault(n.parent, []).append(n.key)
    below: dict[str, Span | None] = {}

    def span_below(key: str) -> Span | None:
        # The span of a node's own week and every dated descendant's, computed once per node.
        if key in below:
            return below[key]
        week = own.get(key)
        weeks = [week] if week is not None else []
        for child in children.get(key, []):
            found = span_below(child)
            if found is not None:
                weeks += [found.first, found.last]
        result = Span(min(weeks), max(weeks)) if weeks else None
        below[key] = result
        return result

    spans: dict[str, Span] = {}
    for n in nodes:
        found = span_below(n.key)
        ancestor = parent.get(n.key)
        seen = {n.key}
        while found is None and ancestor is not None and ancestor not in seen:
            # A 课时 the file gives no week is taught when its section or chapter is.
            seen.add(ancestor)
            found = span_below(ancestor)
            ancestor = parent.get(ancestor)
        if found is not None:
            spans[n.key] = found
    return spans


def lesson_rank(span: Span | None, due: Span) -> tuple[int, int]:
    """Where a lesson taught in `span` goes in the pull's order (lower first) while `due` is due."""
    if span is None:
        return (UNDATED, 0)
    if span.first <= due.last and span.last >= due.first:
        return (DUE, span.first)
    if span.first > due.last:
        return (LATER, span.first)
    return (TAUGHT, -span.last)  # the latest taught first: a teacher revises last week's, not September's


@dataclass(frozen=True)
class Schedule:
    """The calendars of this school server as of one day: ranks lessons by their alignment."""

    spans: Mapping[str, Mapping[str, Span]]  # textbook key → node key → span
    due: Mapping[str, Span]  # textbook key → the weeks due now

    def rank(self, textbook_key: str | None, node_key: str | None) -> tuple[int, int]:
        """A lesson's rank; (OTHER, 0) when it is aligned to no book with a calendar here."""
        if not textbook_key or textbook_key not in self.due:
            return (OTHER, 0)
        span = self.spans[textbook_key].get(node_key) if node_key else None
        return lesson_rank(span, self.due[textbook_key])

    def __bool__(self) -> bool:
        return bool(self.due)


EMPTY = Schedule({}, {})


def load_schedule(session: Session, today: date, ahead: int) -> Schedule:
    """Every calendar of this school server, with the weeks of its book's nodes as this school keeps them."""
    calendars = list(session.scalars(select(TeachingCalendar)))
    if not calendars:
        return EMPTY
    spans: dict[str, dict[str, Span]] = {}
    due: dict[str, Span] = {}
    for calendar in calendars:
        overrides = {
            row.node_key: row.week
            for row in session.scalars(select(CalendarWeek).where(CalendarWeek.calendar_id == calendar.id))
        }
        spans[calendar.textbook_key] = node_spans(_book_nodes(session, calendar.textbook_key, overrides), overrides)
        due[calendar.textbook_key] = due_weeks(today, calendar.term_start, ahead)
    return Schedule(spans, due)


def _book_nodes(session: Session, textbook_key: str, overrides: Mapping[str, int | None]) -> list[Node]:
    """The book's nodes on this server, and the overridden keys it does not have (the book may come later)."""
    rows = session.execute(
        select(TextbookNode.id, TextbookNode.key, TextbookNode.parent_id, TextbookNode.week)
        .join(Textbook, Textbook.id == TextbookNode.textbook_id)
        .where(Textbook.key == textbook_key)
        .order_by(TextbookNode.position)
    ).all()
    keys = {row.id: row.key for row in rows}
    nodes = [Node(row.key, keys.get(row.parent_id) if row.parent_id else None, row.week) for row in rows]
    known = set(keys.values())
    nodes += [Node(key, None, None) for key in overrides if key not in known]
    return nodes


# -- editing a calendar (school server) ----------------------------------------------


def set_calendar(session: Session, textbook_key: str, term_start: date) -> TeachingCalendar:
    """Create or move the calendar of a textbook: its teaching week 1 starts on `term_start`."""
    textbook_key = textbook_key.strip()
    if not textbook_key or len(textbook_key) > 100:
        raise Invalid(N_("A textbook key is 1 to 100 characters."), {"textbook": N_("invalid")})
    calendar = session.scalar(select(TeachingCalendar).where(TeachingCalendar.textbook_key == textbook_key))
    if calendar is None:
        calendar = TeachingCalendar(textbook_key=textbook_key, term_start=term_start)
        session.add(calendar)
    calendar.term_start = term_start
    session.flush()
    return calendar


def get_calendar(session: Session, textbook_key: str) -> TeachingCalendar:
    calendar = session.scalar(select(TeachingCalendar).where(TeachingCalendar.textbook_key == textbook_key))
    if calendar is None:
        raise NotFound(N_("There is no teaching calendar for textbook %(key)s."), key=textbook_key)
    return calendar


def list_calendars(session: Session) -> list[TeachingCalendar]:
    return list(session.scalars(select(TeachingCalendar).order_by(TeachingCalendar.textbook_key)))


def delete_calendar(session: Session, textbook_key: str) -> None:
    session.delete(get_calendar(session, textbook_key))
    session.flush()


def set_week(session: Session, textbook_key: str, node_key: str, week: int | None, *, reset: bool = False) -> None:
    """Move one node to this school's `week` (None: not scheduled here); `reset` goes back to the file's week."""
    calendar = get_calendar(session, textbook_key)
    node_key = node_key.strip()
    if not node_key or len(node_key) > 50:
        raise Invalid(N_("A chapter key is 1 to 50 characters."), {"node": N_("invalid")})
    if week is not None and not 1 <= week <= MAX_WEEK:
        raise Invalid(
            N_("A teaching week is a number from 1 to %(most)s."), {"week": N_("out of range")}, most=MAX_WEEK
        )
    book_nodes = _book_nodes(session, textbook_key, {})
    if book_nodes and node_key not in {n.key for n in book_nodes}:
        raise NotFound(N_("Textbook %(key)s has no chapter %(node)s."), key=textbook_key, node=node_key)
    session.execute(
        delete(CalendarWeek).where(CalendarWeek.calendar_id == calendar.id, CalendarWeek.node_key == node_key)
    )
    if not reset:
        session.add(CalendarWeek(calendar_id=calendar.id, node_key=node_key, week=week))
    session.flush()


@dataclass(frozen=True)
class CalendarRow:
    """One node of a calendar as the CLI and pages show it."""

    key: str
    title: str
    depth: int
    file_week: int | None
    week: int | None  # this school's own week, where it set one
    overridden: bool
    span: Span | None
    due: bool


def calendar_rows(
    session: Session, textbook_key: str, today: date, ahead: int
) -> tuple[TeachingCalendar, Span, list[CalendarRow]]:
    """The calendar of a textbook, node by node in the book's order, with what is due `today`."""
    calendar = get_calendar(session, textbook_key)
    overrides = {
        row.node_key: row.week
        for row in session.scalars(select(CalendarWeek).where(CalendarWeek.calendar_id == calendar.id))
    }
    nodes = session.execute(
        select(TextbookNode)
        .join(Textbook, Textbook.id == TextbookNode.textbook_id)
        .where(Textbook.key == textbook_key)
        .order_by(TextbookNode.position)
    ).scalars()
    due = due_weeks(today, calendar.term_start, ahead)
    spans = node_spans(_book_nodes(session, textbook_key, overrides), overrides)
    rows: list[CalendarRow] = []
    for node in nodes:
        span = spans.get(node.key)
        rows.append(
            CalendarRow(
                key=node.key,
                title=node.title,
                depth=node.depth,
                file_week=node.week,
                week=overrides.get(node.key),
                overridden=node.key in overrides,
                span=span,
                due=span is not None and lesson_rank(span, due)[0] == DUE,
            )
        )
    return calendar, due, rows


# -- ordering a pull -------------------------------------------------------------------


def lesson_alignment(lesson: Any) -> tuple[str | None, str | None]:
    """(textbook key, node key) a manifest lesson is aligned to, or (None, None).

    The entry format names the alignment by keys (hub.sync.manifest); a lesson of an
    upstream that does not send them ranks as a course without a calendar.
    """
    textbook = getattr(lesson, "textbook", None)
    node = getattr(lesson, "node", None)
    return (textbook or None, node or None)


def ranked_files(
    courses: Iterable[Any], missing: Mapping[str, Any], schedule: Schedule
) -> list[tuple[tuple[int, int], Any]]:
    """The `missing` files of `courses` (manifest entries), each with its rank, first to fetch first.

    A file several lessons share takes the best rank among them; equal ranks keep the
    order of courses and lessons (the manifest's). A file no lesson names goes last.
    """
    ranked: dict[str, tuple[tuple[int, int], int]] = {}
    order = 0
    for course in courses:
        for lesson in course.lessons:
            rank = schedule.rank(*lesson_alignment(lesson))
            for material in lesson.materials:
                for file in (material.original, *material.renditions, *getattr(material, "subtitles", ())):
                    if file.sha256 in missing and (file.sha256 not in ranked or rank < ranked[file.sha256][0]):
                        ranked[file.sha256] = (rank, order)
                        order += 1
    for sha in missing:
        if sha not in ranked:
            ranked[sha] = ((UNDATED, 1), order)
            order += 1
    return [(rank, missing[sha]) for sha, (rank, _) in sorted(ranked.items(), key=lambda item: item[1])]


PARTIAL = ""
"""``MirrorCourse.revision`` of a course applied in part: it matches no signed revision, so the
next pull fetches the course's entry again (a patch onto the whole entry kept) and goes on."""


def apply_lessons_at_hand(
    session: Session,
    storage: Any,
    entry: Any,
    body: bytes,
    issued_at: Any,
    present: set[str],
    schedule: Schedule,
    mirrored: Mapping[int, MirrorCourse],
) -> bool:
    """Apply the lessons of `entry` whose files are all `present`, when the course is on a calendar.

    Only for a course this server does not hold yet (or holds in part): a course already
    mirrored whole keeps its old version until the new one is complete, as every course
    does. The whole entry is kept (`body`), so later patches merge onto it. False when
    nothing was applied (the caller holds the course back as before).
    """
    from hub.sync import services

    link = mirrored.get(entry.id)
    if link is not None and link.revision != PARTIAL:
        return False
    if all(schedule.rank(*lesson_alignment(lesson))[0] == OTHER for lesson in entry.lessons):
        return False
    at_hand = [lesson for lesson in entry.lessons if all(sha in present for sha in lesson_files(entry, lesson))]
    if not at_hand:
        return False
    part = entry.model_copy(update={"lessons": at_hand})
    services.apply_course(session, storage, part, body=body, issued_at=issued_at, present=present, reindex=False)
    applied = session.get(MirrorCourse, entry.id)
    assert applied is not None
    applied.revision = PARTIAL
    session.flush()
    return True


# -- the calendar page (school server) ----------------------------------------------------


@dataclass(frozen=True)
class CalendarView:
    calendar: TeachingCalendar
    title: str  # the book's title on this server, or "" before the book is here
    week: int  # the teaching week today is in (below 1 before the term)
    due: Span
    rows: list[CalendarRow]


def overview(session: Session, today: date, ahead: int) -> tuple[list[CalendarView], list[tuple[str, str]]]:
    """Every calendar of this server as the page shows it, and the books here without one (key, title)."""
    titles = {key: title for key, title in session.execute(select(Textbook.key, Textbook.title).order_by(Textbook.key))}
    views = []
    for item in list_calendars(session):
        found, due, rows = calendar_rows(session, item.textbook_key, today, ahead)
        views.append(
            CalendarView(found, titles.get(item.textbook_key, ""), teaching_week(today, found.term_start), due, rows)
        )
    kept = {view.calendar.textbook_key for view in views}
    return views, [(key, title) for key, title in titles.items() if key not in kept]


def set_weeks(session: Session, textbook_key: str, weeks: Mapping[str, str]) -> int:
    """Set this school's weeks from a form: per node key, "" for the book's week, "-" for none, or a number.

    Returns how many nodes now differ from the book. Nothing is changed when one value is wrong.
    """
    get_calendar(session, textbook_key)  # NotFound first, whatever the form holds
    parsed: dict[str, int | str | None] = {}
    for node_key, text in weeks.items():
        text = text.strip()
        if text in ("", "-", "－"):
            parsed[node_key] = "reset" if text == "" else None
        elif text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_WEEK:
            parsed[node_key] = int(text)
        else:
            raise Invalid(
                N_("A teaching week is a number from 1 to %(most)s."), {f"week-{node_key}": N_("out of range")},
                most=MAX_WEEK,
            )  # fmt: skip
    for node_key, value in parsed.items():
        if value == "reset":
            set_week(session, textbook_key, node_key, None, reset=True)
        else:
            set_week(session, textbook_key, node_key, value if isinstance(value, int) else None)
    return sum(1 for value in parsed.values() if value != "reset")


# -- the books of the calendars (school server) -----------------------------------------------

BOOK_FIELDS = ("key", "subject", "edition", "grade", "volume", "school_system", "title")
MAX_BOOK_BYTES = 4 * 1024 * 1024
"""A textbook's tree as the upstream's API gives it: a few hundred nodes are some 50 KB."""


def books_missing(session: Session) -> list[str]:
    """Keys of the textbooks this server keeps a calendar for but does not hold."""
    held = set(session.scalars(select(Textbook.key)))
    return [c.textbook_key for c in list_calendars(session) if c.textbook_key not in held]


def fetch_books(session: Session, upstream_url: str, keys: Sequence[str]) -> list[str]:
    """Bring the textbooks `keys` from the upstream's public textbook API into this server (the caller commits).

    The weeks a pull orders by are the book's: a server whose first pull is still to come has
    none of its books yet, so they are fetched before the order is decided. Returns the keys
    brought; a key the upstream does not know is left (its calendar orders nothing until the
    book comes, or by the weeks set here). Raises HubError when the upstream cannot be read.
    """
    from hub.textbooks.services import import_textbook

    if not keys:
        return []
    listing = _public_json(upstream_url, "/api/v1/textbooks")
    ids = {item.get("key"): item.get("id") for item in listing.get("items", []) if isinstance(item, dict)}
    brought = []
    for key in keys:
        book_id = ids.get(key)
        if not isinstance(book_id, int):
            continue
        tree = _public_json(upstream_url, f"/api/v1/textbooks/{book_id}")
        data = {name: tree.get(name) for name in BOOK_FIELDS}
        data["nodes"] = [_file_node(node) for node in tree.get("tree", [])]
        import_textbook(session, data)
        brought.append(key)
    session.flush()
    return brought


def _file_node(node: Any) -> Any:
    """A node of the API's tree in the textbook file's form (no ids); the importer checks the rest."""
    if not isinstance(node, dict):
        return node
    found = {name: node[name] for name in ("key", "kind", "title", "week") if name in node}
    found["children"] = [_file_node(child) for child in node.get("children") or []]
    return found


def _public_json(base_url: str, path: str) -> Any:
    """GET a public JSON document of the upstream, without the sync token (which only the sync API takes)."""
    import json
    import urllib.error
    import urllib.request

    from hub.errors import HubError, Text
    from hub.sync import network

    if not base_url.startswith(("http://", "https://")):
        raise HubError(N_("The upstream's textbooks could not be read (%(reason)s)."), reason=base_url)
    url = base_url.rstrip("/") + path
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http(s) only, checked above
            raw = response.read(MAX_BOOK_BYTES + 1)
    except urllib.error.HTTPError as exc:
        reason = network.answered(exc.code)
        raise HubError(N_("The upstream's textbooks could not be read (%(reason)s)."), reason=reason) from None
    except urllib.error.URLError as exc:  # the socket's error inside
        cause = exc.reason if isinstance(exc.reason, BaseException) else exc
        reason = network.reason(cause, url)
        raise HubError(N_("The upstream's textbooks could not be read (%(reason)s)."), reason=reason) from None
    except OSError as exc:
        raise HubError(
            N_("The upstream's textbooks could not be read (%(reason)s)."), reason=network.reason(exc, url)
        ) from None
    if len(raw) > MAX_BOOK_BYTES:
        raise HubError(
            N_("The upstream's textbooks could not be read (%(reason)s)."),
            reason=Text(N_("larger than any this hub accepts")),
        )
    try:
        data = json.loads(raw)
    except ValueError:
        raise HubError(
            N_("The upstream's textbooks could not be read (%(reason)s)."), reason=Text(N_("not JSON data"))
        ) from None
    return data if isinstance(data, dict) else {}


def lesson_files(entry: Any, lesson: Any) -> dict[str, Any]:
    """The files a school server needs for one lesson of a manifest course entry, by sha256."""
    files: dict[str, Any] = entry.model_copy(update={"lessons": [lesson]}).files()
    return files


def fit_lessons(work: Any, fitted: Any, schedule: Schedule, room: int, mirrored: Mapping[int, MirrorCourse]) -> Any:
    """`fitted` (hub.sync.services.fit_budget's plan) with the courses it left out for room taken in part.

    A course on a calendar that does not fit whole brings its lessons in the calendar's order
    while they fit, and stops at the first that does not (the order is the point); it is then
    applied with those lessons (:func:`apply_lessons_at_hand`). A course held whole stays out:
    it keeps its old version until the new one fits.
    """
    from hub.sync.services import Plan

    missing = dict(fitted.missing)
    used = sum(f.size for f in missing.values())
    kept = list(fitted.apply)
    kept_ids = {c.id for c in kept}
    # Every lesson of the courses left out, across courses, in the calendar's order.
    candidates = []
    for position, course in enumerate(work.apply):
        link = mirrored.get(course.id)
        if course.id in kept_ids or (link is not None and link.revision != PARTIAL):
            continue
        ranks = [schedule.rank(*lesson_alignment(lesson)) for lesson in course.lessons]
        if all(rank[0] == OTHER for rank in ranks):
            continue
        for index, (rank, lesson) in enumerate(zip(ranks, course.lessons, strict=True)):
            candidates.append((rank, position, index, course, lesson))
    taken: dict[int, Any] = {}
    for _rank, _position, _index, course, lesson in sorted(candidates, key=lambda item: item[:3]):
        files = lesson_files(course, lesson)
        extra = {sha: f for sha, f in files.items() if sha in work.missing and sha not in missing}
        need = sum(f.size for f in extra.values())
        if used + need > room:
            break
        used += need
        missing.update(extra)
        taken[course.id] = course
    skipped, skipped_titles = list(fitted.skipped), list(fitted.skipped_titles)
    for course in taken.values():
        kept.append(course)
        at = next((i for i, line in enumerate(skipped) if line.startswith(f"course {course.id} ")), None)
        if at is not None:
            del skipped[at]
        if course.title in skipped_titles:
            skipped_titles.remove(course.title)
    order = {c.id: i for i, c in enumerate(work.apply)}
    return Plan(
        apply=sorted(kept, key=lambda c: order[c.id]),
        remove=fitted.remove,
        missing=missing,
        unchanged=fitted.unchanged,
        skipped=skipped,
        skipped_titles=skipped_titles,
    )
