"""The clean event store: canonical events as Parquet, partitioned by day, append-only per batch."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.identity import load_graph, resolve
from ingestion.schema import CANONICAL_SCHEMA


def batch_parts(root: Path, batch_id: str) -> list[Path]:
    """Files written by one batch (to clean up after a crash before re-running it)."""
    return sorted(root.glob(f"date=*/{batch_id}.parquet")) if root.exists() else []


def write_batch(events: pd.DataFrame, root: Path, batch_id: str) -> list[Path]:
    """Write a batch's events, one file per day, each atomically (temp file then rename)."""
    written = []
    if events.empty:
        return written
    days = events["timestamp"].dt.strftime("%Y-%m-%d")
    for day, part in events.groupby(days, sort=True):
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{batch_id}.parquet"
        tmp = folder / f".{batch_id}.{uuid.uuid4().hex}.tmp"
        table = pa.Table.from_pandas(part.reset_index(drop=True), schema=CANONICAL_SCHEMA, preserve_index=False)
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        written.append(target)
    return written


def event_files(root: Path) -> list[Path]:
    """All committed event files."""
    return sorted(root.glob("date=*/*.parquet")) if root.exists() else []


def read_events(root: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """All stored events (raw identities as stored), empty with the schema when none."""
    files = event_files(root)
    if not files:
        return CANONICAL_SCHEMA.empty_table().to_pandas()
    tables = [pq.read_table(f, columns=columns, schema=CANONICAL_SCHEMA) for f in files]
    return pa.concat_tables(tables).to_pandas()


def load_events(root: Path, graph_path: Path) -> pd.DataFrame:
    """Stored events with identities resolved through the newest graph (re-keys earlier history)."""
    events = read_events(root)
    return resolve(events, load_graph(graph_path)) if not events.empty else events


def stored_event_ids(root: Path) -> pd.Index:
    """Event ids already in the store (for cross-batch de-duplication)."""
    return pd.Index(read_events(root, columns=["event_id"])["event_id"])
