"""Studio page timings at 50,000 users (the issue's bound: under 1 s per page), in a temporary folder.

Stores are filled with generated data shaped like a real run's: a persona history of ``updates`` batch
updates (a share of users changing each time), the newest feature snapshot, ~20 events per user over the
last 30 days, the identity graph. Then the update-time aggregates are built (timed: that cost moves from
the request to ``persona update``) and each page is requested through the studio's ASGI app in-process
(Starlette's test client: the whole app, without the network), median of ``repeat`` requests after one
warm-up. Person pages are answered without the service's live scoring (drivers): that path is timed by
``python -m bench serving``.

``python -m bench studio [users] [updates]``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench._settings import PROJECT, bench_settings

if TYPE_CHECKING:
    from base.config import Settings

KEY = "bench-key"


def _fill(s: Settings, users: int, updates: int, rng: np.random.Generator) -> list[str]:
    """Fill the stores the studio reads with generated data; returns the user ids."""
    from base.paths import DataPaths
    from scoring.history import append_history

    paths = DataPaths(s.data_dir)
    ids = np.array([f"u{i:07d}" for i in range(users)])
    day = pd.Timestamp("2026-11-30", tz="UTC")
    spend = rng.lognormal(3.5, 1.0, users)
    churn = rng.beta(2, 3, users)
    segs = np.array(["drifting_away", "loyal_big_spender", "bargain_hunter", "window_shopper", "casual"])
    for k in range(updates):
        move = rng.random(users) < (1.0 if k == 0 else 0.15)
        spend = np.where(move, spend * rng.lognormal(0, 0.3, users), spend)
        churn = np.where(move, np.clip(churn + rng.normal(0, 0.1, users), 0, 1), churn)
        when = day - pd.Timedelta(days=updates - 1 - k)
        append_history(s, pd.DataFrame({
            "user_id": ids, "segment": segs[rng.integers(0, len(segs), users)], "predicted_spend": spend.round(2),
            "churn_risk": churn.round(4), "spend_version": "1", "churn_version": "1",
            "feature_timestamp": when, "scored_at": when + pd.Timedelta(hours=1)}), "batch")
    snap = pd.DataFrame({"user_id": ids, "event_timestamp": day, "created": day,
                         "purchases_90d": rng.poisson(2, users), "spend_90d": (spend * 2).round(2),
                         "aov_90d": rng.lognormal(3.3, 0.4, users), "product_views_30d": rng.poisson(6, users),
                         "days_since_last_purchase": rng.exponential(20, users),
                         "sessions_30d": rng.poisson(4, users), "cart_conversion_30d": rng.random(users),
                         "support_tickets_90d": rng.poisson(0.2, users)})
    part = paths.behaviour_snapshots / f"date={day:%Y-%m-%d}"
    part.mkdir(parents=True)
    snap.to_parquet(part / "part-0.parquet", index=False)
    per_day = users * 20 // 30
    for d in range(30):
        when = day - pd.Timedelta(days=30 - d)
        folder = paths.events / f"date={when:%Y-%m-%d}"
        folder.mkdir(parents=True)
        pd.DataFrame({"event_id": [f"e{d}-{i}" for i in range(per_day)],
                      "user_id": ids[rng.integers(0, users, per_day)],
                      "email_hash": None, "event_type": "page_view", "channel": "web",
                      "timestamp": when + pd.to_timedelta(rng.integers(0, 86400, per_day), unit="s"),
                      "amount": np.nan, "currency": None, "category": "home", "product_id": None,
                      "device": "mobile"}).to_parquet(folder / "part.parquet", index=False)
    paths.identity_graph.parent.mkdir(parents=True)
    pd.DataFrame({"alias": [f"a-{i:07d}" for i in range(users)], "kind": "anonymous", "user_id": ids,
                  "linked_at": day, "event_id": "e", "batch_id": "b"}).to_parquet(paths.identity_graph, index=False)
    return ids.tolist()


def run(users: int = 50_000, updates: int = 12, repeat: int = 5) -> dict[str, float]:
    """Measure; returns seconds per page (median) and the aggregate build time."""
    import shutil

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from studio.aggregates import build
    from studio.app import build_app
    from studio.context import Hooks

    rng = np.random.default_rng(19)
    with tempfile.TemporaryDirectory(prefix="persona-bench-studio-") as tmp:
        rules = Path(tmp) / "segments.yaml"
        shutil.copy(PROJECT / "segments.yaml", rules)
        s = bench_settings(Path(tmp) / "data").model_copy(update={"segments_file": rules})
        t0 = time.perf_counter()
        ids = _fill(s, users, updates, rng)
        print(f"stores filled for {users:,} users, {updates} updates in {time.perf_counter() - t0:.1f}s", flush=True)
        t0 = time.perf_counter()
        print(build(s), flush=True)
        figures = {"aggregates_build_s": time.perf_counter() - t0}
        os.environ["PERSONA_API_KEY"] = KEY
        app = Starlette(routes=[Mount("/studio", build_app(Hooks(settings=lambda: s)))])
        client = TestClient(app, headers={"X-API-Key": KEY})
        form = {"rules": "2", "r0.name": "big", "r0.conds": "1", "r0.c0.field": "predicted_spend",
                "r0.c0.op": ">=", "r0.c0.value": "100", "r1.name": "rest", "r1.conds": "0"}
        pages = {"overview": ("GET", "/studio/"), "person": ("GET", f"/studio/person?q={ids[users // 2]}"),
                 "rules": ("GET", "/studio/rules"), "rules_preview": ("POST", "/studio/rules/preview"),
                 "audiences": ("GET", "/studio/audiences"), "models": ("GET", "/studio/models")}
        for name, (method, path) in pages.items():
            times = []
            for _ in range(repeat + 1):
                t0 = time.perf_counter()
                resp = client.post(path, data=form) if method == "POST" else client.get(path)
                times.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    raise SystemExit(f"{path}: {resp.status_code} {resp.text[:300]}")
            figures[f"{name}_s"] = statistics.median(times[1:])
    return figures


def main(argv: list[str]) -> None:
    """``python -m bench studio [users] [updates]``."""
    users = int(argv[0]) if argv else 50_000
    updates = int(argv[1]) if len(argv) > 1 else 12
    figures = run(users, updates)
    print(f"studio at {users:,} users, {updates} updates (median of 5 requests, in-process ASGI):")
    for name, value in figures.items():
        print(f"  {name:22s} {value:7.3f} s" + ("  (over 1 s)" if name != "aggregates_build_s" and value > 1 else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
