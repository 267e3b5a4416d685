"""One writer at a time: every command that writes the stores (ingest, quarantine release, run, update,
build-features, materialize, train) holds the data directory's writer lock.

The lock is an advisory ``flock`` on ``<data_dir>/.writer.lock``: the kernel releases it when the
holder exits, even after ``kill -9``, so a crashed writer never leaves a stale lock. Readers (the
report, ``persona quarantine list``) and the service never take it. A second writer waits up to
``validation.lock_wait_seconds`` and then gives up with :class:`WriterBusy` (the CLI exits with
:data:`EXIT_BUSY`, 75 = EX_TEMPFAIL: try again later). The lock is re-entrant within one thread of
one process (``persona update`` holds it and its ingest step takes it again).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path

from base.file_lock import LockTimeout, file_lock

EXIT_BUSY = 75
"""Exit code of a command that could not get the writer lock in time (EX_TEMPFAIL)."""

LOCK_NAME = ".writer.lock"

_HELD: ContextVar[tuple[str, ...]] = ContextVar("persona_writer_locks", default=())
"""Lock files this context already holds (re-entrancy; a context, not process-wide state)."""


class WriterBusy(RuntimeError):
    """Another process holds the writer lock (the message names it)."""


def lock_path(data_dir: Path) -> Path:
    """The writer lock file of a data directory."""
    return data_dir / LOCK_NAME


def holder(path: Path) -> str:
    """Who holds (or last held) the lock, as written by the holder."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "unknown process"
    return f"pid {info.get('pid', '?')} ({info.get('what', '?')}) since {info.get('since', '?')}"


@contextmanager
def writer_lock(data_dir: Path, what: str, wait: float = 0.0, poll: float = 0.1) -> Iterator[None]:
    """Hold the data directory's writer lock for the block; wait up to ``wait`` seconds for another
    holder, then raise :class:`WriterBusy` naming it."""
    path = lock_path(data_dir)
    key = f"{path.resolve()}@{threading.get_ident()}"
    if key in _HELD.get():
        yield
        return
    stack = ExitStack()
    try:
        fd = stack.enter_context(file_lock(path, wait=wait, poll=poll))
    except LockTimeout:
        raise WriterBusy(f"another writer holds {path}: {holder(path)}; "
                         f"waited {wait:g}s (validation.lock_wait_seconds)") from None
    with stack:
        info = {"pid": os.getpid(), "what": what, "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        token = _HELD.set((*_HELD.get(), key))
        try:
            yield
        finally:
            _HELD.reset(token)
