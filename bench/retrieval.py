"""Training-set retrieval, the embedded default vs Feast's file store, in one run.

The same snapshots and entity rows (every user at each training cutoff) go through:

- before: Feast's file (Dask) offline store, one retrieval per cutoff, over the per-cutoff window of
  training/dataset.py (a folder holding one file: each user's newest snapshot row at or before the cutoff);
- Feast's DuckDB offline store, one retrieval over a window of every cutoff's rows (``direct=False``);
- now: the direct point-in-time join of training/dataset.py (each source read once as (user, time), binary
  search per entity row, only the picked rows read, the read-time features vectorised): what the
  training set uses by default.

Prints the three times, the ratios, the rows each returned (a user with no snapshot by a cutoff must come
back with null features) and whether the rows agree cell for cell.

Usage: python -m bench retrieval [--users 50000] [--days 120] [--rate 0.3] [--cutoffs 7]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from feast import FeatureStore

    from base.config import Settings


def file_store_training_set(store: "FeatureStore", entity_df: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """Before: Feast's file (Dask) offline store, one retrieval per cutoff over its window (the rows it returned)."""
    from training.dataset import offline_window, retrieve

    frames = []
    with offline_window(store, data_dir, offline_store={"type": "file"}) as window:
        for cutoff in sorted(entity_df["event_timestamp"].unique()):
            window.point_at(pd.Timestamp(cutoff))
            frames.append(retrieve(window.store, entity_df.loc[entity_df["event_timestamp"] == cutoff]))
    return pd.concat(frames, ignore_index=True)


def _prepare(s: "Settings", users: int, days: int, rate: float) -> tuple[int, int, float]:
    """Synthetic events → snapshots → feast apply; returns events, snapshot rows and the build seconds."""
    from base.paths import DataPaths
    from bench.features import synthetic_events
    from features.store import open_store
    from ingestion.event_store import write_batch
    from persona.pipeline import build_features, register_features

    history = synthetic_events(users, days, rate)
    n_events = len(history)
    write_batch(history, DataPaths(s.data_dir).events, "history")
    del history
    t = time.perf_counter()
    built = build_features(s, incremental=False)
    build_s = time.perf_counter() - t
    register_features(s, open_store(s))
    return n_events, built.rows, build_s


def _entity_rows(users: int, days: int, cutoffs: int, step_days: int) -> pd.DataFrame:
    """Every user at each of the newest ``cutoffs`` weekly cutoffs (as the training set asks)."""
    from bench.features import T0

    end = T0 + pd.Timedelta(days=days)
    times = [end - pd.Timedelta(days=step_days * i) for i in range(cutoffs, 0, -1)]
    ids = [f"u{i:06d}" for i in range(users)]
    return pd.DataFrame({"user_id": np.tile(ids, len(times)), "event_timestamp": np.repeat(times, users)})


def _compare(before: pd.DataFrame, after: pd.DataFrame, names: list[str]) -> str:
    """Whether the rows both returned agree cell for cell (as text)."""
    key = ["user_id", "event_timestamp"]
    b = before.assign(event_timestamp=pd.to_datetime(before["event_timestamp"], utc=True))
    a = after.assign(event_timestamp=pd.to_datetime(after["event_timestamp"], utc=True))
    both = b.merge(a, on=key, suffixes=("_b", "_a"))
    bad = [n for n in names if not np.allclose(both[f"{n}_b"].astype(float), both[f"{n}_a"].astype(float),
                                               equal_nan=True)]
    return f"{len(both):,} common rows, " + ("equal cell for cell" if not bad else f"DIFFER in {bad}")


def main(argv: list[str] | None = None) -> None:
    """Build the data, time both retrievals and print the figures."""
    from bench._settings import bench_settings
    from features.store import feature_refs, open_store
    from training.dataset import build_training_set

    ap = argparse.ArgumentParser(prog="python -m bench retrieval")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--rate", type=float, default=0.3, help="events per user per day")
    ap.add_argument("--cutoffs", type=int, default=7, help="weekly cutoffs (6 training + 1 evaluation)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="persona-bench-") as tmp:
        s = bench_settings(Path(tmp) / "data")
        n_events, rows, build_s = _prepare(s, args.users, args.days, args.rate)
        print(f"history: {args.users:,} users x {args.days} days, {n_events:,} events, {rows:,} snapshots "
              f"(built in {build_s:.1f} s)")
        entity_df = _entity_rows(args.users, args.days, args.cutoffs, s.training.cutoff_step_days)
        store = open_store(s)
        names = feature_refs(store)
        t = time.perf_counter()
        before = file_store_training_set(store, entity_df, s.data_dir)
        before_s = time.perf_counter() - t
        t = time.perf_counter()
        duck = build_training_set(store, entity_df.assign(label_x=0.0), s.data_dir, direct=False)
        duck_s = time.perf_counter() - t
        t = time.perf_counter()
        after = build_training_set(store, entity_df.assign(label_x=0.0), s.data_dir)
        after_s = time.perf_counter() - t
        print(f"{len(entity_df):,} entity rows ({args.cutoffs} cutoffs), {len(names)} features")
        for label, secs, frame in (("file store, per-cutoff window (before) ", before_s, before),
                                   ("Feast DuckDB, one window of the cutoffs ", duck_s, duck),
                                   ("direct point-in-time join (now)        ", after_s, after)):
            nulls = int(frame[names[0]].isna().sum())
            print(f"  {label:40s} {secs:8.1f} s  {len(entity_df) / secs:10,.0f} rows/s  "
                  f"{len(frame):,} rows back ({nulls:,} with null features)")
        print(f"direct is {before_s / after_s:.1f}x faster than the file store ({_compare(before, after, names)}), "
              f"{duck_s / after_s:.1f}x faster than Feast's DuckDB store ({_compare(duck, after, names)}; "
              f"identical frames: {duck.equals(after)})")

if __name__ == "__main__":
    main()
