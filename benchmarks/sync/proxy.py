"""A byte-counting TCP relay on loopback: what really crossed the wire, both directions.

    python -m benchmarks.sync.proxy LISTEN_PORT TARGET_PORT COUNTS_FILE

Both the hub's pull and the rsync reference go through one of these, so their
bytes are counted the same way (HTTP headers, manifest, rsync's file list and
checksums included) and both pay the same relay cost. On SIGTERM it writes
``{"down": bytes to the client, "up": bytes from it, "connections": n}`` as JSON
and exits.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

CHUNK = 256 * 1024


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = 0
        self.up = 0
        self.connections = 0

    def add(self, direction: str, n: int) -> None:
        with self.lock:
            setattr(self, direction, getattr(self, direction) + n)


def _pipe(src: socket.socket, dst: socket.socket, counter: Counter, direction: str) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
            counter.add(direction, len(data))
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, target_port: int, counter: Counter) -> None:
    with client, socket.create_connection(("127.0.0.1", target_port), timeout=600) as upstream:
        client.settimeout(600)
        with counter.lock:
            counter.connections += 1
        up = threading.Thread(target=_pipe, args=(client, upstream, counter, "up"), daemon=True)
        up.start()
        _pipe(upstream, client, counter, "down")
        up.join(timeout=600)


def main(argv: list[str]) -> int:
    listen_port, target_port, counts_file = int(argv[0]), int(argv[1]), Path(argv[2])
    counter = Counter()
    server = socket.create_server(("127.0.0.1", listen_port), backlog=128)

    def stop(signum: int, frame: FrameType | None) -> None:
        with counter.lock:
            counts_file.write_text(
                json.dumps({"down": counter.down, "up": counter.up, "connections": counter.connections})
            )
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, target_port, counter), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
