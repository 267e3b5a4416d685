"""The durable log of events posted to the service (the ``api`` channel's inbox).

Each accepted batch is appended to the writer's live segment and flushed to disk (fsync) before the
service answers, so once :meth:`EventLog.append` returns the batch survives a crash. Ingest seals the
live segments before each run (:mod:`ingestion.api_log`): one file per run, not one per POST, and a
half-written segment is never read. Every field is written, empty ones as null, so a file of page
views (no ``amount``) or anonymous visits (no ``user_id``) has the same columns as a file of purchases.
Ingest dedupes by event id, so a batch that is re-sent is counted once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from base.durable import replace_durably
from ingestion.api_log import (
    LIVE_PREFIX,
    LIVE_SUFFIX,
    SEGMENT_BYTES,
    append_live,
    seal,
    sealed_name,
)


def _body(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records).encode()


class EventLog:
    """One writer's log (a service worker): appends to its own live segment (thread-safe)."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.writer = uuid.uuid4().hex[:16]
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()

    def append(self, records: Sequence[dict[str, Any]]) -> Path:
        """Append one batch durably; returns the live segment it went to."""
        if not records:
            raise ValueError("nothing to log")
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path, size = append_live(self.folder, self.writer, _body(records))
            if size >= self.segment_bytes:
                seal(path)
            return path


def append(folder: Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write one batch as a sealed file of its own (tools and tests; the service uses :class:`EventLog`)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = sealed_name()
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(_body(records))
    return replace_durably(tmp, folder / name)


def read_all(folder: Path) -> list[dict[str, Any]]:
    """Every logged event, sealed files (oldest first) then live segments (for tests and audits)."""
    out: list[dict[str, Any]] = []
    files = sorted(folder.glob("events-*.jsonl")) + sorted(folder.glob(f"{LIVE_PREFIX}*{LIVE_SUFFIX}"))
    for path in files:
        with open(path, encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out
