"""Undo what a crashed run wrote before its commit point (the ledger line): event files and id hashes
(:func:`ingestion.event_store.remove_uncommitted`), quarantine records, and identity links and
conflicts of batches the ledger does not know. Runs under the writer lock only, so nothing it removes
can belong to a run still in progress."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from base.paths import DataPaths
from ingestion.event_store import remove_uncommitted
from ingestion.identity import conflicts_path, load_conflicts, load_graph, save_table


def committed_names(records: list) -> set[str]:
    """Batch ids and commit-group names the ledger records (event files are named after either)."""
    return {r.batch_id for r in records} | {r.group for r in records if r.group}


def _uncommitted_rows(table: pd.DataFrame, committed: set[str]) -> pd.Series:
    """Rows written by a batch the ledger does not know (rows without a batch, from before batches
    were recorded or added by hand, are kept)."""
    batch = table["batch_id"].astype(object)
    named = batch.notna() & ~batch.isin(["", "None", "nan"])
    return named & ~batch.isin(list(committed))


def roll_back(paths: DataPaths, committed: set[str]) -> dict[str, int]:
    """Remove every trace of uncommitted batches; returns what was removed, by kind."""
    removed = {"event files": remove_uncommitted(paths.events, committed, paths.event_ids)}
    stale: list[Path] = []
    if paths.quarantine.exists():
        stale = [p for p in paths.quarantine.glob("*.parquet") if p.stem not in committed]
        stale += list(paths.quarantine.glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    removed["quarantine files"] = len(stale)
    for name, path, load in (("identity links", paths.identity_graph, load_graph),
                             ("identity conflicts", conflicts_path(paths.identity_graph), load_conflicts)):
        if not path.exists():
            continue
        table = load(path)
        drop = _uncommitted_rows(table, committed)
        if drop.any():
            save_table(table.loc[~drop].reset_index(drop=True), path)
        removed[name] = int(drop.sum())
    return removed
