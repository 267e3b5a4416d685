"""The inbox protocol of the service's event log (the ``api`` channel): live segments and sealing.

A writer (one per service worker) appends each accepted batch to its *live segment*, a hidden file
``.events-live-<writer>.open`` the channel glob never matches: it opens the file, takes an exclusive
``flock``, checks the path still names the file it holds (ingest may have sealed it meanwhile), appends,
``fsync``s, and lets go. Ingest *seals* every live segment before it lists the inbox: under the same
lock it renames the segment to ``events-<time>-<id>.jsonl`` (a name the glob matches), so the sealed
file never changes again and the writer's next append starts a new live segment. So a run sees every
event answered with 200 before it started, a sealed file is read once, and the number of files follows
the number of runs (or ``SEGMENT_BYTES``), not the number of POSTs. A crashed writer's segment is
sealed by the next ingest like any other.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

from base.durable import fsync_path

LIVE_PREFIX = ".events-live-"
LIVE_SUFFIX = ".open"
SEGMENT_BYTES = 64 << 20
"""A writer seals its own segment once it holds this many bytes."""


def sealed_name(now: datetime | None = None) -> str:
    """A new, unique name for a sealed segment (sorts by time)."""
    now = now or datetime.now(timezone.utc)
    return f"events-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.jsonl"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev)


def append_live(folder: Path, writer: str, body: bytes) -> tuple[Path, int]:
    """Append ``body`` durably to the writer's live segment; returns (segment, its size after)."""
    path = folder / f"{LIVE_PREFIX}{writer}{LIVE_SUFFIX}"
    while True:
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not _same_file(fd, path):  # sealed (renamed) or removed while we waited: start a new one
                continue
            os.write(fd, body)
            os.fsync(fd)
            if created:
                fsync_path(folder)  # the new name is on disk too
            return path, os.fstat(fd).st_size
        finally:
            os.close(fd)  # closing lets go of the lock


def seal(path: Path, *, block: bool = True) -> Path | None:
    """Seal one live segment (rename it to a sealed name); an empty one is removed. Returns the sealed
    file, or None (empty, gone, or busy when ``block`` is False)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        if not _same_file(fd, path):
            return None
        if os.fstat(fd).st_size == 0:
            path.unlink()
            return None
        target = path.with_name(sealed_name())
        os.rename(path, target)
        fsync_path(path.parent)
        return target
    finally:
        os.close(fd)


def seal_all(folder: Path) -> list[Path]:
    """Seal every live segment in ``folder`` (each waits at most for one append in flight)."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob(f"{LIVE_PREFIX}*{LIVE_SUFFIX}")):
        sealed = seal(path)
        if sealed is not None:
            out.append(sealed)
    return out
