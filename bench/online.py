"""Online store figures, each comparison measured in one run:

- materialization: entity rows/s of the newest snapshot of every user into the SQLite online store
  and into Redis, ours (features/online_writer.py) at full size, and ours vs Feast's ``materialize``
  at a size Feast handles (same data, same process, each into a fresh project);
- online read in process: p50/p99 of one user and of 100 users with every ``persona_v1`` feature,
  ours (features/online_reader.py) vs Feast's ``get_online_features``, interleaved call by call.

Usage: python -m bench online [--users 50000] [--feast-users 5000] [--reads 2000] [--no-redis]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from base.config import Settings, load_settings

PROJECT = Path(__file__).resolve().parent.parent
DAY = pd.Timestamp("2026-06-30", tz="UTC")


def synthetic_snapshots(fvs: Any, users: int, seed: int = 7) -> pd.DataFrame:
    """One snapshot per user for every field of the views ``fvs`` (counts, money, shares; a tenth missing)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user_id": [f"u{i:06d}" for i in range(users)], "event_timestamp": DAY, "created": DAY})
    for f in (f for fv in fvs for f in fv.features):
        if "INT" in f.dtype.to_value_type().name:
            frame[f.name] = rng.poisson(4, users).astype("int64")
        else:
            values = np.round(rng.gamma(2.0, 30.0, users), 2)
            values[rng.random(users) < 0.1] = np.nan
            frame[f.name] = values
    return frame


@contextmanager
def fresh_store(settings: Settings, profile: str) -> Iterator[Any]:
    """A registered store in a project of its own, removed afterwards on the shared servers."""
    from features.store import open_store
    from persona.pipeline import register_features

    store = open_store(settings, profile=profile, project=f"bench_{uuid.uuid4().hex[:8]}")
    register_features(settings, store)
    try:
        yield store
    finally:
        if profile == "production":
            store._get_provider().teardown_infra(store.project, store.list_feature_views(), store.list_entities())
            store.registry.delete_project(store.project, commit=True)


def data_dir_with(base: Settings, root: Path, users: int) -> tuple[Settings, int]:
    """Settings over a new data directory whose newest snapshot partition holds ``users`` users,
    and the number of user_behaviour features."""
    from features.compute import write_snapshots
    from features.store import open_store
    from persona.pipeline import register_features

    s = base.model_copy(update={"data_dir": root})
    (root / "features" / "user_behaviour").mkdir(parents=True, exist_ok=True)
    probe = open_store(s, project="bench_probe")
    register_features(s, probe)
    fv = probe.get_feature_view("user_behaviour")
    views = [fv] + [v for v in probe.list_feature_views() if v.name != fv.name]  # the lifetime view shares the rows
    write_snapshots(synthetic_snapshots(views, users), root / "features" / "user_behaviour")
    return s, len(fv.features)


def timed_materialize(settings: Settings, profile: str, use_feast: bool = False,
                      cpu: list[float] | None = None) -> tuple[int, float]:
    """(users, wall seconds) of one materialization into a fresh project; its CPU seconds (this
    process) are appended to ``cpu`` when given (on a shared machine wall time includes waiting)."""
    from persona.pipeline import materialize

    with fresh_store(settings, profile) as store:
        t, c = time.perf_counter(), time.process_time()
        users = materialize(settings, store, use_feast=use_feast)
        if cpu is not None:
            cpu.append(time.process_time() - c)
        return users, time.perf_counter() - t


def _pct(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000, q))


def read_latency(store: Any, ids: list[str], reads: int, seed: int = 3) -> dict[str, dict[str, list[float]]]:
    """Seconds per call, ours vs Feast, for one user and for 100 users (calls interleaved)."""
    from features.online_reader import OnlineReader

    reader = OnlineReader(store, "persona_v1")
    service = store.get_feature_service("persona_v1")
    rng = np.random.default_rng(seed)
    calls: dict[str, Callable[[list[str]], Any]] = {
        "ours": reader.read,
        "feast": lambda users: store.get_online_features(  # request_ts: the on-demand view user_time needs it
            features=service, entity_rows=[{"user_id": u, "request_ts": time.time()} for u in users]).to_dict(),
    }
    out: dict[str, dict[str, list[float]]] = {"1": {k: [] for k in calls}, "100": {k: [] for k in calls}}
    for size, rounds in (("1", reads), ("100", max(reads // 10, 20))):
        for call in calls.values():  # warm-up
            call(list(rng.choice(ids, int(size))))
        for _ in range(rounds):
            users = [str(u) for u in rng.choice(ids, int(size))]
            for name, call in calls.items():
                t = time.perf_counter()
                call(users)
                out[size][name].append(time.perf_counter() - t)
    return out


def report_reads(label: str, timings: dict[str, dict[str, list[float]]]) -> None:
    """Print p50/p99 of ours and Feast's, and how many times faster ours is."""
    for size, runs in timings.items():
        ours, feast = runs["ours"], runs["feast"]
        print(f"{label:6s} read {size:>3s} user{'s' if size != '1' else ' '}: "
              f"ours p50 {_pct(ours, 50):6.3f} ms p99 {_pct(ours, 99):6.3f} ms | "
              f"Feast p50 {_pct(feast, 50):6.3f} ms p99 {_pct(feast, 99):6.3f} ms | "
              f"ours {_pct(feast, 50) / _pct(ours, 50):5.1f}x faster at p50, "
              f"{_pct(feast, 99) / _pct(ours, 99):5.1f}x at p99 ({len(ours)} calls each)")


def main(argv: list[str] | None = None) -> None:
    """Run the online store benchmarks and print the figures."""
    from persona.pipeline import materialize

    ap = argparse.ArgumentParser(prog="python -m bench online")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--feast-users", type=int, default=5_000, help="size for the comparison with Feast's materialize")
    ap.add_argument("--reads", type=int, default=2_000, help="one-user reads per reader (100-user reads: a tenth)")
    ap.add_argument("--no-redis", action="store_true")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    profiles = [("sqlite", "default")] + ([] if args.no_redis else [("redis", "production")])
    with tempfile.TemporaryDirectory(prefix="persona-bench-") as tmp:
        base = load_settings(PROJECT / "persona.yaml")
        full, n_features = data_dir_with(base, Path(tmp) / "full", args.users)
        small, _ = data_dir_with(base, Path(tmp) / "small", args.feast_users)
        for label, profile in profiles:
            cpu: list[float] = []
            users, secs = timed_materialize(full, profile, cpu=cpu)
            print(f"{label:6s} materialize {users:,} users x {n_features} features: "
                  f"ours {users / secs:10,.0f} rows/s ({secs:.2f} s wall, {cpu[0]:.2f} s CPU in this process)")
            n, ours_s = timed_materialize(small, profile)
            _, feast_s = timed_materialize(small, profile, use_feast=True)
            print(f"{label:6s} materialize {n:,} users: ours {n / ours_s:,.0f} rows/s, Feast's materialize "
                  f"{n / feast_s:,.0f} rows/s: ours {feast_s / ours_s:.1f}x faster")
            with fresh_store(full, profile) as store:
                materialize(full, store)
                if profile == "default":  # on Redis an equally old snapshot is skipped, as Feast does
                    t = time.perf_counter()
                    again = materialize(full, store)
                    print(f"{label:6s} materialize again over the stored rows (upsert): "
                          f"{again / (time.perf_counter() - t):,.0f} rows/s")
                ids = [f"u{i:06d}" for i in range(args.users)]
                report_reads(label, read_latency(store, ids, args.reads))


if __name__ == "__main__":
    main()
