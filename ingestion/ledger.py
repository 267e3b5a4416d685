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


class LedgerCorrupt(RuntimeError):
    """A ledger line that is not the torn tail of a crash cannot be read: the run stops (the batches it
    committed would otherwise look uncommitted and a later run would delete their files)."""


def read_ledger(path: Path) -> list[BatchRecord]:
    """All complete records. A torn last line (a crash mid-append: no newline at the end of the file)
    is ignored with every record on it; any other unreadable line raises :class:`LedgerCorrupt`
    naming the file and the line.

    A line holds one record or a JSON list of the records of one commit group.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, else the torn tail
    records = []
    for number, line in enumerate(lines, start=1):  # one line per commit, not per row
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
            group = [BatchRecord(**r) for r in (parsed if isinstance(parsed, list) else [parsed])]
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError) as e:
            raise LedgerCorrupt(f"{path} line {number} cannot be read ({type(e).__name__}: {str(e)[:200]}); "
                                "it may record committed batches, so nothing is written until it is repaired "
                                "(restore the line from a backup, or delete it only if its batches' event files "
                                "are gone)") from None
        records.extend(group)
    if torn.strip():
        try:  # a whole record whose newline was lost still counts; a torn one does not
            parsed = json.loads(torn)
            records.extend(BatchRecord(**r) for r in (parsed if isinstance(parsed, list) else [parsed]))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError):
            pass
    return records


def append_torn_safe(path: Path, record: BatchRecord | list[BatchRecord]) -> None:
    """Append ``record`` (or a group of records, as one line). A torn last line (a crash mid-write,
    never committed) is cut off first so it cannot become an unreadable line in the middle; a whole
    last record that only lost its newline gets it back."""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        data = path.read_bytes() if torn else b""  # the whole file only after a crash mid-append
        if torn:
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            try:
                json.loads(tail)
                whole = True
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                whole = False
            with path.open("r+b") as f:
                if whole:
                    f.seek(0, os.SEEK_END)
                    f.write(b"\n")
                else:
                    f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
    append_record(path, record)


def append_record(path: Path, record: BatchRecord | list[BatchRecord]) -> None:
    """Append one line durably (the last step of a group: it commits every batch on it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = [asdict(r) for r in record] if isinstance(record, list) else asdict(record)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
