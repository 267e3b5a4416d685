"""Release a quarantined batch: re-run its file through the current rules after a fix.

A release is a batch of its own (``<batch>.r<rules>``) in the ledger, with ``released_from`` naming
the original. Rows the original already accepted come back as duplicates, so the store gains only
what the fixed rules now admit. Releasing again under the same rules returns the recorded release
and changes nothing (idempotent); after another rule change a new release can run.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from ingestion.ingest import IngestRun, PendingFile
from ingestion.ledger import BatchRecord, file_digest, read_ledger
from base.config import Settings
from base.paths import DataPaths
from base.writer_lock import writer_lock
from validation.quarantine import read_quarantine


class ReleaseError(ValueError):
    """A batch cannot be released (unknown, nothing quarantined, file gone or changed)."""


def rules_fingerprint(settings: Settings, channel: str) -> str:
    """Short hash of the configuration that decides a channel's rows (mapping, outliers, currencies)."""
    rules = {"channel": settings.channels[channel].model_dump(mode="json"),
             "outliers": settings.outliers.model_dump(mode="json"),
             "fx": settings.fx_rates, "base": settings.base_currency}
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:8]


def _original(ledger: list[BatchRecord], batch_id: str) -> BatchRecord:
    found = [r for r in ledger if r.batch_id == batch_id]
    if not found:
        raise ReleaseError(f"no batch {batch_id!r} in the ledger")
    return found[-1]


def release_batch(settings: Settings, batch_id: str) -> tuple[BatchRecord, bool]:
    """Re-admit a quarantined batch under the current rules; returns (release record, newly run).
    Holds the writer lock (waits for a running ingest or update)."""
    with writer_lock(settings.data_dir, f"persona quarantine release {batch_id}",
                     wait=settings.validation.lock_wait_seconds):
        return _release(settings, batch_id)


def _release(settings: Settings, batch_id: str) -> tuple[BatchRecord, bool]:
    paths = DataPaths(settings.data_dir)
    ledger = read_ledger(paths.ledger)
    original = _original(ledger, batch_id)
    if original.channel not in settings.channels:
        raise ReleaseError(f"batch {batch_id}: channel {original.channel!r} is no longer configured")
    release_id = f"{original.batch_id}.r{rules_fingerprint(settings, original.channel)}"
    done = [r for r in ledger if r.batch_id == release_id]
    if done:
        return done[-1], False
    if original.quarantined == 0 and original.status != "batch_quarantined":  # a file quarantined whole has no rows
        raise ReleaseError(f"batch {batch_id} has no quarantined rows")
    path = settings.data_dir / original.file
    if not path.is_file():
        raise ReleaseError(f"batch {batch_id}: its file {original.file} is gone; drop the fixed file into the inbox")
    digest = file_digest(path)
    if digest != original.sha256:
        raise ReleaseError(f"batch {batch_id}: {original.file} changed since it was ingested; "
                           "a changed file is a new batch, ingest it instead")
    run = IngestRun(settings)
    try:
        item = PendingFile(original.channel, settings.channels[original.channel], path, digest)
        record = run.batch(item, batch_id=release_id, released_from=original.batch_id)
        run.finish()
    finally:
        run.close()
    return record, True


def whole_files(ledger: list[BatchRecord]) -> list[BatchRecord]:
    """Batches whose file was quarantined whole before any row could be read (a reader bound, a file that
    crashed or hung its reader, an empty file): no row records, the reason is the ledger message."""
    return [r for r in ledger if r.status == "batch_quarantined" and r.quarantined == 0 and r.rows_read == 0]


def quarantine_overview(settings: Settings) -> pd.DataFrame:
    """One row per quarantined batch: file, rows, checks, a reason, and the release that re-ran it. Files
    quarantined whole (unreadable) are listed too, with 0 rows, check ``whole_file`` and their reason."""
    paths = DataPaths(settings.data_dir)
    records = read_quarantine(paths.quarantine)
    ledger = read_ledger(paths.ledger)
    released = {r.released_from: r.batch_id for r in ledger if r.released_from}
    columns = ["batch_id", "file", "rows", "checks", "reason", "released_by"]
    parts = []
    if not records.empty:
        by = records.groupby("batch_id", sort=True)
        parts.append(pd.DataFrame({
            "file": by["source_file"].first(),
            "rows": by.size(),
            "checks": by["check"].agg(lambda c: ", ".join(c.str.split("; ").explode().value_counts().index[:3])),
            "reason": by["reason"].first(),
        }).reset_index())
    whole = whole_files(ledger)
    if whole:
        parts.append(pd.DataFrame({"batch_id": [r.batch_id for r in whole], "file": [r.file for r in whole],
                                   "rows": 0, "checks": "whole_file", "reason": [r.message for r in whole]}))
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True).drop_duplicates("batch_id").sort_values("batch_id", ignore_index=True)
    out["released_by"] = out["batch_id"].map(released).fillna("")
    return out[columns]
