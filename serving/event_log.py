"""The durable log of events posted to the service: one JSON-lines file per accepted batch.

A file is written to a temporary name, flushed to disk (fsync), then renamed into the ``api``
channel's folder and the folder itself is synced, so once ``append`` returns the batch survives a
crash, and ``persona ingest`` never sees a half-written file (the channel glob ignores the
temporary names). Ingest dedupes by event id, so a batch that is re-sent is counted once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from base.durable import replace_durably


def append(folder: Path, records: Sequence[dict[str, Any]], now: datetime | None = None) -> Path:
    """Write one batch durably; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    now = now or datetime.now(timezone.utc)
    name = f"events-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.jsonl"
    tmp = folder / f".{name}.tmp"
    body = "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(body)
    return replace_durably(tmp, folder / name)


def read_all(folder: Path) -> list[dict[str, Any]]:
    """Every logged event, oldest file first (for tests and audits)."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("events-*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out
