"""The log of search index changes: what every copy of the index follows.

A service that changes what search shows calls :func:`reindex` inside its
transaction. It adds one ``search_change`` row per course, committed (or rolled
back) with the change itself, so the log never misses a committed change and
never holds one that did not happen. Each index applies the log from its own
cursor (:mod:`hub.search.replica`):

- embedded (one machine, the default): the worker's ``index_course`` task
  applies it to the index in ``HUB_INDEX_DIR``, as soon as the change commits;
- several web nodes (``HUB_SEARCH_REPLICA=on``): every web node keeps its own
  replica and polls the log every ``HUB_SEARCH_FOLLOW_MS``; no task is sent.

Why a table and not a broadcast queue: a node that is down, restarting or just
added catches up from its cursor when it comes back; a fan-out message sent
while it was away would be lost. The log is pruned after
``HUB_SEARCH_CHANGES_DAYS``; a replica away for longer rebuilds.

This module loads no Whoosh: the catalog imports it on every change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub import jobs
from hub.db import Base, UTCDateTime, utcnow


class SearchChange(Base):
    """One course whose documents must be brought in line with the database."""

    __tablename__ = "search_change"
    # Ids are never reused on SQLite either (AUTOINCREMENT): a replica's cursor is an id.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SearchReplica(Base):
    """What each copy of the index last reported of itself (``hub search check`` compares them)."""

    __tablename__ = "search_replica"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:index directory
    generation: Mapped[str] = mapped_column(String(100), default="")
    cursor: Mapped[int] = mapped_column(Integer, default=0)  # every change up to here is applied
    documents: Mapped[int] = mapped_column(Integer, default=0)
    # Of the (key, content digest) pairs of every document, as of `checked_cursor`: two
    # replicas that checked at the same cursor hold the same documents when these agree.
    digest: Mapped[str] = mapped_column(String(64), default="")
    checked_cursor: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def reindex(session: Session, course_ids: Iterable[int]) -> None:
    """Every change a reader could see reaches each search index, after commit."""
    ids = sorted(set(course_ids))
    if not ids:
        return
    session.add_all(SearchChange(course_id=course_id) for course_id in ids)
    app = session.info.get("hub.app")
    if app is not None and app.extensions["hub.settings"].search_replica:
        return  # the web nodes poll the log; a worker has no index of its own to update
    if len(ids) == 1:
        jobs.enqueue(session, jobs.INDEX_COURSE, ids[0])
    else:
        jobs.enqueue(session, jobs.INDEX_COURSES, ids)
