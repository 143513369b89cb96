"""Full-text search for Chinese and English on Whoosh: analysis, index, queries, facets.

Which Whoosh
------------
The original ``whoosh`` (2.7.4, 2016) is abandoned. The forks on PyPI, as
compared for this project:

- **Whoosh-Reloaded 2.7.5** (Sygil-Dev; pinned here, ``==2.7.5``): the 2.7 code
  base with Python 3 fixes and nothing else. Stable on 3.11/3.12, pure Python,
  and its on-disk format is the W3 codec that Whoosh 2.7 has written for a
  decade, so its behaviour and its costs are known (the issue's baseline was
  measured on it). Releases are rare (last 2024-02); that is the risk we take,
  bounded by pinning exactly and by keeping Whoosh behind this package's own
  small interface, so another engine is a change here and nowhere else.
- **whoosh-ng** (5.x): an active rewrite — four major versions within a year,
  "Beta", a large new surface (async, vector search, FastAPI, PostgreSQL
  backends). Too much churn for an index format that school servers keep for
  years.
- **whoosh-novo 3.0.0a1**: an alpha of the never-finished 3.0 branch, with a
  different on-disk format.
- **whoosh3 3.x**: a single maintainer's fork with a new version every few
  weeks and LLM integrations; no track record yet.

All install the same top-level ``whoosh`` package, so exactly one is a
dependency. This package uses a few Whoosh-Reloaded 2.7.5 internals for speed
(:class:`hub.search.index.BulkWriter`, ``hub.search.query.postings_bits``);
their tests compare results with stock Whoosh paths, so an upgrade that changes
them fails loudly.

Whoosh keeps its schema as a pickle inside the index: an index directory is
only ever built on this machine (``hub search rebuild``), never taken from a
bundle, a mirror or another hub.

Layout: :mod:`.analysis` (folding, jieba + bigrams, stemming, pinyin),
:mod:`.schema`, :mod:`.documents` (catalog rows → documents), :mod:`.index`
(generations, the one writer, streamed rebuild + swap), :mod:`.query` (bitmaps,
facets, ranking, snippets), :mod:`.changes` (the log of index changes, written
with each change), :mod:`.replica` (a copy of the index following that log: one
per web node with ``HUB_SEARCH_REPLICA=on``), :mod:`.services` (what the API,
pages, CLI and worker call).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Whoosh loads on the first search or index write, not with every app (`hub sync pull`)
    from flask import Flask

    from hub.config import Settings
    from hub.search.index import SearchIndex
    from hub.search.query import QueryEngine

log = logging.getLogger(__name__)

# After a failed background rebuild, wait this long before trying again, so a
# broken database does not turn every search into a rebuild attempt.
RETRY_REBUILD_AFTER = 30.0


class SearchEngine:
    """The search index of one hub instance: stored at ``app.extensions["hub.search"]``."""

    def __init__(
        self,
        index: SearchIndex | Path,
        cache_bytes: int = 64 * 1024 * 1024,
        rebuild_memory_mb: int = 1024,
        rebuild_processes: int = 1,
    ) -> None:
        """``index`` may be just its directory: the index and its query engine are then made on first use."""
        self._index = index
        self._rebuild_memory_mb = rebuild_memory_mb
        self._rebuild_processes = rebuild_processes
        self._query: QueryEngine | None = None
        self._cache_bytes = cache_bytes
        self._make_lock = threading.Lock()
        self._rebuilder: Callable[[], object] | None = None
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._last_attempt = -RETRY_REBUILD_AFTER
        self._follow: Callable[[], object] | None = None
        self._follow_interval = 1.0
        self._follower: threading.Thread | None = None
        self._follower_pid = 0

    @property
    def index(self) -> SearchIndex:
        with self._make_lock:
            if isinstance(self._index, Path):
                from hub.search.index import SearchIndex

                self._index = SearchIndex(
                    self._index, rebuild_memory_mb=self._rebuild_memory_mb, rebuild_processes=self._rebuild_processes
                )
            return self._index

    @property
    def query(self) -> QueryEngine:
        self.start_following()  # a web process forked after start-up starts its own follower here
        index = self.index
        with self._make_lock:
            if self._query is None:
                from hub.search.query import QueryEngine

                self._query = QueryEngine(index, cache_bytes=self._cache_bytes)
            return self._query

    def set_rebuilder(self, rebuild: Callable[[], object]) -> None:
        self._rebuilder = rebuild

    def set_follower(self, catch_up: Callable[[], object], interval: float) -> None:
        """With ``HUB_SEARCH_REPLICA=on``: this process keeps its index in line with the change log."""
        self._follow, self._follow_interval = catch_up, interval

    def start_following(self) -> bool:
        """Start the follower thread of this process, once (again in a forked child); False without one."""
        if self._follow is None:
            return False
        with self._thread_lock:
            if self._follower is not None and self._follower_pid == os.getpid() and self._follower.is_alive():
                return True
            self._follower_pid = os.getpid()
            self._follower = threading.Thread(target=self._follow_loop, name="hub-search-follow", daemon=True)
            self._follower.start()
            return True

    def _follow_loop(self) -> None:
        from hub.search.index import IndexBusy

        assert self._follow is not None
        while True:
            started = time.monotonic()
            try:
                self._follow()
            except IndexBusy:
                pass  # another process of this node is applying the same changes, or rebuilding
            except Exception:
                log.exception("search replica: catching up with the change log failed; trying again")
            time.sleep(max(0.0, self._follow_interval - (time.monotonic() - started)))

    def request_rebuild(self) -> bool:
        """Start rebuilding in a background thread unless one runs or just failed.

        Used when a search finds no usable index: the request answers at once
        (with a notice) and never waits for a rebuild.
        """
        with self._thread_lock:
            if self._rebuilder is None or (self._thread is not None and self._thread.is_alive()):
                return False
            if time.monotonic() - self._last_attempt < RETRY_REBUILD_AFTER:
                return False
            self._last_attempt = time.monotonic()
            self._thread = threading.Thread(target=self._rebuild_now, name="hub-search-rebuild", daemon=True)
            self._thread.start()
            return True

    def _rebuild_now(self) -> None:
        from hub.search.index import IndexBusy

        assert self._rebuilder is not None
        try:
            self._rebuilder()
            self._last_attempt = -RETRY_REBUILD_AFTER
        except IndexBusy:
            log.info("search index: another process is writing it; not rebuilding here")
        except Exception:
            log.exception("search index rebuild failed; searches answer empty until it succeeds")

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def ensure_index(self) -> str:
        """Start-up check (two small files): start a background rebuild when the index is not usable.

        Returns the index status seen. Cheap enough for every start of
        ``hub serve``; it never blocks on the rebuild itself.
        """
        state = self.index.state()
        if not state.ok:
            log.warning("search index %s (%s): rebuilding in the background", state.status, state.detail)
            self.request_rebuild()
        self.start_following()
        return state.status


def init_app(app: Flask, settings: Settings) -> SearchEngine:
    """Create the engine; no index is opened or built here (start-up stays instant)."""
    from hub.serving import default_processes

    engine = SearchEngine(
        settings.index_dir,
        cache_bytes=settings.search_cache_mb * 1024 * 1024,
        rebuild_memory_mb=settings.search_rebuild_mb,
        rebuild_processes=settings.search_rebuild_processes or default_processes(),
    )

    def rebuild() -> object:
        from hub.db import get_database
        from hub.search import services

        with get_database(app).session() as session:
            return services.rebuild(session, engine, wait=0.0)

    engine.set_rebuilder(rebuild)
    if settings.search_replica:

        def catch_up() -> object:
            from hub.db import get_database
            from hub.search import services

            if not engine.index.state().ok:
                return engine.request_rebuild()  # in the background, as for a search; never twice at once
            with get_database(app).session() as session:
                return services.catch_up(session, engine)

        engine.set_follower(catch_up, settings.search_follow_ms / 1000)
    app.extensions["hub.search"] = engine
    return engine


def ensure_index(app: Flask) -> str:
    """For ``hub serve`` and ``hub demo``: check the index once at start-up, rebuild in the background if needed."""
    engine: SearchEngine = app.extensions["hub.search"]
    return engine.ensure_index()
