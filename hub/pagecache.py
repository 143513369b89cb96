"""Anonymous pages from memory: a response cache keyed by URL, language and data saver.

Profiled, a page costs 5–15 ms of CPU (SQL, Jinja, gzip) for bytes that are the
same for every anonymous reader who sends the same URL, language and data-saver
choice; the pages already say so to shared proxies (``public, max-age=60``,
hub.web). This middleware keeps those answers in each web process's memory and
serves them without entering Flask: a hit costs about as much as a "hello world".

Correctness rests on two things:

- **Who may be served from it.** Only GET and HEAD without credentials: no
  ``Authorization`` header and no cookie but the two preference cookies the key
  holds (``hub_lang``, ``data_saver``, ``hub_textbook``). A session cookie (signed in, or a CSRF
  token from a form page) or any cookie the hub does not know goes past the cache,
  so a preference cookie added later cannot be served someone else's page by
  mistake. What is stored is decided by hub.web after the view ran: a 200 to an
  anonymous GET whose view set no Cache-Control of its own, with no Set-Cookie
  and no session written; never a file download, a stream or a redirect.
- **When it goes stale.** A *generation* counter in the database
  (``page_generation``, one row) is raised by every commit that writes a row of a
  table public pages show, in the same transaction, whoever commits: a web
  request, a worker, a sync pull, a CLI command, on any node, since they all share
  the database. The hook is on the SQLAlchemy session (flushed objects and
  INSERT/UPDATE/DELETE statements), not on a list of views, so pages and tables
  added later are covered without being named here; only tables that no public
  page reads, or that change on every request (:data:`PRIVATE_TABLES`), and
  columns that track work in progress (a transcode's progress and lease), are left
  out. The search index, which a worker updates after the commit, raises it again
  when it changes (:func:`bump`). Each request reads the counter (one indexed
  read of one row); a stored page is served only under the generation it was made
  in. Entries also expire after :data:`hub.web.PAGE_MAX_AGE` seconds, the staleness
  the pages already allow proxies, which bounds anything not tied to a commit
  (relative dates, the upstream's catalog a school server keeps for five minutes).

A page rendered while a commit lands is stored under the generation read *before*
it was rendered, so it can only be older than its generation, never newer: the
next request after the commit reads the new generation and misses.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Integer, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column
from werkzeug.wrappers import Request

from hub.db import Base

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

STORE = "hub.page_cache.store"
"""The environ key hub.web sets when the response of this request may be stored."""

# Tables no anonymous page reads, or that change with every request (counting them
# would empty the cache on each page view): accounts and their tokens (a token's
# last use is written per API call), sign-in throttling, the outbox, unfinished
# uploads, download and usage counts (and the plays seen), school servers' reports and run logs.
PRIVATE_TABLES = frozenset(
    {
        "user_account",
        "api_token",
        "login_failure",
        "outbox",
        "upload",
        "download_count",
        "usage_count",
        "reach_play_seen",
        "reach_pending_day",
        "mirror_reported_usage",
        "sync_run",
        "sync_count_report",
        "mirror_reported_count",
        "sync_server_report",
        "sync_manifest_state",
        "page_generation",
        # The search index's change log is written with the change it logs (which raises
        # the generation itself); what each index replica reports of itself is for operators.
        "search_change",
        "search_replica",
    }
)
# Columns whose writes change nothing a reader sees: a running transcode writes its
# progress and renews its lease (updated_at) every few seconds (as hub.catalog.models
# judges lesson changes for the sync feed).
WORK_COLUMNS = frozenset({"progress", "created_at", "updated_at", "changed_at"})

_CHANGED = "hub.page_cache.changed"
_GENERATION_ROW = 1


class PageGeneration(Base):
    """One row: raised by every commit that changes what anonymous pages show."""

    __tablename__ = "page_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


# ---------------------------------------------------------------- the generation


def _raise_statement(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(PageGeneration).values(id=_GENERATION_ROW, generation=1)
    # One statement whether or not the row exists (a database emptied by a test, a
    # table made by create_all): no race between two first writers.
    return statement.on_conflict_do_update(
        index_elements=[PageGeneration.id], set_={"generation": PageGeneration.generation + 1}
    )


def read_generation(connection: Connection) -> int:
    value = connection.execute(select(PageGeneration.generation).where(PageGeneration.id == _GENERATION_ROW)).scalar()
    return int(value or 0)


def bump(bind: Engine | Connection) -> None:
    """Raise the generation in a transaction of its own: for changes pages show that are not rows (the index)."""
    engine = bind.engine if isinstance(bind, Connection) else bind
    with engine.begin() as connection:
        connection.execute(_raise_statement(engine.dialect.name))


def _is_content(table_name: str | None) -> bool:
    return table_name is None or (table_name in Base.metadata.tables and table_name not in PRIVATE_TABLES)


def _object_changes_content(session: Session, obj: object) -> bool:
    from sqlalchemy import inspect

    state = inspect(obj)
    table = getattr(state.mapper.local_table, "name", None)
    if not _is_content(table):
        return False
    if obj not in session.dirty:
        return True  # new or deleted
    return any(
        state.attrs[column.key].history.has_changes()
        for column in state.mapper.column_attrs
        if column.key not in WORK_COLUMNS
    )


@event.listens_for(Session, "after_flush")
def _note_flushed_changes(session: Session, _context: object) -> None:
    if session.info.get(_CHANGED):
        return
    for obj in (*session.new, *session.dirty, *session.deleted):
        if _object_changes_content(session, obj):
            session.info[_CHANGED] = True
            return


@event.listens_for(Session, "do_orm_execute")
def _note_statements(state: ORMExecuteState) -> None:
    # INSERT/UPDATE/DELETE written as statements (sync's bulk writes, the pipeline's claims).
    if state.session.info.get(_CHANGED) or not (state.is_insert or state.is_update or state.is_delete):
        return
    statement: Any = state.statement
    table = getattr(getattr(statement, "table", None), "name", None)
    if not _is_content(table):
        return
    # An UPDATE that only touches work columns (a lease renewal) changes no page. The
    # SET clause of a plain update() is in `_values`; when it cannot be read, count it.
    values = getattr(statement, "_values", None)
    if state.is_update and values:
        names = {getattr(column, "key", str(column)) for column in values}
        if names <= WORK_COLUMNS:
            return
    state.session.info[_CHANGED] = True


@event.listens_for(Session, "before_commit")
def _raise_generation(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.flush()  # what commit would flush next: its changes count too
    if not session.info.pop(_CHANGED, False):
        return
    bind = session.get_bind()
    if PageGeneration.__tablename__ not in Base.metadata.tables or bind.dialect.name not in ("postgresql", "sqlite"):
        return
    # Last statement of the transaction: the row lock is held only until the commit that
    # follows, and taken after every other lock, so two writers cannot deadlock on it.
    session.connection().execute(_raise_statement(bind.dialect.name))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_CHANGED, None)


# ---------------------------------------------------------------- the store


@dataclass
class Entry:
    generation: int
    stored_at: float
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class Store:
    """Least recently used entries up to ``max_bytes`` of bodies; thread-safe."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.size = 0
        self._entries: OrderedDict[tuple[str, ...], Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], generation: int, now: float) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.generation != generation or now - entry.stored_at >= self.max_age:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, ...], entry: Entry) -> None:
        if len(entry.body) > self.max_bytes // 8:
            return  # one huge answer must not push out everything else
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self.size += len(entry.body)
            while self.size > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0

    def _drop(self, key: tuple[str, ...]) -> None:
        self.size -= len(self._entries.pop(key).body)

    def __len__(self) -> int:
        return len(self._entries)


# ---------------------------------------------------------------- the middleware


class PageCache:
    """WSGI middleware in front of Flask (see the module docstring)."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        generation: Callable[[], int],
        store: Store,
        key_of: Callable[[Request], tuple[str, ...]],
        cookies: Iterable[str],
    ) -> None:
        self.app = app
        self.generation = generation
        self.store = store
        self.key_of = key_of
        self.cookies = tuple(sorted(set(cookies)))

    def _key(self, environ: WSGIEnvironment) -> tuple[str, ...] | None:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or "HTTP_AUTHORIZATION" in environ:
            return None
        request = Request(environ, populate_request=False, shallow=True)
        if any(name not in self.cookies for name in request.cookies):
            return None  # a session, or a cookie this key does not hold
        gzip = "gzip" if request.accept_encodings["gzip"] > 0 else ""
        return (
            environ.get("wsgi.url_scheme", "http"),
            request.host,
            request.full_path,
            gzip,
            *self.key_of(request),
            # Each preference cookie's own value too: what a view reads from it is its business.
            *(request.cookies.get(name, "") for name in self.cookies),
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        key = self._key(environ)
        if key is None:
            return self.app(environ, start_response)
        generation = self.generation()
        now = time.monotonic()
        entry = self.store.get(key, generation, now)
        if entry is not None:
            age = str(int(now - entry.stored_at))
            start_response(entry.status, [*entry.headers, ("Age", age)])
            return [] if environ["REQUEST_METHOD"] == "HEAD" else [entry.body]
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, exc_info)

        result = self.app(environ, capture)
        if (
            not environ.get(STORE)
            or environ["REQUEST_METHOD"] != "GET"
            or not answer.get("status", "").startswith("200")
            or any(name.lower() == "set-cookie" for name, _ in answer["headers"])
        ):
            return result
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        self.store.put(key, Entry(generation, now, answer["status"], list(answer["headers"]), body))
        return [body]


def generation_reader(engine: Engine) -> Callable[[], int]:
    """How a web process reads the generation: one indexed read per request."""
    if engine.dialect.name == "sqlite":
        # SQLite connections are not pooled here (hub.db), and opening one costs more
        # than the read: each server thread keeps its own for this read alone.
        local = threading.local()

        def read_sqlite() -> int:
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = engine.connect()
            try:
                with connection.begin():
                    return read_generation(connection)
            except Exception:
                local.connection = None
                connection.close()
                raise

        return read_sqlite

    def read_pooled() -> int:
        with engine.connect() as connection:
            return read_generation(connection)

    return read_pooled
