"""Time to forget one person among many users: the demo's sample (default 50,000 users) is ingested,
its features built and materialized into the SQLite online store and a persona history written, then
one user is forgotten; the figure is the erasure's wall time, split into resolving the person's
identifiers and erasing the stores, with the rows/lines/files removed per store. A second run of the
same erasure (idempotent: nothing left) shows the cost of scanning the stores alone.

Usage: python -m bench privacy [--users 50000] [--days 60]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench._settings import bench_settings


def main(argv: list[str]) -> None:
    """Build the stores, forget one user twice, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench privacy")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args(argv)

    import pandas as pd

    from features.erasure import forget, resolve
    from features.store import open_store
    from persona.pipeline import (
        build_features,
        ensure_sample,
        ingest_inbox,
        materialize,
        register_features,
    )
    from scoring.history import SCORES, VERSIONS, append_history

    with tempfile.TemporaryDirectory() as tmp:
        s = bench_settings(Path(tmp) / "data", users=args.users, days=args.days)
        t = time.perf_counter()
        ensure_sample(s)
        summary = ingest_inbox(s)
        build_features(s)
        store = open_store(s)
        register_features(s, store)
        users = materialize(s, store)
        events = pd.concat(pd.read_parquet(p, columns=["user_id"]) for p in (s.data_dir / "events").rglob("*.parquet"))
        known = sorted(u for u in events["user_id"].dropna().unique() if not str(u).startswith(("anon:", "device:")))
        now = pd.Timestamp.now(tz="UTC")
        append_history(s, pd.DataFrame({"user_id": known, "segment": "s", **{c: 1.0 for c in SCORES},
                                        **{c: "1" for c in VERSIONS}, "feature_timestamp": now, "scored_at": now}),
                       "batch")
        print(f"stores built in {time.perf_counter() - t:.0f} s: {summary.total('accepted'):,} events, "
              f"{len(known):,} known users, {users:,} users online")
        files = sum(1 for p in s.data_dir.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in s.data_dir.rglob("*") if p.is_file())
        print(f"data directory: {files:,} files, {size / 1e6:.0f} MB")
        user = known[len(known) // 2]
        t = time.perf_counter()
        ids = resolve(s, [user])
        resolving = time.perf_counter() - t
        t = time.perf_counter()
        first = forget(s, [user], "bench")[-1]
        total = time.perf_counter() - t
        t = time.perf_counter()
        again = forget(s, [user], "bench")[-1]
        rerun = time.perf_counter() - t
        print(f"forget 1 user of {len(known):,}: {total:.2f} s (resolving {len(ids)} identifiers: {resolving:.2f} s)")
        for store, n in sorted(first.counts.items()):
            print(f"  {store}: {n:,}")
        print("seconds per store: " + ", ".join(f"{k} {v:.2f}" for k, v in first.timings.most_common()))
        print(f"second run (nothing left, stores scanned only): {rerun:.2f} s, "
              f"{sum(again.counts.values())} items removed")
        many = known[len(known) // 3: len(known) // 3 + 10]
        t = time.perf_counter()
        batch = forget(s, many, "bench")[-1]
        print(f"forget {len(many)} users in one call: {time.perf_counter() - t:.2f} s "
              f"({sum(batch.counts.values()):,} items removed)")
        print(f"load average: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}")
