"""The clean event store: canonical events as Parquet, partitioned by day, append-only per batch."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from base.durable import replace_durably
from ingestion.frames import renumber
from ingestion.identity import (IdentityColumns, graph_lookups, is_pointer, load_graph, pointer_mask, resolve,
                                resolve_users)
from base.schema import CANONICAL_SCHEMA


WRITERS = max(1, min(4, os.cpu_count() or 1))
"""Day files written at once (each Parquet write runs in Arrow's C++ without the GIL)."""


def write_batch(events: pd.DataFrame | pa.Table | list[pd.DataFrame] | list[pa.Table], root: Path,
                batch_id: str, rows: list[np.ndarray] | None = None) -> list[Path]:
    """Write events (a frame or table, or several), one file per day, each atomically (temp file then
    rename). ``rows`` picks, per part, the positions to write (all when None). Each part is sorted by
    day on its own (a take from one contiguous table) and a day's file stacks its slices of every part."""
    parts = events if isinstance(events, list) else [events]
    picks = rows if rows is not None else [None] * len(parts)
    by_day: dict[np.datetime64, list[pa.Table]] = {}
    for part, pick in zip(parts, picks):
        table = (part.select(list(CANONICAL_SCHEMA.names)).cast(CANONICAL_SCHEMA) if isinstance(part, pa.Table)
                 else pa.Table.from_pandas(renumber(part), schema=CANONICAL_SCHEMA, preserve_index=False))
        pick = np.arange(table.num_rows) if pick is None else pick
        if not len(pick):
            continue
        days = table["timestamp"].take(pa.array(pick)).to_numpy().astype("datetime64[D]")
        order = np.argsort(days, kind="stable")
        table = table.take(pa.array(pick[order]))  # once per part: day slices of the sorted table are views
        firsts, starts = np.unique(days[order], return_index=True)
        bounds = [*starts, len(order)]
        for i, day in enumerate(firsts):
            by_day.setdefault(day, []).append(table.slice(bounds[i], bounds[i + 1] - bounds[i]))

    def write(day: np.datetime64) -> Path:
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{batch_id}.parquet"
        tmp = folder / f".{batch_id}.{uuid.uuid4().hex}.tmp"
        pq.write_table(pa.concat_tables(by_day[day]), tmp)
        return replace_durably(tmp, target)

    if not by_day:
        return []
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(by_day))) as pool:  # Parquet encoding frees the GIL
        return list(pool.map(write, sorted(by_day)))


def remove_uncommitted(root: Path, committed: set[str], ids_dir: Path | None = None) -> int:
    """Delete event files (and id-hash files under ``ids_dir``) of batches the ledger does not know (a
    crash before commit) and stray temp files."""
    stale = []
    if root.exists():
        stale += [p for p in root.glob("date=*/*.parquet") if p.stem not in committed]
        stale += list(root.glob("date=*/.*.tmp"))
    if ids_dir is not None and ids_dir.exists():
        stale += [p for p in ids_dir.glob("*/*.npy") if p.stem not in committed]
        stale += list(ids_dir.glob("*/.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def event_files(root: Path) -> list[Path]:
    """All committed event files."""
    return sorted(root.glob("date=*/*.parquet")) if root.exists() else []


def read_events(root: Path, columns: list[str] | None = None, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Stored events (identities as stored), of days at or after ``since``; empty with the schema when none."""
    files = event_files(root)
    if since is not None:
        first = f"date={since:%Y-%m-%d}"
        files = [f for f in files if f.parent.name >= first]
    if not files:
        return CANONICAL_SCHEMA.empty_table().to_pandas()
    tables = [pq.read_table(f, columns=columns, schema=CANONICAL_SCHEMA) for f in files]
    return pa.concat_tables(tables).to_pandas()


def resolve_stored(events: pd.DataFrame, graph: pd.DataFrame) -> pd.DataFrame:
    """Resolve stored events through ``graph``: visitor ids stored before a login (``anon:``/``device:``)
    are re-keyed to the user they were linked to since."""
    user = events["user_id"]
    stored_alias = user.notna() & is_pointer(user)
    return resolve(events.assign(user_id=user.where(~stored_alias, None)), graph)


def load_events(root: Path, graph_path: Path, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Stored events (of days at or after ``since``) resolved through the newest identity graph."""
    events = read_events(root, since=since)
    return resolve_stored(events, load_graph(graph_path)) if not events.empty else events


def iter_resolved(root: Path, graph: Path | pd.DataFrame, columns: list[str], rows: int = 2_000_000,
                  since: pd.Timestamp | None = None) -> Iterator[pa.Table]:
    """Stored events (of days at or after ``since``) as Arrow tables of about ``rows`` rows, in the order
    :func:`read_events` reads them, ``user_id`` resolved through the newest identity graph as
    :func:`load_events` resolves it; only ``columns`` (plus ``user_id``) are kept. No pandas objects:
    what a whole-store frame would hold in Python strings stays in Arrow, one part at a time. ``graph``: the
    identity graph's file, or the graph when the caller has it loaded already."""
    files = event_files(root)
    if since is not None:
        first = f"date={since:%Y-%m-%d}"
        files = [f for f in files if f.parent.name >= first]
    lookups = graph_lookups(graph if isinstance(graph, pd.DataFrame) else load_graph(graph))
    wanted = list(dict.fromkeys(["user_id", *columns]))
    read = list(dict.fromkeys([*wanted, "anonymous_id", "device_id", "timestamp", "event_id"]))
    group: list[Path] = []
    size = 0
    for i, f in enumerate(files):
        group.append(f)
        size += pq.ParquetFile(f).metadata.num_rows
        if size < rows and i < len(files) - 1:
            continue
        table = pa.concat_tables([pq.read_table(g, columns=read, schema=CANONICAL_SCHEMA) for g in group])
        group, size = [], 0
        user = table["user_id"]
        table = table.set_column(table.schema.get_field_index("user_id"), "user_id",  # stored visitor ids, as
                                 pc.if_else(pointer_mask(user), pa.scalar(None, pa.string()), user))  # resolve_stored

        users = resolve_users(IdentityColumns.of(table), lookups)
        yield table.set_column(table.schema.get_field_index("user_id"), "user_id", users).select(wanted)


def id_hashes(ids: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """64-bit hashes of event ids (stable across runs)."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (numpy 2.4's ``np.unique`` hashes and takes ~100x longer than a sort
    on a million 64-bit values)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def id_hash_file(ids_dir: Path, name: str) -> Path:
    """Where the id hashes of the commit ``name`` are kept. The folder is named by a fingerprint of
    :func:`id_hashes`, so hashes made by a different hash function are never mixed in."""
    probe = int(id_hashes(np.asarray(["persona-event-id"], dtype=object))[0])
    return ids_dir / f"{probe:016x}" / f"{name}.npy"


def write_id_hashes(hashes: np.ndarray, ids_dir: Path, name: str) -> Path:
    """Keep the id hashes of one commit, atomically (temporary file, then rename)."""
    target = id_hash_file(ids_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as f:
        np.save(f, np.asarray(hashes, dtype=np.uint64))
    return replace_durably(tmp, target)


def _kept_hashes(path: Path) -> np.ndarray | None:
    """A commit's kept id hashes; None when the file is missing or unreadable (the caller then reads
    and hashes that commit's stored ids instead)."""
    try:
        hashes = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return hashes if hashes.dtype == np.uint64 and hashes.ndim == 1 else None


class EventIdIndex:
    """The event ids in the store as a sorted array of 64-bit hashes: loaded once per run, updated
    as batches commit, membership tested vectorised (``searchsorted``)."""

    def __init__(self, hashes: np.ndarray | None = None) -> None:
        self._sorted = sorted_unique(hashes) if hashes is not None else np.empty(0, dtype=np.uint64)

    @classmethod
    def load(cls, root: Path, ids_dir: Path | None = None) -> "EventIdIndex":
        """The index of every committed event id under ``root``: from the commits' kept hashes under
        ``ids_dir`` where there are some, else by reading and hashing the stored ids."""
        by_commit: dict[str, list[Path]] = {}
        for f in event_files(root):
            by_commit.setdefault(f.stem, []).append(f)
        if not by_commit:
            return cls()
        parts, unread = [], []
        for name, files in by_commit.items():
            hashes = _kept_hashes(id_hash_file(ids_dir, name)) if ids_dir is not None else None
            if hashes is not None:
                parts.append(hashes)
            else:
                unread += files
        if unread:
            ids = pa.concat_tables([pq.read_table(f, columns=["event_id"]) for f in unread])["event_id"]
            parts.append(id_hashes(ids.to_numpy(zero_copy_only=False)))
        return cls(np.concatenate(parts))

    def __len__(self) -> int:
        return len(self._sorted)

    def contains_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean mask: which ids (given as :func:`id_hashes`) are already stored."""
        if not len(self._sorted) or not len(hashes):
            return np.zeros(len(hashes), dtype=bool)
        order = np.argsort(hashes)  # sorted needles walk the index in order: ~7x faster than random probes
        needles = hashes[order]
        pos = np.minimum(np.searchsorted(self._sorted, needles), len(self._sorted) - 1)
        found = np.empty(len(hashes), dtype=bool)
        found[order] = self._sorted[pos] == needles
        return found

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Record ids of a committed batch, given as :func:`id_hashes`."""
        if len(hashes):  # two sorted runs: the stable sort (timsort) merges them in linear time
            self._sorted = np.sort(np.concatenate([self._sorted, np.sort(hashes)]), kind="stable")
