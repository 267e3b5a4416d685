"""What changed since the last feature build: the clean store's day partitions and the config."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from base.config import FeatureConfig
from features.lifetime import STORED as LIFETIME_STORED

WINDOW_DAYS = 90
"""The longest feature window: a day's events change snapshots up to this many days later."""


def event_partitions(events_root: Path) -> dict[str, list[str]]:
    """Each day partition of the clean store with the names of its files."""
    if not events_root.exists():
        return {}
    out: dict[str, list[str]] = {}
    for folder in sorted(events_root.glob("date=*")):
        files = sorted(f.name for f in folder.glob("*.parquet"))
        if files:
            out[folder.name[5:]] = files
    return out


SNAPSHOT_LAYOUT = "sparse-1"
"""Changes when the snapshot columns change, so the next build recomputes everything."""


def config_digest(cfg: FeatureConfig) -> str:
    """A digest of the feature configuration (a change forces a full rebuild)."""
    return hashlib.sha256((cfg.model_dump_json() + SNAPSHOT_LAYOUT).encode()).hexdigest()[:16]


def load_state(path: Path) -> dict[str, Any] | None:
    """The state saved by the last build (None when there is none or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_state(path: Path, partitions: dict[str, list[str]], cfg: FeatureConfig, aliases: list[str]) -> None:
    """Record what this build saw, atomically (written last: a crash before it means a redo)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"partitions": partitions, "config": config_digest(cfg), "aliases": aliases}))
    os.replace(tmp, path)


def linked_aliases(graph: pd.DataFrame) -> list[str]:
    """Every alias the identity graph links to a user (``kind:alias``), sorted."""
    return sorted((graph["kind"].astype(str) + ":" + graph["alias"].astype(str)).tolist())


def _carries_alias(events: pd.DataFrame, aliases: set[str]) -> pd.Series:
    """True for events whose anonymous or device id is one of ``aliases`` (``kind:alias``)."""
    by_kind: dict[str, list[str]] = {"anonymous": [], "device": []}
    for alias in aliases:
        kind, _, value = alias.partition(":")
        by_kind.setdefault(kind, []).append(value)
    hit = np.zeros(len(events), dtype=bool)
    for kind, column in (("anonymous", "anonymous_id"), ("device", "device_id")):
        if by_kind[kind]:  # one hash lookup per row; no per-row string is built
            hit |= events[column].isin(by_kind[kind]).to_numpy()
    return pd.Series(hit, index=events.index)


def first_day_of_aliases(events: pd.DataFrame, aliases: set[str]) -> pd.Timestamp | None:
    """The earliest event day of any of these aliases (events carry anonymous_id/device_id)."""
    hit = _carries_alias(events, aliases)
    return events.loc[hit, "timestamp"].min().floor("D") if hit.any() else None


def plan_rebuild(state: dict[str, Any] | None, partitions: dict[str, list[str]], cfg: FeatureConfig,
                 new_alias_day: pd.Timestamp | None = None) -> tuple[str, pd.Timestamp | None]:
    """("full", None) without usable state, ("none", None) when nothing changed, else ("from", t):
    recompute snapshots at or after ``t``. ``new_alias_day`` is the first event day of aliases the
    identity graph linked since the last build (their history now belongs to a user)."""
    if state is None or state.get("config") != config_digest(cfg) or "aliases" not in state:
        return "full", None
    before: dict[str, list[str]] = state.get("partitions", {})
    changed = [pd.Timestamp(day, tz="UTC") for day in set(before) | set(partitions)
               if before.get(day) != partitions.get(day)]
    if new_alias_day is not None:
        changed.append(new_alias_day)
    if not changed:
        return "none", None
    # a day's events first appear in the snapshot taken at the midnight that ends it
    return "from", min(changed) + pd.Timedelta(days=1)


HISTORY_COLUMNS = ("first_event_ts", "last_event_ts", "last_purchase_ts", *LIFETIME_STORED)
"""Stored columns that depend on history older than the longest window (carried by incremental builds)."""


def carry_history(computed: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Complete snapshot rows computed from a recent window of events with what each user's previous
    row knew: ``previous`` holds each user's newest stored row before the rebuild (one per user; users
    without one had no event before it). The first event time is the previous one, the last event and
    purchase times the newer of the two (the window columns need nothing older than the window)."""
    prior = previous.set_index("user_id").reindex(computed["user_id"])
    out = computed.copy()
    for col, pick in (("last_event_ts", np.fmax), ("last_purchase_ts", np.fmax), ("first_event_ts", np.fmin)):
        out[col] = pick(pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float),
                        prior[col].to_numpy(dtype=float))
    return out


def users_of_aliases(events: pd.DataFrame, aliases: set[str]) -> set[str]:
    """The (resolved) users whose events carry one of these aliases (``kind:alias``)."""
    users = events.loc[_carries_alias(events, aliases), "user_id"].dropna().astype(str)
    return set(users[~users.str.startswith(("anon:", "device:"))])


def rewrite_users(root: Path, computed: pd.DataFrame, users: set[str], start: pd.Timestamp,
                  stop: pd.Timestamp | None) -> int:
    """Replace the rows of ``users`` in the snapshot partitions from ``start`` (inclusive) to ``stop``
    (exclusive; None = the newest) with their rows in ``computed``; other users' rows stay as they are.

    Each partition is rewritten as one file (temporary name, then rename) before its other files are
    removed; a crash in between leaves the same rows twice, which a rerun folds back (duplicate
    (user, time) rows of other users are dropped on read). Returns the rows written for ``users``.
    Works on Arrow tables (no pandas round trip per partition).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    written = 0
    by_day = {day: part for day, part in computed.groupby(computed["event_timestamp"].dt.strftime("%Y-%m-%d"))}
    mine = pa.array(sorted(users), type=pa.string())
    folders = {f.name for f in root.glob("date=*")} | {f"date={day}" for day in by_day}
    for folder in sorted(root / name for name in folders):
        day = pd.Timestamp(folder.name[5:], tz="UTC")
        if day < start.floor("D") or (stop is not None and day >= stop.floor("D")):
            continue
        folder.mkdir(exist_ok=True)  # sparse rows: a user's new row can fall on a day no one had one
        parts = sorted(folder.glob("part-*.parquet"))
        old = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default") if parts else None
        new = by_day.get(folder.name[5:])
        if old is None:
            if new is None:
                continue
            table = pa.Table.from_pandas(new, preserve_index=False)
        else:
            keep = old.filter(pc.invert(pc.is_in(old["user_id"], value_set=mine)))
            if len(parts) > 1:  # a crash mid-rewrite left rows twice: keep each (user, time) once
                keep = pa.Table.from_pandas(keep.to_pandas().drop_duplicates(["user_id", "event_timestamp"]),
                                            preserve_index=False)
            if new is not None:
                add = pa.Table.from_pandas(new[keep.column_names], preserve_index=False).cast(keep.schema)
                keep = pa.concat_tables([keep, add])
            table = keep
        tmp = folder / f".rewrite.{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / "part-0.parquet")
        for p in parts:
            if p.name != "part-0.parquet":
                p.unlink()
        written += 0 if new is None else len(new)
    return written
