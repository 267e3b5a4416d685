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
    status: str  # "accepted" | "partially_quarantined" | "quarantined" (every row) | "batch_quarantined"
    message: str
    processed_at: str
    outliers: int = 0
    """Rows the outlier rule flagged (kept and counted in ``accepted``, or quarantined per config)."""
    released_from: str = ""
    """For a release: the quarantined batch it re-ran."""
    group: str = ""
    """The commit group: batches validated, written and committed together (their event files are named
    after it; one ledger line commits the whole group)."""

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
    """All complete records (a torn last line from a crash is ignored, with every record on it).

    A line holds one record or a JSON list of the records of one commit group.
    """
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():  # one line per commit, not per row
        try:
            parsed = json.loads(line)
            group = [BatchRecord(**r) for r in (parsed if isinstance(parsed, list) else [parsed])]
        except (json.JSONDecodeError, TypeError):
            continue
        records.extend(group)
    return records


def append_torn_safe(path: Path, record: BatchRecord | list[BatchRecord]) -> None:
    """Append ``record`` (or a group of records, as one line), first ending a torn last line (a crash
    mid-write) so the new line stays whole."""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        if torn:
            with path.open("a", encoding="utf-8") as f:
                f.write("\n")
    append_record(path, record)


def append_record(path: Path, record: BatchRecord | list[BatchRecord]) -> None:
    """Append one line durably (the last step of a group: it commits every batch on it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = [asdict(r) for r in record] if isinstance(record, list) else asdict(record)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
