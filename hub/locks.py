"""One exclusive lock between processes on one machine: a flock on a file.

The kernel drops a flock when its holder dies, so a killed writer never leaves
a stale lock behind (unlike a lock file that merely exists).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


class LockBusy(Exception):
    """Someone else held the lock for longer than we were willing to wait."""


@contextlib.contextmanager
def file_lock(path: Path, wait: float = 0.0, poll: float = 0.05) -> Iterator[int]:
    """Hold an exclusive flock on ``path``; yields its file descriptor (the holder may note itself there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(str(path)) from None
                time.sleep(poll)
        yield fd
    finally:
        os.close(fd)  # closing releases the flock
