"""One copy of the index following the log of changes (:mod:`hub.search.changes`).

The cursor of a copy lives beside its index, in the generation it describes
(``hub-follow.json``): a rebuild starts a generation with a cursor of its own,
so a swap can never pair an index with another index's cursor. It is written
after the Whoosh commit: a crash between the two re-applies a few changes,
which is harmless, as applying a change means "make this course's documents
what the database says now".

Ids are handed out when a transaction inserts, but transactions commit in any
order: change 11 may be visible while change 10 is still being written. A
cursor is therefore the highest id applied plus the *gaps* below it, ids not
seen yet, which are looked for again at every poll for ``GAP_WAIT`` seconds (a
rolled-back transaction leaves a gap forever). A copy that restarts re-applies
from its lowest gap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.search.changes import SearchChange, SearchReplica
from hub.search.index import SearchIndex, _write_atomically

log = logging.getLogger(__name__)

FOLLOW = "hub-follow.json"
# How long a missing id is waited for: longer than any transaction that changes the
# catalog (a sync pull applies a batch of courses in one).
GAP_WAIT = 600.0
# Changes read per query and applied per Whoosh commit while catching up.
BATCH = 1000
# At most this many gaps are remembered (ids jumping by millions would be a restored database).
MAX_GAPS = 10_000
# How often a copy writes an unchanged cursor and reports to the database anyway.
HEARTBEAT = 60.0


@dataclass
class Cursor:
    high: int = 0  # the highest change id applied
    gaps: dict[int, float] = field(default_factory=dict)  # id below `high` not seen yet → when first missed
    synced_at: float = 0.0  # wall time of the last catch-up: a copy away longer than the log is kept rebuilds

    @property
    def low(self) -> int:
        """Every change up to this id is applied (or was given up on)."""
        return min(self.gaps) - 1 if self.gaps else self.high

    def dumps(self) -> str:
        return json.dumps({"high": self.high, "gaps": {str(k): v for k, v in self.gaps.items()}, "at": self.synced_at})

    @classmethod
    def loads(cls, text: str) -> Cursor:
        data = json.loads(text)
        return cls(int(data["high"]), {int(k): float(v) for k, v in data["gaps"].items()}, float(data["at"]))


def read_cursor(index: SearchIndex, generation: str) -> Cursor:
    """The cursor of ``generation``; a generation built before the log existed starts from its beginning."""
    try:
        return Cursor.loads((index.root / generation / FOLLOW).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return Cursor()


def write_cursor(index: SearchIndex, generation: str, cursor: Cursor) -> None:
    _write_atomically(index.root / generation / FOLLOW, cursor.dumps())


def rebuild_cursor(session: Session) -> Cursor:
    """Where a rebuild that reads the database from now on starts following.

    Every change older than ``GAP_WAIT`` is committed or never will be, so the
    rebuild sees it; anything newer is applied again after the swap (a few
    minutes of changes, each idempotent).
    """
    before = utcnow() - timedelta(seconds=GAP_WAIT)
    high = session.scalar(select(func.max(SearchChange.id)).where(SearchChange.created_at < before)) or 0
    return Cursor(high, {}, time.time() - GAP_WAIT)


@dataclass
class Pending:
    """What one poll found: the courses to apply and the cursor once they are."""

    courses: set[int]
    cursor: Cursor
    more: bool  # a full batch: there may be more right behind it


def poll(session: Session, cursor: Cursor, now: float) -> Pending:
    """Read the changes after ``cursor`` (and its gaps, in case they have committed since)."""
    rows: list[tuple[int, int]] = [
        (change_id, course_id)
        for change_id, course_id in session.execute(
            select(SearchChange.id, SearchChange.course_id)
            .where(SearchChange.id > cursor.high)
            .order_by(SearchChange.id)
            .limit(BATCH)
        )
    ]
    more = len(rows) == BATCH
    gaps = dict(cursor.gaps)
    if gaps:
        rows += [
            (change_id, course_id)
            for change_id, course_id in session.execute(
                select(SearchChange.id, SearchChange.course_id).where(SearchChange.id.in_(list(gaps)))
            )
        ]
    seen = {change_id for change_id, _ in rows}
    new = [i for i in seen if i > cursor.high]
    high = max(new, default=cursor.high)
    # A cursor at 0 starts from the log's beginning, which pruning moves: ids below the
    # first one there are gone, not late (they would be thousands of gaps to look for).
    floor = cursor.high or (min(new) - 1 if new else 0)
    for missing in range(floor + 1, high):
        if missing not in seen:
            gaps[missing] = now
    gaps = {i: t for i, t in gaps.items() if i not in seen and now - t < GAP_WAIT}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    return Pending({course_id for _, course_id in rows}, Cursor(high, gaps, now), more)


def behind_the_log(cursor: Cursor, keep_days: int, now: float) -> bool:
    """Whether changes this copy has not applied may already be pruned from the log (then it rebuilds)."""
    # An hour of slack for clocks that disagree between nodes.
    return bool(cursor.synced_at) and now - cursor.synced_at > keep_days * 86400 - GAP_WAIT - 3600


def prune(session: Session, keep_days: int) -> int:
    """Delete changes older than the log keeps; returns how many went."""
    result = session.execute(delete(SearchChange).where(SearchChange.created_at < utcnow() - timedelta(days=keep_days)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def node_name(index: SearchIndex) -> str:
    """How a copy names itself in ``search_replica``: its machine and its directory."""
    return f"{socket.gethostname()}:{index.root.resolve()}"


def report(session: Session, index: SearchIndex, generation: str, cursor: Cursor, documents: int) -> None:
    """Record this copy's position and size for ``hub search check`` (the caller commits)."""
    row = session.get(SearchReplica, node_name(index))
    if row is None:
        row = SearchReplica(name=node_name(index), digest="", checked_cursor=0)
        session.add(row)
    row.generation, row.cursor, row.documents, row.updated_at = generation, cursor.low, documents, utcnow()


def record_check(session: Session, index: SearchIndex, generation: str, documents: int, digest: str) -> None:
    """Record the digest a check computed, at the cursor the copy had then (the caller commits)."""
    cursor = read_cursor(index, generation)
    report(session, index, generation, cursor, documents)
    row = session.get(SearchReplica, node_name(index))
    assert row is not None
    row.digest, row.checked_cursor = digest, cursor.low


def digest(pairs: Iterable[tuple[str, str]]) -> str:
    """One digest of a copy's documents: its (key, content digest) pairs in key order."""
    h = hashlib.blake2b(digest_size=16)
    for key, content in sorted(pairs):
        h.update(f"{key} {content}\n".encode())
    return h.hexdigest()


def replicas(session: Session) -> list[SearchReplica]:
    return list(session.scalars(select(SearchReplica).order_by(SearchReplica.name)))
