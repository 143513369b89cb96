"""The index on disk: one writer at a time, rebuilds swapped in atomically, a schema stamp.

Layout of ``HUB_INDEX_DIR``::

    CURRENT            name of the live generation directory (replaced atomically)
    write.lock         flock'ed by the one writer; holds its pid for diagnostics
    gen-<time>-<rand>/ a complete Whoosh index + hub-stamp.json (schema version)

Why generations: ``hub search rebuild`` writes a whole new index beside the
live one while searches keep reading the old one, then swaps ``CURRENT`` with
``os.replace`` (atomic on POSIX). The previous generation is kept until the
next rebuild, because a searcher in another process may still have its files
open for a moment; older ones are deleted.

Why ``flock``: the kernel drops the lock when its holder dies, so a crashed or
killed writer never leaves a stale lock behind. A leftover lock *file* is
harmless (the lock is the flock, not the file), and Whoosh's own WRITELOCK
inside a generation uses flock too. Half-written segments of a crashed writer
are never referenced by a TOC and are removed by the next commit.

The stamp is what makes an index trusted: a generation without a matching
``hub-stamp.json`` (old schema, a crash mid-rebuild, files copied from
elsewhere) is treated as missing and rebuilt. Whoosh keeps its schema as a
pickle, so an index directory must only ever come from this machine's own
rebuild, never from a bundle or another hub.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import heapq
import itertools
import json
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from queue import Empty as QueueEmpty
from queue import Full as QueueFull
from typing import Any

import whoosh  # type: ignore[import-untyped]
from whoosh import index as whoosh_index
from whoosh.filedb.filestore import FileStorage  # type: ignore[import-untyped]
from whoosh.searching import Searcher  # type: ignore[import-untyped]
from whoosh.util.numeric import byte_to_length, length_to_byte  # type: ignore[import-untyped]
from whoosh.writing import LockError, SegmentWriter  # type: ignore[import-untyped]

from hub.locks import LockBusy, file_lock
from hub.search.documents import Document
from hub.search.schema import SCHEMA_VERSION, make_schema
from hub.search.scoring import BM25F

log = logging.getLogger(__name__)

STAMP = "hub-stamp.json"
CURRENT = "CURRENT"
LOCK = "write.lock"

# Memory a posting costs while a rebuild pools it (its tuple, float, value bytes and list
# slot): about 105 bytes measured at 10,000 lessons (~220 postings a document), plus headroom.
BYTES_PER_POSTING = 150

PR_SET_PDEATHSIG = 1  # prctl(2)
PART_BATCH = 100  # documents handed to a part builder at a time (~280 KB pickled)


class IndexBusy(Exception):
    """Another process holds the writer lock; the caller retries later."""


class IndexUnavailable(Exception):
    """There is no usable index yet (missing, corrupt or of an old schema)."""


@dataclass(frozen=True)
class IndexState:
    status: str  # ok | missing | outdated | corrupt
    generation: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Stamp:
    schema_version: int
    whoosh_version: str
    documents: int
    built_at: float


class SearchIndex:
    """A directory of index generations; thread-safe within a process."""

    def __init__(self, root: Path, *, rebuild_memory_mb: int = 1024, rebuild_processes: int = 1) -> None:
        self.root = root
        self.rebuild_memory_mb = rebuild_memory_mb
        self.rebuild_processes = rebuild_processes
        self._lock = threading.RLock()
        self._searcher: Searcher | None = None
        self._generation = ""
        self._current_stat: tuple[int, int] | None = None

    # -- state ---------------------------------------------------------------

    def current_generation(self) -> str:
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return ""
        # Only a plain directory name under root: CURRENT is never a path elsewhere.
        return name if name.startswith("gen-") and "/" not in name and ".." not in name else ""

    def read_stamp(self, generation: str) -> Stamp | None:
        try:
            data = json.loads((self.root / generation / STAMP).read_text())
            return Stamp(
                int(data["schema_version"]),
                str(data["whoosh_version"]),
                int(data["documents"]),
                float(data["built_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def state(self) -> IndexState:
        """Cheap check (two small files): is there a live generation of the current schema?"""
        generation = self.current_generation()
        if not generation or not (self.root / generation).is_dir():
            return IndexState("missing", generation)
        stamp = self.read_stamp(generation)
        if stamp is None:
            return IndexState("corrupt", generation, "no readable schema stamp")
        if stamp.schema_version != SCHEMA_VERSION:
            return IndexState("outdated", generation, f"schema {stamp.schema_version}, code expects {SCHEMA_VERSION}")
        return IndexState("ok", generation)

    def verify(self) -> IndexState:
        """Thorough check: also open the index and read it."""
        state = self.state()
        if not state.ok:
            return state
        try:
            with self.searcher() as searcher:
                searcher.doc_count()
        except Exception as exc:  # noqa: BLE001 - any failure to read means the files are damaged
            return IndexState("corrupt", state.generation, f"{type(exc).__name__}: {exc}")
        return state

    # -- reading -------------------------------------------------------------

    @contextlib.contextmanager
    def searcher(self) -> Iterator[Searcher]:
        """The live searcher, reopened when a commit or a swap happened since.

        One searcher per process, used under a lock: Whoosh searchers are not
        safe to share between threads, and with the GIL a pure-Python search
        gains nothing from running two at once anyway.
        """
        with self._lock:
            yield self._fresh_searcher()

    def _fresh_searcher(self) -> Searcher:
        try:
            st = os.stat(self.root / CURRENT)
            current_stat: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            current_stat = None
        if self._searcher is not None and current_stat == self._current_stat and self._searcher.up_to_date():
            return self._searcher
        # Not Searcher.refresh(): Whoosh 2.7 reuses a segment's reader when the
        # segment id is unchanged, with its old set of deleted documents, so a
        # withdrawn course would stay findable. A new searcher is cheap, and
        # the bitmap caches (keyed by segment and deletion count) survive it.
        state = self.state()
        if not state.ok:
            raise IndexUnavailable(f"search index {state.status}: {state.detail or self.root}")
        try:
            ix = whoosh_index.open_dir(str(self.root / state.generation))
            searcher = ix.searcher(weighting=BM25F())
        except Exception as exc:
            raise IndexUnavailable(f"search index corrupt: {type(exc).__name__}: {exc}") from exc
        self.close()
        self._searcher, self._generation, self._current_stat = searcher, state.generation, current_stat
        return searcher

    def close(self) -> None:
        with self._lock:
            if self._searcher is not None:
                with contextlib.suppress(Exception):
                    self._searcher.close()
            self._searcher = None
            self._current_stat = None

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the one writer lock; :class:`IndexBusy` if another holder keeps it past ``wait`` seconds."""
        try:
            with file_lock(self.root / LOCK, wait) as fd:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()} since {time.time():.0f}\n".encode(), 0)
                try:
                    yield
                finally:
                    os.ftruncate(fd, 0)
        except LockBusy:
            holder = self.lock_holder() or "another process"
            raise IndexBusy(f"the search index is being written by {holder}") from None

    def lock_holder(self) -> str:
        """Who holds the writer lock, as it wrote itself down (empty when free)."""
        try:
            return (self.root / LOCK).read_text().strip()
        except OSError:
            return ""

    def update(self, course_id: int, documents: list[Document]) -> None:
        """Replace one course's documents. Caller holds :meth:`writer_lock`."""
        self.update_courses({course_id: documents})

    def update_courses(self, documents: Mapping[int, list[Document]]) -> None:
        """Replace the documents of each course (none: it goes), in one commit. Caller holds :meth:`writer_lock`."""
        state = self.state()
        if not state.ok:
            raise IndexUnavailable(f"search index {state.status}")
        ix = whoosh_index.open_dir(str(self.root / state.generation))
        try:
            writer = ix.writer(limitmb=64)
        except LockError as exc:
            raise IndexBusy("Whoosh's own write lock is held") from exc
        try:
            for course_id, course_documents in documents.items():
                writer.delete_by_term("course", str(course_id))
                for document in course_documents:
                    writer.add_document(**document)
            writer.commit()
        except BaseException:
            writer.cancel()
            raise
        finally:
            ix.close()

    def rebuild(self, documents: Iterable[Document], files: Mapping[str, str] | None = None) -> int:
        """Write every document into a new generation and swap it in. Caller holds :meth:`writer_lock`.

        ``files`` (name → text) are written into the generation before it goes live
        (the cursor it follows the change log from: :mod:`hub.search.replica`).

        Streams: the postings of at most ``rebuild_memory_mb`` are held at a time; each
        time the budget is reached they are written out as one segment and the next
        segment starts (see :class:`BulkWriter`), so memory stays flat whatever the
        catalog's size. The segments are then merged into one (:class:`_MergeWriter`).

        In parallel where it pays: when the catalog outgrows one segment (so the segments
        are merged anyway) and ``rebuild_processes`` > 1, the rest of the documents go to
        that many part builders, processes that analyse them and write segments with a
        share of the memory budget each, while this one reads and hands them out; the
        merge then reads every segment. In a daemonic process (which may not start
        children) the rebuild stays here.
        """
        generation = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        path = self.root / generation
        path.mkdir(parents=True)
        budget = self.rebuild_memory_mb * 1024 * 1024 // BYTES_PER_POSTING
        parallel = self.rebuild_processes > 1 and not multiprocessing.current_process().daemon
        try:
            ix = whoosh_index.create_in(str(path), make_schema())
            try:
                documents = iter(documents)
                count = _build_streamed(ix, documents, budget, one_segment=parallel)
                if parallel and (following := next(documents, None)) is not None:
                    parts = itertools.chain([following], documents)
                    count += _build_in_parallel(ix, path, parts, self.rebuild_processes, budget)
                elif len(ix._segments()) > 1:
                    _merge(ix, [(ix.storage, segment) for segment in ix._segments()])
            finally:
                ix.close()
            stamp = {
                "schema_version": SCHEMA_VERSION,
                "whoosh_version": whoosh.versionstring(),
                "documents": count,
                "built_at": time.time(),
            }
            for name, text in (files or {}).items():
                _write_atomically(path / name, text)
            _write_atomically(path / STAMP, json.dumps(stamp))
            previous = self.current_generation()
            _write_atomically(self.root / CURRENT, generation + "\n")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self._remove_old_generations(keep={generation, previous})
        return count

    def _remove_old_generations(self, keep: set[str]) -> None:
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep:
                # Anything else here is ours: old generations and Whoosh files
                # of a pre-generation layout, or a half-built generation.
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_file() and child.name not in (CURRENT, LOCK):
                child.unlink(missing_ok=True)

    def destroy(self) -> None:
        """Remove every generation (tests, and `hub search rebuild --clean`)."""
        self.close()
        if self.root.exists():
            shutil.rmtree(self.root)


def _build_streamed(ix: Any, documents: Iterator[Document], budget: int, one_segment: bool = False) -> int:
    """Add documents to ``ix``, a segment written each time ``budget`` postings are pooled; how many were added.

    With ``one_segment``, stop after the first segment that reaches the budget and leave
    the rest of ``documents`` unread.
    """
    count = 0
    writer: BulkWriter | None = None
    try:
        for document in documents:
            if writer is None:
                writer = BulkWriter(ix)
            writer.add_document(**document)
            count += 1
            if writer.postings >= budget:
                writer.commit(merge=False)
                writer = None
                if one_segment:
                    break
        if writer is not None:
            writer.commit(merge=False)
            writer = None
    except BaseException:
        if writer is not None:
            writer.cancel()
        raise
    return count


def _merge(ix: Any, sources: list[tuple[Any, Any]]) -> None:
    """Replace every segment of ``ix`` by one holding ``sources``' documents ((storage, segment) pairs)."""
    writer = _MergeWriter(ix)
    try:
        writer.merge_all(sources)
    except BaseException:
        writer.cancel()
        raise


def _build_in_parallel(ix: Any, path: Path, documents: Iterable[Document], processes: int, budget: int) -> int:
    """Hand ``documents`` out in batches to ``processes`` part builders, then merge theirs and ``ix``'s segments.

    Each part is an index of its own in ``path/part-N`` (Whoosh lets one writer at a time
    commit to an index), removed once merged. Documents go through one bounded queue that
    every part reads from, so a slow part takes fewer batches and the reader here never
    runs more than a few batches ahead.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of the caller's threads or sockets
    queue: Any = context.Queue(maxsize=2 * processes)
    parts = [path / f"part-{n}" for n in range(processes)]
    workers = [
        context.Process(target=_build_part, args=(str(part), queue, budget // processes), name=f"hub-search-part-{n}")
        for n, part in enumerate(parts)
    ]
    try:
        for worker in workers:
            worker.start()
        count = 0
        for batch in _batches(documents, PART_BATCH):
            _hand_out(queue, batch, workers)
            count += len(batch)
        for _ in workers:
            _hand_out(queue, None, workers)
        for worker in workers:
            worker.join()
        if failed := [worker.exitcode for worker in workers if worker.exitcode != 0]:
            raise RuntimeError(f"search rebuild: a part builder failed (exit code {failed[0]})")
        sources = [(ix.storage, segment) for segment in ix._segments()]
        for part in parts:
            part_ix = whoosh_index.open_dir(str(part))
            sources += [(part_ix.storage, segment) for segment in part_ix._segments()]
            part_ix.close()
        _merge(ix, sources)
        return count
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            if worker.pid is not None:
                worker.join()
        # Nothing is left to flush on success (every part read up to its end marker); after a
        # failure, waiting for the queue's feeder thread to flush into a dead pipe would hang.
        queue.cancel_join_thread()
        queue.close()
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)


def _die_with_parent() -> None:
    """Have the kernel kill this process when the rebuilder dies (Linux; elsewhere the queue's poll notices).

    Polling alone is not enough: a rebuilder killed while its queue's feeder thread was
    writing a batch leaves half a message in the pipe, and a part reading it waits for the
    rest forever, since the other parts hold the pipe's write end open too.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():  # died before the prctl
        os._exit(1)


def _batches(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(documents)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _hand_out(queue: Any, batch: list[Document] | None, workers: list[Any]) -> None:
    while True:
        try:
            queue.put(batch, timeout=1.0)
            return
        except QueueFull:
            # A part that read its end marker exits with 0 while the others still read.
            if dead := [worker for worker in workers if worker.exitcode not in (None, 0)]:
                raise RuntimeError(f"search rebuild: a part builder stopped (exit code {dead[0].exitcode})") from None


def _build_part(folder: str, queue: Any, budget: int) -> None:
    """A part builder's process: analyse the batches it takes and write them as segments of its own index."""
    _die_with_parent()
    gc.disable()  # millions of small acyclic objects: see hub.search.services._no_cyclic_gc
    parent = multiprocessing.parent_process()

    def documents() -> Iterator[Document]:
        while True:
            try:
                batch = queue.get(timeout=5.0)
            except QueueEmpty:
                if parent is not None and not parent.is_alive():
                    raise SystemExit(1) from None  # the rebuild was killed: do not linger
                continue
            if batch is None:
                return
            yield from batch

    os.mkdir(folder)
    ix = whoosh_index.create_in(folder, make_schema())
    try:
        _build_streamed(ix, documents(), budget)
    finally:
        ix.close()


class _TermPool:
    """Postings grouped by term as they arrive, instead of Whoosh's one big sort.

    A rebuild adds documents in docnum order, so each term's list is already
    sorted: only the distinct terms (~1 in 20 postings) need sorting. Whoosh's
    PostingPool sorts every posting tuple and, past its memory limit, merges
    sorted runs from disk with a Python heap, which at 100,000 lessons was
    the largest single cost of a rebuild (see benchmarks/search/RESULTS.md).
    """

    def __init__(self) -> None:
        self.terms: dict[tuple[str, bytes], list[tuple[int, float, bytes]]] = {}
        self.fieldnames: set[str] = set()

    def iter_postings(self) -> Iterator[tuple[str, bytes, int, float, bytes]]:
        for key in sorted(self.terms):
            fieldname, btext = key
            for docnum, weight, vbytes in self.terms[key]:
                yield fieldname, btext, docnum, weight, vbytes

    def cleanup(self) -> None:
        self.terms = {}


class _Lengths:
    """Field lengths kept in memory while the segment is written (Whoosh re-reads them from disk per posting)."""

    def __init__(self, lengths: dict[str, list[int]]) -> None:
        self._lengths = lengths

    def doc_field_length(self, docnum: int, fieldname: str, default: int = 0) -> int:
        lengths = self._lengths.get(fieldname)
        return lengths[docnum] if lengths is not None else default

    def close(self) -> None:
        pass


class BulkWriter(SegmentWriter):  # type: ignore[misc]
    """Whoosh 2.7's SegmentWriter with a faster path for a full rebuild.

    Same segment format on disk (it only changes how postings are gathered
    before the codec writes them), so the result is read by stock Whoosh.
    Tied to Whoosh-Reloaded 2.7.5's SegmentWriter internals, which is one
    reason that version is pinned exactly.
    """

    def __init__(self, ix: Any, **kwargs: Any) -> None:
        super().__init__(ix, **kwargs)
        self.pool = _TermPool()
        self.postings = 0  # pooled so far: the caller starts a new segment past its budget
        self._field_lengths: dict[str, list[int]] = {}
        self._fields = {name: self.schema[name] for name in self.schema.names()}

    def add_document(self, **fields: Any) -> None:
        self._check_state()
        perdocwriter = self.perdocwriter
        docnum = self.docnum
        terms = self.pool.terms
        pooled = 0
        perdocwriter.start_doc(docnum)
        try:
            for fieldname in sorted(fields):
                value = fields[fieldname]
                if value is None:
                    continue
                field = self._fields[fieldname]
                length = 0
                if field.indexed:
                    self.pool.fieldnames.add(fieldname)
                    for tbytes, freq, weight, vbytes in field.index(value):
                        length += freq
                        pooled += 1
                        key = (fieldname, tbytes)
                        postings = terms.get(key)
                        if postings is None:
                            terms[key] = [(docnum, weight, vbytes)]
                        else:
                            postings.append((docnum, weight, vbytes))
                if not field.scorable:
                    length = 0
                else:
                    # Stored as one byte: keep the same approximation for block stats.
                    self._field_lengths.setdefault(fieldname, []).extend(
                        [0] * (docnum - len(self._field_lengths.get(fieldname, [])))
                    )
                    self._field_lengths[fieldname].append(byte_to_length(length_to_byte(length)))
                perdocwriter.add_field(fieldname, field, value if field.stored else None, length)
        except Exception:
            perdocwriter.cancel_doc()
            raise
        perdocwriter.finish_doc()
        self.postings += pooled
        self._added = True
        self.docnum += 1

    def _flush_segment(self) -> None:
        self.perdocwriter.close()
        count = self.docnum
        lengths = {name: values + [0] * (count - len(values)) for name, values in self._field_lengths.items()}
        self.fieldwriter.add_postings(self.schema, _Lengths(lengths), self.pool.iter_postings())
        self.fieldwriter.close()
        # Free the segment's postings now: the rebuild runs with the cyclic collector off,
        # and a writer caught in a reference cycle would otherwise keep them alive.
        self.pool.cleanup()
        self._field_lengths = {}


class _MergeWriter(BulkWriter):
    """The segments of a streamed rebuild merged into one, term by term, with bounded memory.

    Queries pay for every segment (Whoosh builds each term's matcher once per
    segment: at 10,000 lessons six segments made p95 3× slower than one), so a
    rebuild ends with one. Each segment's terms are already sorted, so merging is
    a heap over one posting stream per segment: memory is a few postings per
    segment plus the documents' field lengths, never the postings themselves.
    (Whoosh's own merge re-pools and sorts every posting.)
    """

    def merge_all(self, sources: list[tuple[Any, Any]]) -> None:
        """Write one segment with the documents of ``sources`` ((storage, segment) pairs) and drop every other."""
        from whoosh.reading import SegmentReader  # type: ignore[import-untyped]

        # Read the segments with plain reads, not mmap: each is read once from start to
        # end, and mapped pages would count in the rebuild's memory (the whole index by the end).
        readers = [
            SegmentReader(FileStorage(storage.folder, supports_mmap=False), self.schema, segment)
            for storage, segment in sources
        ]
        try:
            fieldnames = set(self.schema.names())
            scorable = [name for name, field in self._fields.items() if field.scorable]
            streams = []
            for reader in readers:
                base = self.docnum
                count = reader.doc_count_all()
                for name in scorable:
                    self._field_lengths.setdefault(name, []).extend(
                        reader.doc_field_length(docnum, name) for docnum in range(count)
                    )
                self.write_per_doc(fieldnames, reader)  # stored fields and lengths; a fresh build has no deletions
                streams.append(_rebased(reader.iter_postings(), base))
            # BM25's average field lengths: the exact totals the segments kept, not the sum of
            # the one-byte approximations per document that write_per_doc passes on.
            totals: dict[str, int] = {}
            for reader in readers:
                for name, total in reader.segment()._fieldlengths.items():
                    totals[name] = totals.get(name, 0) + total
            self.perdocwriter._fieldlengths.clear()
            self.perdocwriter._fieldlengths.update(totals)
            self._streams = streams
            self._added = True
            self.commit(mergetype=_drop_all)
        finally:
            for reader in readers:
                reader.close()

    def _flush_segment(self) -> None:
        self.perdocwriter.close()
        count = self.docnum
        lengths = {name: values + [0] * (count - len(values)) for name, values in self._field_lengths.items()}
        postings = heapq.merge(*self._streams, key=_term_of)
        self.fieldwriter.add_postings(self.schema, _Lengths(lengths), postings)
        self.fieldwriter.close()
        self._field_lengths = {}


def _rebased(
    postings: Iterator[tuple[str, bytes, int, float, bytes]], base: int
) -> Iterator[tuple[str, bytes, int, float, bytes]]:
    for fieldname, btext, docnum, weight, value in postings:
        yield fieldname, btext, docnum + base, weight, value


def _term_of(posting: tuple[str, bytes, int, float, bytes]) -> tuple[str, bytes]:
    return posting[0], posting[1]


def _drop_all(writer: Any, segments: list[Any]) -> list[Any]:
    return []  # the merged segment replaces every one


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    # The rename is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
