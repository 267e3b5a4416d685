"""The one advisory file lock (``flock``) every lock of the project is built on.

The kernel releases an ``flock`` when its holder exits, even after ``kill -9``, so no lock is ever
left stale. ``wait=None`` blocks until the lock is free; a number waits that many seconds (0: try
once) and then raises :class:`LockTimeout`.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(TimeoutError):
    """The lock was held by another process for longer than the caller would wait."""


@contextmanager
def file_lock(path: Path, wait: float | None = None, poll: float = 0.1) -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block; yields the open
    descriptor (a holder may write who it is into the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"{path} is held by another process; waited {wait:g}s") from None
                    time.sleep(poll)
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
