"""Feature layer figures, each comparison measured in one run:

- feature computation: events/s over a long history; the cost of adding one day as a fraction of a
  full rebuild (same data, same process);
- materialization: entity rows/s into the SQLite online store and into Redis;
- online read in process: p50/p99 for one user and for 100 users with every persona_v1 feature,
  features/online_reader.py vs Feast's get_online_features (bench/online.py has the same figures on
  synthetic snapshots, without the feature computation).

- sparse vs dense snapshots (``--compare``): rows written, build time and peak memory of each build
  (each in a child process of its own, over the same clean events), and the training-set retrieval time
  (Feast's DuckDB store, every user at a few cutoffs): dense as main retrieved it (the newest partition
  per cutoff holds every user) vs sparse (every partition up to the cutoff); ratios in one run.

Usage: python -m bench features [--users 50000] [--days 365] [--rate 0.3] [--compare]
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


def _build_child(layout: str, data_dir: Path) -> None:
    """In a child process: build ``layout`` (dense or sparse) snapshots of the clean events in
    ``data_dir`` into ``data_dir/features/user_behaviour``; print rows, seconds and peak RSS as JSON."""
    import json
    import resource

    from features.compute import iter_snapshots, write_snapshots
    from persona.pipeline import load_clean_events

    s = load_settings(PROJECT / "persona.yaml").model_copy(update={"data_dir": data_dir})
    events = load_clean_events(s)
    t = time.perf_counter()
    rows = write_snapshots(iter_snapshots(events, s.features, dense=layout == "dense"),
                           DataPaths(data_dir).behaviour_snapshots)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": rows, "seconds": secs, "peak_bytes": peak, "user_days": _user_days(events)}))


def _user_days(events: pd.DataFrame) -> int:
    from features.compute import is_known_user

    known = events.loc[is_known_user(events["user_id"])]
    return int(known.assign(d=known["timestamp"].dt.floor("D")).drop_duplicates(["user_id", "d"]).shape[0])


def _retrieval(data_dir: Path, project: str, users: int, cutoffs: list[pd.Timestamp], newest_only: bool) -> float:
    """Seconds for one training-set retrieval of every user at ``cutoffs`` (Feast's DuckDB store, through
    the offline window): ``newest_only`` shows Feast only the newest partition per cutoff (main's window
    over dense snapshots), else every partition up to the newest cutoff (sparse snapshots)."""
    import tempfile as tf

    from features.store import open_store
    from persona.pipeline import register_features
    from training.dataset import OfflineWindow, _link_tree, retrieve

    s = load_settings(PROJECT / "persona.yaml").model_copy(update={"data_dir": data_dir})
    store = open_store(s, project=project)
    register_features(s, store)
    entity = pd.DataFrame([(f"u{i:06d}", c) for c in cutoffs for i in range(users)],
                          columns=["user_id", "event_timestamp"])
    with tf.TemporaryDirectory(dir=data_dir) as tmp:
        window = OfflineWindow(store, data_dir, Path(tmp))
        t = time.perf_counter()
        if newest_only:
            for src, dst in window.sources.items():
                for part in {max(p for p in src.glob("date=*") if p.name <= f"date={c:%Y-%m-%d}") for c in cutoffs}:
                    _link_tree(part, dst / part.name)
        else:
            window.point_at(*cutoffs)
        frame = retrieve(window.store, entity)
        secs = time.perf_counter() - t
    assert len(frame) == len(entity)
    return secs


def compare(users: int, days: int, rate: float) -> None:
    """Sparse vs dense snapshots on the same events: rows, build time, peak memory, retrieval time."""
    import json
    import os
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="persona-bench-sparse-") as tmp:
        history = synthetic_events(users, days, rate)
        n_events = len(history)
        got = {}
        for layout in ("dense", "sparse"):
            data_dir = Path(tmp) / layout
            write_batch(history, DataPaths(data_dir).events, "history")
        del history
        for layout in ("dense", "sparse"):
            data_dir = Path(tmp) / layout
            out = subprocess.run([sys.executable, "-m", "bench.features", "--build", layout, str(data_dir)],
                                 check=True, capture_output=True, text=True, cwd=PROJECT, env=os.environ.copy())
            got[layout] = json.loads(out.stdout.strip().splitlines()[-1])
        day0 = T0
        cutoffs = [day0 + pd.Timedelta(days=d) for d in (days // 3, 2 * days // 3, days)]
        for layout in ("dense", "sparse"):
            got[layout]["retrieval"] = _retrieval(Path(tmp) / layout, f"bench_{layout}_{os.getpid()}", users, cutoffs,
                                                  newest_only=layout == "dense")
        d, sp = got["dense"], got["sparse"]
        print(f"sparse vs dense: {users:,} users x {days} days, {n_events:,} events, "
              f"{sp['user_days']:,} user-days with an event; load average {os.getloadavg()[0]:.1f}")
        print(f"{'':24s}{'dense':>14s}{'sparse':>14s}{'sparse/dense':>14s}")
        for label, key, fmt in (("snapshot rows", "rows", "{:,.0f}"), ("build + write (s)", "seconds", "{:.1f}"),
                                ("peak memory (GB)", "peak_bytes", "{:.2f}"),
                                (f"retrieval {users * 3:,} rows (s)", "retrieval", "{:.1f}")):
            a, b = d[key], sp[key]
            if key == "peak_bytes":
                a, b = a / 1e9, b / 1e9
            print(f"{label:24s}{fmt.format(a):>14s}{fmt.format(b):>14s}{b / a:>14.3f}")
        print(f"sparse rows per user-day with an event: {sp['rows'] / sp['user_days']:.2f} (bound: 4)")


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
    ap.add_argument("--compare", action="store_true", help="only sparse vs dense snapshots (rows, time, memory)")
    ap.add_argument("--build", nargs=2, metavar=("LAYOUT", "DATA_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build:
        _build_child(args.build[0], Path(args.build[1]))
        return
    if args.compare:
        compare(args.users, args.days, args.rate)
        return
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
