"""Serving throughput and latency against the framework's own ceiling, re-score speed and freshness.

    python -m bench serving [--data DIR] [--users 500] [--duration 8] [--conns 1,8] [--workers 1,2]
                            [--profile production]

For each worker count, starts three real ``bentoml serve`` processes with that many workers: a bare
BentoML service with the persona API's shape that returns a constant (bench/_bare_service.py, the
framework's ceiling), the persona service answering from stored records (score on write, the
default), and the persona service scoring every request (``PERSONA_READ_RECORDS=false``, what a
user without a record costs). A Python load generator (bench/_load.py, in its own process; nothing
to install) drives ``POST /persona`` with one random known user per request against each, at each
concurrency, and the table shows requests/s, p50 and p99, and the ratios to bare.

Then: re-scoring every user from the online store with the champions (vectorised LightGBM with
contributions, what a swap or a new snapshot triggers), in users/s; and freshness: after ``POST
/events`` (a purchase) returns, how long until ``POST /persona`` shows it, p50/p99, per worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench._load import run_in_process
from bench._settings import bench_settings
from serving.process import PROJECT_ROOT, ServiceProcess, free_port, start_service


def _ensure_data(settings) -> None:  # noqa: ANN001
    from persona.pipeline import run_all

    if not (settings.data_dir / "feast" / "online_store.db").exists():
        print(f"building the pipeline's data in {settings.data_dir} (once)")
        run_all(settings)


def _known_users(settings, n: int = 500) -> list[str]:  # noqa: ANN001
    from features.compute import read_snapshots

    newest = sorted((settings.data_dir / "features" / "user_behaviour").glob("date=*"))[-1]
    users = sorted(read_snapshots(newest, columns=["user_id"])["user_id"].unique())
    return random.Random(7).sample(users, min(n, len(users)))


def freshness(url: str, key: str, users: list[str], n: int) -> list[float]:
    """Milliseconds from POST /events returning to POST /persona showing the new event."""
    delays = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(n):
            user = users[i % len(users)]
            when = datetime.now(timezone.utc) - timedelta(seconds=1)
            event = {"user_id": user, "event_type": "purchase", "timestamp": when.isoformat(), "amount": 10.0 + i,
                     "currency": "EUR", "category": "home", "event_id": f"bench-{secrets.token_hex(8)}"}
            r = client.post("/events", json={"events": [event]}, headers={"X-API-Key": key})
            r.raise_for_status()
            t0 = time.perf_counter()
            while True:
                p = client.post("/persona", json={"user_ids": [user]}).json()["personas"][0]
                seen = p["feature_timestamp"] and datetime.fromisoformat(p["feature_timestamp"]) >= when.replace(microsecond=0)
                if seen:
                    delays.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError(f"event for {user} not visible after 5 s")
    return delays


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def rescore_speed(settings, env: dict[str, str]) -> tuple[int, float]:  # noqa: ANN001
    """Users and seconds to re-score every user's stored record from the online store (in this process)."""
    from features.online_records import RecordStore
    from features.store import open_store
    from scoring.batch import rescore_records
    from scoring.scorer import PersonaScorer
    from serving.online import OnlineFeatures
    from training.champions import load_champions

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from base.config import load_settings

        s = load_settings(settings.config_path).model_copy(update={"data_dir": settings.data_dir})
        store = open_store(s)
        scorer = PersonaScorer(load_champions(s.ml), s)
        online = OnlineFeatures(store)
        records = RecordStore(store)
        users = [u for u in records.users()] or _known_users(s, 10**9)
        result = rescore_records(scorer, lambda ids: online.read(ids, scorer.features), records, users)
        records.close()
        return result.users, result.seconds
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _warm(svc: ServiceProcess, bodies: list[bytes], workers: int) -> None:
    """Until every worker answers (each loads its models at start) and the stored records exist."""
    run_in_process(f"{svc.url}/persona", bodies, 2 * workers, 3)


def main(argv: list[str]) -> None:
    """Run the serving benchmark and print its tables."""
    ap = argparse.ArgumentParser(prog="python -m bench serving")
    ap.add_argument("--data", type=Path, default=PROJECT_ROOT / "data" / "bench" / "serving")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--conns", default="1,8")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--fresh", type=int, default=200, help="events for the freshness measurement")
    ap.add_argument("--profile", choices=["default", "production"], default="default",
                    help="production: online store on Redis, Feast registry on PostgreSQL")
    args = ap.parse_args(argv)
    settings = bench_settings(args.data.resolve(), users=args.users, days=args.days)
    settings = settings.model_copy(update={"config_path": PROJECT_ROOT / "persona.yaml"})
    _ensure_data(settings)
    users = _known_users(settings)
    bodies = [json.dumps({"user_ids": [u]}).encode() for u in users]
    key = secrets.token_hex(16)
    env = {settings.serving.api_key_env: key, "PERSONA_DATA_DIR": str(settings.data_dir)}
    redis_store = None
    if args.profile == "production":  # the same data, online store on Redis, Feast registry on PostgreSQL
        from features.store import open_store
        from persona.pipeline import materialize, register_features

        project = f"persona_bench_{secrets.token_hex(4)}"
        redis_store = open_store(settings, profile="production", project=project)
        register_features(settings, redis_store)
        materialize(settings, redis_store)
        sqlite = f"sqlite:///{settings.data_dir / 'mlflow' / 'mlflow.db'}"  # the models stay where they were trained
        env |= {"PERSONA_PROFILE": "production", "PERSONA_FEAST_PROJECT": project,
                "PERSONA_MLFLOW_TRACKING_URI": sqlite, "PERSONA_MLFLOW_REGISTRY_URI": sqlite}
    print(f"profile: {args.profile}; {os.cpu_count()} cores; POST /persona, one user per request "
          f"({len(users)} users), {args.duration:g}s per run, Python load generator in its own process")
    print("'records' = answered from records scored on write; 'scored' = every request scored on the request")
    fresh: dict[int, list[float]] = {}
    try:
        print(f"\n{'workers':>7} {'conns':>5} | {'service':>7} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'rps/bare':>8} {'Δp99 ms':>7} | failed")
        for workers in [int(w) for w in args.workers.split(",")]:
            bare = start_service(settings, port=free_port(), service="bench._bare_service:BareService",
                                 workers=workers, name="bare")
            persona = start_service(settings, port=free_port(), env=env, workers=workers)
            scored = start_service(settings, port=free_port(), env=env | {"PERSONA_READ_RECORDS": "false"},
                                   workers=workers)
            try:
                for svc in (bare, persona, scored):
                    _warm(svc, bodies, workers)
                for conns in [int(c) for c in args.conns.split(",")]:
                    b = run_in_process(f"{bare.url}/persona", bodies, conns, args.duration)
                    for name, svc in (("bare", None), ("records", persona), ("scored", scored)):
                        r = b if svc is None else run_in_process(f"{svc.url}/persona", bodies, conns, args.duration)
                        print(f"{workers:>7} {conns:>5} | {name:>7} {r['rps']:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} | "
                              f"{r['rps'] / b['rps']:>8.2f} {r['p99'] - b['p99']:>7.2f} | {int(r['failed'])}")
                if args.fresh:
                    fresh[workers] = freshness(persona.url, key, users, args.fresh)
            finally:
                for svc in (bare, persona, scored):
                    svc.stop()
        for workers, delays in fresh.items():
            print(f"freshness, {workers} worker(s) (POST /events returned → POST /persona shows it), {len(delays)} "
                  f"events: p50 {_pct(delays, 50):.2f} ms, p99 {_pct(delays, 99):.2f} ms, max {max(delays):.2f} ms")
        n, seconds = rescore_speed(settings, env)
        print(f"re-score of every user's record (online features → records, vectorised LightGBM with "
              f"contributions): {n} users in {seconds:.2f}s = {n / seconds:.0f} users/s")
    finally:
        if redis_store is not None:  # leave nothing behind in the shared servers
            from features.online_layout import redis_client

            project = redis_store.project
            client = redis_client(redis_store)
            for kind in ("record", "event_id", "rescore"):  # records, folded event ids, re-score claims
                for k in client.scan_iter(match=f"persona:{kind}:{project}:*".encode(), count=5000):
                    client.delete(k)
            redis_store._get_provider().teardown_infra(project, redis_store.list_feature_views(),  # noqa: SLF001
                                                       redis_store.list_entities())
            redis_store.registry.delete_project(project, commit=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
