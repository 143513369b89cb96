"""A slow uplink on loopback: an HTTP proxy that forwards what a browser sends at a set rate.

Chromium's own throttling (DevTools' network conditions) holds an upload back and
then sends it at full speed, so a page's progress events never see a slow link.
This proxy reads the browser's bytes only as fast as the link allows, so the
browser's socket fills up and its upload progress follows the link, as on a phone.

It also keeps what the server was sent, request by request (method, path, tus
``Upload-Offset``, declared and forwarded body bytes), so a test can tell a byte
sent twice from one sent once. Responses come back at full speed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Sent:
    """One request as it passed the proxy."""

    method: str
    path: str
    upload_offset: int | None
    length: int
    """Its Content-Length."""
    forwarded: int = 0
    """Body bytes passed on to the server (less than ``length`` when the request was cut off)."""


class SlowLink:
    """Listens on loopback, forwards to ``target``; ``kbit_per_s`` None means no limit."""

    def __init__(self, target: tuple[str, int], kbit_per_s: float | None = None) -> None:
        self.target = target
        self.kbit_per_s = kbit_per_s
        self.requests: list[Sent] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        # A small receive window, as a mobile link has: otherwise the kernel would take
        # megabytes from the browser at loopback speed and its progress would run ahead.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="slow-link", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def sent(self, method: str) -> list[Sent]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        head = b""
        current: Sent | None = None
        body_left = 0
        try:
            while True:
                rate = self.kbit_per_s
                # 50 ms of the link per read, sent then waited for: the bytes arrive evenly.
                size = 65536 if rate is None else max(1024, int(rate * 1000 / 8 * 0.05))
                started = time.monotonic()
                data = client.recv(size)
                if not data:
                    break
                server.sendall(data)
                # Keep count of what went where: request heads, then their bodies.
                view = data
                while view:
                    if body_left:
                        taken = min(body_left, len(view))
                        body_left -= taken
                        assert current is not None
                        with self._lock:
                            current.forwarded += taken
                        view = view[taken:]
                        continue
                    head += view
                    view = b""
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    current, body_left = self._request(head[:end])
                    view, head = head[end + 4 :], b""
                if rate is not None:
                    time.sleep(max(0.0, len(data) * 8 / (rate * 1000) - (time.monotonic() - started)))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

    def _request(self, head: bytes) -> tuple[Sent, int]:
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        offset = headers.get("upload-offset")
        sent = Sent(method, path, int(offset) if offset is not None else None, length)
        with self._lock:
            self.requests.append(sent)
        return sent, length
