"""Feature layer figures, each comparison measured in one run:

- feature computation: events/s over a long history; the cost of adding one day as a fraction of a
  full rebuild (same data, same process);
- materialization: entity rows/s into the SQLite online store and into Redis;
- online read in process: p50/p99 for one user and for 100 users with every persona_v1 feature,
  features/online_reader.py vs Feast's get_online_features (bench/online.py has the same figures on
  synthetic snapshots, without the feature computation).

Usage: python -m bench features [--users 50000] [--days 365] [--rate 0.3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ingestion.event_store import write_batch
from base.schema import CANONICAL_COLUMNS
from base.config import load_settings
from base.paths import DataPaths

PROJECT = Path(__file__).resolve().parent.parent
T0 = pd.Timestamp("2025-11-01", tz="UTC")
FEAST_MATERIALIZE_LIMIT = 2_000_000
"""Above this many snapshots Feast's own materialize runs out of memory here (killed at 18M)."""


def synthetic_events(users: int, days: int, rate: float, seed: int = 1, day_offset: int = 0) -> pd.DataFrame:
    """Canonical events: ``rate`` events per user per day on average, a tenth of them purchases."""
    rng = np.random.default_rng(seed)
    n = int(users * days * rate)
    etype = rng.choice(["page_view", "product_view", "add_to_cart", "purchase", "like"], n, p=[.4, .3, .12, .1, .08])
    user = rng.integers(0, users, n)
    ev = pd.DataFrame({
        "event_id": [f"e{day_offset}-{i}" for i in range(n)],
        "user_id": pd.Series([f"u{i:06d}" for i in range(users)])[user].to_numpy(),
        "timestamp": T0 + pd.to_timedelta(rng.integers(day_offset * 86400, (day_offset + days) * 86400, n), unit="s"),
        "event_type": etype,
        "amount": np.where(etype == "purchase", rng.gamma(2, 30, n), np.nan),
        "channel": rng.choice(["web", "app"], n),
        "category": rng.choice(["electronics", "fashion", "home", "beauty", "sports", "grocery"], n),
        "session_id": (user * 1000 + rng.integers(0, 200, n)).astype(str),
        "device": rng.choice(["desktop", "mobile"], n),
        "source_row": 1,
    })
    for c in CANONICAL_COLUMNS:
        if c not in ev:
            ev[c] = None
    return ev[list(CANONICAL_COLUMNS)]


def main(argv: list[str] | None = None) -> None:
    """Run the feature benchmarks and print the figures."""
    from bench.online import fresh_store, read_latency, report_reads, timed_materialize
    from persona.pipeline import build_features, materialize

    ap = argparse.ArgumentParser(prog="python -m bench features")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--rate", type=float, default=0.3, help="events per user per day")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--reads", type=int, default=1000, help="one-user reads per reader (100-user reads: a tenth)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="persona-bench-") as tmp:
        base = load_settings(PROJECT / "persona.yaml")
        s = base.model_copy(update={"data_dir": Path(tmp) / "data"})
        paths = DataPaths(s.data_dir)
        history = synthetic_events(args.users, args.days, args.rate)
        write_batch(history, paths.events, "history")
        n_events = len(history)
        del history
        t = time.perf_counter()
        full = build_features(s, incremental=False)
        full_s = time.perf_counter() - t
        write_batch(synthetic_events(args.users, 1, args.rate, seed=2, day_offset=args.days), paths.events, "newday")
        t = time.perf_counter()
        inc = build_features(s)
        inc_s = time.perf_counter() - t
        print(f"history: {args.users} users x {args.days} days, {n_events:,} events, {full.rows:,} snapshots")
        print(f"full build        {full_s:8.1f} s   {n_events / full_s:12,.0f} events/s")
        print(f"one more day      {inc_s:8.1f} s   ({inc.rows:,} snapshots)   ratio to full: {inc_s / full_s:.3f}")

        profiles = [("sqlite", "default")] + ([] if args.no_redis else [("redis", "production")])
        for name, profile in profiles:  # each load into a fresh project: Redis skips equally old rows
            users, mat_s = timed_materialize(s, profile)
            feast = ""
            if full.rows <= FEAST_MATERIALIZE_LIMIT:  # Feast's materialize scans every snapshot in memory
                _, feast_s = timed_materialize(s, profile, use_feast=True)
                feast = f"; Feast's materialize {users / feast_s:,.0f} rows/s (ours {feast_s / mat_s:.1f}x faster)"
            print(f"{name:6s} materialize {users:,} users: {users / mat_s:10,.0f} rows/s ({mat_s:.2f} s){feast}")
            with fresh_store(s, profile) as store:
                materialize(s, store)
                report_reads(name, read_latency(store, [f"u{i:06d}" for i in range(args.users)], args.reads))

if __name__ == "__main__":
    main()
