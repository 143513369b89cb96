"""A broker the tests can take away and give back, on this run's broker.

- The SQLite broker (the default run): an exclusive transaction on its file, as
  a long write by another process would hold; every publish and poll waits for
  the lock and fails after its busy timeout.
- Redis (the service run): a TCP proxy on loopback in front of it. Cut, it
  closes every connection (as a restarting Redis would) and then accepts new
  ones but never answers them (as a hung server or a dropped network would:
  the harder case, where only timeouts help). Restored, it forwards again.
  ``CLIENT PAUSE`` would stop the Redis that other test runs share.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sqlite3
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hub.jobs import ALL_QUEUES


class TcpProxy:
    """Forwards loopback connections to ``target`` until cut; closes itself with :meth:`close`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.RLock()
        self._cut = False
        self._closed = False
        self._pairs: dict[socket.socket, socket.socket] = {}  # each side -> the other
        self._held: list[socket.socket] = []  # accepted while cut: never answered
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in list(self._pairs):
                self._drop(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            for sock in self._held:
                sock.close()
            self._held.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.cut()
            self.restore()
        self._thread.join(timeout=5)
        self._listener.close()

    def _loop(self) -> None:
        while True:
            events = self._selector.select(timeout=0.1)
            with self._lock:
                if self._closed:
                    return
                for key, _mask in events:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._pairs:
                        self._forward(sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        if self._cut:
            self._held.append(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._pairs[client], self._pairs[upstream] = upstream, client

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
            if data:
                self._pairs[sock].setblocking(True)
                self._pairs[sock].sendall(data)
                self._pairs[sock].setblocking(False)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        other = self._pairs.pop(sock, None)
        for each in (sock, other):
            if each is None:
                continue
            self._pairs.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            each.close()


class BrokerOutage:
    """Takes this test hub's broker away and gives it back.

    Build it before starting any process, and give them :attr:`env`: on Redis its
    broker URL points at the proxy.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)
        url = env.get("HUB_BROKER_URL") or f"sqla+sqlite:///{env['HUB_DATA_DIR']}/broker.db"
        self._proxy: TcpProxy | None = None
        self._lock: sqlite3.Connection | None = None
        self._sqlite: Path | None = None
        self._url = url
        parts = urlsplit(url)
        if parts.scheme.startswith("redis"):
            self._proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
            self.env["HUB_BROKER_URL"] = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self._proxy.port}"))
        elif parts.scheme == "sqla+sqlite":
            self._sqlite = Path(parts.path)
        else:
            raise NotImplementedError(f"no outage for broker {url}")

    def cut(self) -> None:
        if self._proxy is not None:
            self._proxy.cut()
            return
        assert self._sqlite is not None and self._sqlite.exists(), "the broker's file is made by its first use"
        self._lock = sqlite3.connect(self._sqlite, isolation_level=None, timeout=30)
        self._lock.execute("BEGIN EXCLUSIVE")

    def restore(self, *, empty: bool = False) -> None:
        """Give the broker back; ``empty``: without the messages it held, as a broker restarted without its data."""
        if self._proxy is not None:
            if empty:
                import redis

                client = redis.Redis.from_url(self._url)
                for queue in ALL_QUEUES:
                    for key in client.scan_iter(f"{queue}*"):
                        client.delete(key)
                client.close()
            self._proxy.restore()
        elif self._lock is not None:
            if empty:
                self._lock.execute("DELETE FROM kombu_message")
            self._lock.execute("COMMIT")
            self._lock.close()
            self._lock = None

    def close(self) -> None:
        self.restore()
        if self._proxy is not None:
            self._proxy.close()
