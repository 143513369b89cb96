"""The upload listener's body reader (hub.serving.SocketBody), through a real cheroot server on loopback."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.wrappers import Request

from hub import serving

MiB = 1024 * 1024


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Reads ``X-Take`` bytes of the body the way the tus pump does (readinto), answers their sha256."""
    request = Request(environ)
    take = int(request.headers.get("X-Take", request.content_length or 0))
    buffer = bytearray(64 * 1024 + 7)  # not a divisor of anything sent: pieces of every size
    digest = hashlib.sha256()
    got = 0
    while got < take:
        n = request.stream.readinto(memoryview(buffer)[: min(len(buffer), take - got)])
        if not n:
            break
        digest.update(memoryview(buffer)[:n])
        got += n
    kind = type(environ["wsgi.input"]).__name__
    body = f"{got} {digest.hexdigest()} {kind}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def listener() -> Iterator[int]:
    server = serving.upload_server(lambda e, s: _app(e, s), "127.0.0.1", 0, threads=2)
    server.wsgi_app = _app  # not only /api/v1/uploads: this test's own app
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server.bind_addr[1]
    server.stop()
    thread.join(10)


def _request(body: bytes, take: int | None = None, path: str = "/api/v1/uploads/x") -> bytes:
    head = f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if take is not None:
        head += f"X-Take: {take}\r\n"
    return (head + "\r\n").encode()


def _reply(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    _head, _, rest = data.partition(b"\r\n\r\n")
    return rest[: _length(data)].decode()


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_a_body_read_from_the_socket_is_byte_identical(listener: int) -> None:
    body = hashlib.sha256(b"a").digest() * (3 * MiB // 32) + b"tail"
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as sock:
        # Head and the first 100 KiB in one send: cheroot buffers some of the body with the
        # head, which must come first; the rest arrives in odd pieces.
        sock.sendall(_request(body) + body[: 100 * 1024])
        for start in range(100 * 1024, len(body), 300_001):
            sock.sendall(body[start : start + 300_001])
        got, digest, kind = _reply(sock).split()
    assert (int(got), digest, kind) == (len(body), hashlib.sha256(body).hexdigest(), "SocketBody")


def test_a_body_the_app_leaves_half_read_does_not_spill_into_the_next_request(listener: int) -> None:
    first = b"x" * (2 * MiB)
    second = b"second request's body"
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as sock:
        sock.sendall(_request(first, take=MiB // 2) + first)
        got, digest, _ = _reply(sock).split()
        assert (int(got), digest) == (MiB // 2, hashlib.sha256(first[: MiB // 2]).hexdigest())
        # cheroot skips what the app left, knowing how much is left: the next request on the
        # same connection starts where it should.
        sock.sendall(_request(second) + second)
        got, digest, _ = _reply(sock).split()
    assert (int(got), digest) == (len(second), hashlib.sha256(second).hexdigest())


def test_a_cut_body_ends_with_what_arrived(listener: int) -> None:
    body = b"y" * MiB
    received: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        buffer = bytearray(MiB)
        total = 0
        stream = environ["wsgi.input"]
        while total < len(body):
            n = stream.readinto(memoryview(buffer)[total:])
            if not n:
                break
            total += n
        received.append(total)
        start_response("204 No Content", [])
        return []

    server = serving.upload_server(app, "127.0.0.1", 0, threads=1)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.bind_addr[1]), timeout=10) as sock:
            sock.sendall(_request(body) + body[:300_000])
            sock.shutdown(socket.SHUT_WR)
            sock.recv(100)
    finally:
        server.stop()
        thread.join(10)
    assert received == [300_000]
