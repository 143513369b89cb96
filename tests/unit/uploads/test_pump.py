"""The tus PATCH pump (hub.uploads.services._Pump): reused buffers must never hand on or hash wrong bytes."""

from __future__ import annotations

import hashlib
import io
import time

from werkzeug.exceptions import ClientDisconnected

from hub.media.storage.base import CHUNK_SIZE
from hub.uploads.services import _Pump

MiB = 1024 * 1024


class _Trickle(io.RawIOBase):
    """A socket-like body: readinto gives at most ``step`` bytes, then ends (or stops short)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = data
        self.step = step
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        n = min(len(view), self.step, len(self.data) - self.position)
        view[:n] = self.data[self.position : self.position + n]
        self.position += n
        return n


def _body(size: int) -> bytes:
    return b"".join(hashlib.sha256(str(n).encode()).digest() for n in range(size // 32 + 1))[:size]


def test_chunks_and_the_hash_are_the_body_even_when_the_hash_lags_behind() -> None:
    data = _body(7 * MiB + 12345)
    digest = hashlib.sha256()

    def slow_hash(chunk: bytes) -> None:
        time.sleep(0.02)  # the writer runs ahead; its buffers come round again meanwhile
        digest.update(chunk)

    pump = _Pump(_Trickle(data, step=100_003), len(data), [slow_hash], expected=len(data))
    written = bytearray()
    sizes = []
    for chunk in pump:
        sizes.append(len(chunk))
        written += chunk  # the store copies the chunk before asking for the next
    pump.drain()
    assert bytes(written) == data
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    # Short socket reads are gathered: whole MiB writes, a short one only at the end.
    assert sizes[:-1] == [CHUNK_SIZE] * (len(sizes) - 1) and pump.error is None and not pump.overflow


def test_a_body_cut_short_keeps_what_arrived() -> None:
    data = _body(3 * MiB)
    arrived = data[: 2 * MiB + 777]
    digest = hashlib.sha256()
    pump = _Pump(_Trickle(arrived, step=65536), len(data), [digest.update], expected=len(data))
    written = b"".join(bytes(chunk) for chunk in pump)
    pump.drain()
    assert written == arrived and digest.hexdigest() == hashlib.sha256(arrived).hexdigest()
    assert isinstance(pump.error, ClientDisconnected)


def test_a_body_past_the_upload_is_an_overflow() -> None:
    data = _body(MiB + 10)
    pump = _Pump(_Trickle(data, step=MiB), MiB, [], expected=None)
    written = b"".join(bytes(chunk) for chunk in pump)
    pump.drain()
    assert written == data[:MiB] and pump.overflow
