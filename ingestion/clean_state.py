"""Why the clean event store is empty: nothing ingested yet, or everything ingested was quarantined."""

from __future__ import annotations

from base.paths import DataPaths
from ingestion.ledger import read_ledger
from validation.quarantine import read_quarantine, top_reasons


class NoCleanEvents(RuntimeError):
    """A stage found no clean events; the message says why (see :func:`no_clean_events`)."""


def no_clean_events(paths: DataPaths) -> str:
    """The message for a stage that found no clean events: run ingest first, or all N rows of M files
    were quarantined (with the top reasons and where to look)."""
    batches = read_ledger(paths.ledger)
    if not batches:
        return f"no clean events in {paths.events}: no file was ingested yet; run `persona ingest` first"
    accepted = sum(b.accepted for b in batches)
    rows, quarantined = sum(b.rows_read for b in batches), sum(b.quarantined for b in batches)
    if accepted == 0 and quarantined == rows and rows:
        reasons = top_reasons(read_quarantine(paths.quarantine))
        return (f"all {rows} rows of {len(batches)} files were quarantined: " + "; ".join(reasons)
                + " (see `persona quarantine list`; fix the channel in persona.yaml, then "
                  "`persona quarantine release BATCH`)")
    return (f"no clean events in {paths.events}: {len(batches)} files ingested, {rows} rows read, "
            f"{quarantined} quarantined, {rows - accepted - quarantined} duplicates")
