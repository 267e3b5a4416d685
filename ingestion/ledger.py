"""The ingestion ledger: one record per processed file, keyed by content hash (processed once)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class BatchRecord:
    """What happened to one file. ``rows_read == accepted + quarantined + duplicates``."""

    batch_id: str
    channel: str
    file: str
    sha256: str
    rows_read: int
    accepted: int
    quarantined: int
    duplicates: int
    status: str  # "accepted" | "partially_quarantined" | "batch_quarantined"
    message: str
    processed_at: str
    outliers: int = 0
    """Rows the outlier rule flagged (kept and counted in ``accepted``, or quarantined per config)."""
    released_from: str = ""
    """For a release: the quarantined batch it re-ran."""

    @property
    def balanced(self) -> bool:
        """The accounting equation holds."""
        return self.rows_read == self.accepted + self.quarantined + self.duplicates


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_ledger(path: Path) -> list[BatchRecord]:
    """All complete records (a torn last line from a crash is ignored)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():  # one line per file, not per row
        try:
            records.append(BatchRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue
    return records


def append_torn_safe(path: Path, record: BatchRecord) -> None:
    """Append ``record``, first ending a torn last line (a crash mid-write) so the record stays whole."""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        if torn:
            with path.open("a", encoding="utf-8") as f:
                f.write("\n")
    append_record(path, record)


def append_record(path: Path, record: BatchRecord) -> None:
    """Append one record durably (the last step of a batch: it commits the batch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())
