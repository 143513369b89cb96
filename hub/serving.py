"""`hub serve` on every core: waitress in several processes sharing one listening socket.

Why processes of waitress rather than another server (benchmarks/pages/RESULTS.md
has the numbers): a page costs milliseconds of Python, and one process's threads
share one interpreter lock, so one process never used more than one of the two
cores. Several processes do. Each one keeps what waitress gives the hub: an I/O
loop that sends downloads and course ZIPs as slow clients drain them (no thread
held by a 2G link, see README "Downloads on slow links"), pure Python on every
platform, and the same settings as one process. gunicorn's sync and threaded
workers would hold a worker for as long as a slow client reads; that is only
safe behind a buffering proxy, which a school server does not have.

The parent binds the socket, starts ``processes`` children (``python -m
hub.serving``, each builds its own app: nothing is shared after a fork, no
database connection, no thread) and hands each the socket. The kernel gives
each new connection to whichever child accepts it first, so an idle child takes
the next one. A child that dies is started again (after a pause if it keeps
dying); SIGTERM or SIGINT stops them all; a child whose parent is gone stops.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

# waitress's own settings for the hub, the same in one process or many.
WAITRESS: dict[str, Any] = {
    # poll(), not select(): select() cannot watch descriptors past 1024, and scans every
    # socket on each wake-up of the I/O loop that sends the slow downloads.
    "asyncore_use_poll": True,
    # waitress reads request bodies 8 KiB per recv() by default: a 32 MiB tus PATCH
    # was 4,096 turns of its Python I/O loop, 0.9 s of CPU per 256 MiB uploaded
    # (benchmarks/uploads/RESULTS.md); 256 KiB brings that to ~0.15 s.
    "recv_bytes": 256 * 1024,
    "ident": "oer-hub",
}
RESTART_PAUSE = 1.0  # seconds before a child that died is started again (doubling up to a minute)


def default_processes() -> int:
    """One process per core the hub may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def serve_in_process(app: Any, *, threads: int, connections: int, **where: Any) -> None:
    """waitress in this process: ``where`` is host and port, or sockets."""
    from waitress import serve as waitress_serve

    # waitress stops accepting at 100 open connections by default, which 100 slow
    # downloads reach on their own; an open connection costs a socket, not a thread.
    waitress_serve(app, threads=threads, connection_limit=connections, **where, **WAITRESS)


# The upload listener (HUB_UPLOAD_PORT) answers these paths only, whatever a proxy sends it.
UPLOADS_PATH = "/api/v1/uploads"
# A PATCH whose client sends nothing for this long ends, giving back its thread and the
# upload's lock; what arrived is kept and the client resumes from HEAD. Shorter than the
# lock's wait (hub.uploads.services.LOCK_WAIT_SECONDS, 20 s), so a client that takes over
# from a silent connection (a laptop closed mid-PATCH) gets the lock instead of 423.
# README's nginx location sets client_body_timeout to the same.
UPLOAD_IDLE_SECONDS = 15


def uploads_only(app: Any) -> Callable[[dict[str, Any], Any], Any]:
    """The app for the tus paths; 404 for anything else (pages and downloads stay on waitress)."""

    def only_uploads(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == UPLOADS_PATH or path.startswith(UPLOADS_PATH + "/"):
            return app(environ, start_response)
        body = b"Not Found: this port serves /api/v1/uploads/ only.\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return only_uploads


class SocketBody:
    """A PATCH body read straight from the connection's socket (``wsgi.input`` of the upload listener).

    cheroot hands the app its ``KnownLengthRFile``, which reads through a pure-Python
    buffered reader (``_pyio``): every MiB of a tus PATCH was assembled from socket
    reads in Python and copied into a new bytes object, which on this VM cost more CPU
    than the SHA-256 of the same bytes (benchmarks/uploads/RESULTS.md, issue 19). This
    adds ``readinto``, which werkzeug's LimitedStream and the tus pump use: the bytes
    cheroot already buffered come first, then ``recv_into`` the caller's buffer, with
    the socket's timeout (UPLOAD_IDLE_SECONDS) as before. The wrapped reader's
    ``remaining`` is kept true, so cheroot still knows how much body is left to skip
    when the app stops early (a refused PATCH).
    """

    def __init__(self, rfile: Any, sock: socket.socket) -> None:
        self._rfile = rfile  # cheroot.server.KnownLengthRFile
        self._buffered = rfile.rfile  # cheroot.makefile.StreamReader, the connection's
        self._sock = sock

    @property
    def remaining(self) -> int:
        return int(self._rfile.remaining)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(view.nbytes, self._rfile.remaining)
        if want <= 0:
            return 0
        if self._buffered.has_data():
            # At most what is buffered: read1 makes no socket read while bytes are buffered.
            data = self._buffered.read1(want)
            got = len(data)
            view[:got] = data
        else:
            got = self._sock.recv_into(view[:want])
            self._buffered.bytes_read += got
        self._rfile.remaining -= got
        return got

    def read(self, size: int | None = None) -> bytes:
        return bytes(self._rfile.read(size))

    def readline(self, size: int | None = None) -> bytes:
        return bytes(self._rfile.readline(size))

    def readlines(self, sizehint: int = 0) -> list[bytes]:
        return list(self._rfile.readlines(sizehint))

    def close(self) -> None:
        self._rfile.close()

    def __iter__(self) -> Any:
        return iter(self._rfile)


def _socket_body_gateway() -> Any:
    """cheroot's WSGI 1.0 gateway, giving the app a :class:`SocketBody` for bodies of known length."""
    from cheroot import server as cheroot_server
    from cheroot import wsgi

    class SocketBodyGateway(wsgi.Gateway_10):
        def get_environ(self) -> Any:
            environ: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
            rfile = self.req.rfile
            # Chunked bodies keep cheroot's own reader (it parses the chunk framing);
            # TLS sockets keep it too, since an SSL socket's own buffer is not cheroot's.
            sock = self.req.conn.socket
            if isinstance(rfile, cheroot_server.KnownLengthRFile) and type(sock) is socket.socket:
                environ["wsgi.input"] = SocketBody(rfile, sock)
            return environ

    return SocketBodyGateway


def upload_server(app: Any, host: str, port: int, threads: int) -> Any:
    """A cheroot server for the tus route: the PATCH body is read from the socket as the app asks.

    Why a second server (benchmarks/uploads/RESULTS.md has the numbers): waitress reads
    every request body to its end, into a temporary file, before a thread runs the app,
    so a tus PATCH was received, written and read back, then written again. cheroot
    hands the app ``wsgi.input`` over the socket (a buffered reader): the tus service
    reads it 1 MiB at a time, hashes it and writes it to the upload's file once. The
    price is a thread per PATCH in flight for as long as its client sends, which is why
    this listener serves uploads only and belongs behind nginx (README "Uploads without
    the spool"). Chosen over gunicorn's threaded worker, which reads a body 8 KiB per
    ``recv`` in Python, runs on Unix only and needs a master process of its own.
    """
    from cheroot import wsgi

    server = wsgi.Server(
        (host, port),
        uploads_only(app),
        numthreads=threads,
        server_name="oer-hub-uploads",
        timeout=UPLOAD_IDLE_SECONDS,
        request_queue_size=64,
    )
    server.gateway = _socket_body_gateway()
    server.prepare()  # binds now: a port in use fails `hub serve` at start, not later in a thread
    return server


def start_upload_server(app: Any, host: str, port: int, threads: int) -> Any:
    """Serve uploads on ``port`` from a thread of this process; returns the server (``.stop()``)."""
    server = upload_server(app, host, port, threads)
    threading.Thread(target=server.serve, name="upload-listener", daemon=True).start()
    return server


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Not listening yet: each child's waitress listens once its app is built, so until the
    # first one is ready a client is refused (as by one process) rather than left waiting.
    sock.set_inheritable(True)
    return sock


class Children:
    """The server processes: started, watched, restarted, stopped."""

    def __init__(self, argv: list[str], count: int, env: dict[str, str] | None, fd: int) -> None:
        self.argv = argv
        self.count = count
        self.env = env
        self.fd = fd
        self.stopping = threading.Event()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start_one(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, env=self.env, pass_fds=(self.fd,))

    def run(self) -> None:
        """Start the children and keep them running until :meth:`stop`."""
        self.processes = [self.start_one() for _ in range(self.count)]
        pauses = [RESTART_PAUSE] * self.count
        while not self.stopping.wait(0.5):
            for n, process in enumerate(self.processes):
                code = process.poll()
                if code is None or self.stopping.is_set():
                    continue
                log.error("web server process %d exited (status %s); starting another", process.pid, code)
                if self.stopping.wait(pauses[n]):
                    break
                pauses[n] = min(60.0, pauses[n] * 2)
                self.processes[n] = self.start_one()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(
    factory: str,
    host: str,
    port: int,
    *,
    processes: int,
    threads: int,
    connections: int,
    env: dict[str, str] | None = None,
    app: Flask | None = None,
    upload_port: int = 0,
    upload_threads: int = 8,
) -> None:
    """Serve the app ``factory`` ("module:function") makes, in ``processes`` processes, until stopped.

    With one process and ``app`` given, that app is served here (no child). With
    ``upload_port``, this process also serves the tus route on that port, streaming
    (:func:`upload_server`): a thread here, since the parent otherwise only watches
    its children, and one process is enough for uploads (hashing and writing release
    the interpreter lock).
    """
    if app is None and (processes <= 1 or upload_port):
        app = load(factory)()
    uploads = start_upload_server(app, host, upload_port, upload_threads) if upload_port else None
    try:
        _serve(factory, host, port, processes=processes, threads=threads, connections=connections, env=env, app=app)
    finally:
        if uploads is not None:
            uploads.stop()


def _serve(
    factory: str,
    host: str,
    port: int,
    *,
    processes: int,
    threads: int,
    connections: int,
    env: dict[str, str] | None,
    app: Flask | None,
) -> None:
    if processes <= 1:
        serve_in_process(app if app is not None else load(factory)(), threads=threads, connections=connections,
                         host=host, port=port)  # fmt: skip
        return
    sock = listening_socket(host, port)
    argv = [sys.executable, "-m", "hub.serving", factory, "--fd", str(sock.fileno())]
    argv += ["--threads", str(threads), "--connections", str(connections), "--parent", str(os.getpid())]
    children = Children(argv, processes, env, sock.fileno())
    previous = _stop_on_signals(children)
    try:
        children.run()
    finally:
        children.stop()
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_on_signals(children: Children) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(_signum: int, _frame: Any) -> None:
        children.stopping.set()

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}


def load(factory: str) -> Callable[[], Any]:
    module, _, name = factory.partition(":")
    made: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return made


def _leave_with_parent(parent: int) -> None:
    # Killed outright (kill -9, the OOM killer), the parent cannot stop us: we notice.
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def child_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub.serving", description="One of `hub serve`'s processes.")
    parser.add_argument("factory")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    threading.Thread(target=_leave_with_parent, args=(args.parent,), name="serve-parent-watch", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    app = load(args.factory)()
    sock = socket.socket(fileno=args.fd)
    serve_in_process(app, threads=args.threads, connections=args.connections, sockets=[sock])


if __name__ == "__main__":
    child_main()
