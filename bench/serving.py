"""Serving throughput and latency against the framework's own ceiling, and real-time freshness.

    python -m bench serving [--data DIR] [--users 2000] [--duration 10] [--conns 1,8,32] [--profile production]

Starts two real ``bentoml serve`` processes: the persona service on the pipeline's data and a bare
BentoML service with the same API shape that returns a constant (bench/_bare_service.py). For each
concurrency, wrk drives ``POST /persona`` with one random known user per request against both,
one after the other, and the table shows requests/s, p50 and p99 and the persona/bare ratio.
Then freshness: after ``POST /events`` (a purchase) returns, how long until ``POST /persona``
shows it (its feature timestamp reaches the event), p50/p99 over many events.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench._settings import bench_settings
from serving.process import PROJECT_ROOT, free_port, start_service

LUA = """
math.randomseed(os.time())
local users = {%s}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, '{"user_ids":["' .. users[math.random(#users)] .. '"]}')
end
"""


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


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, conns: int, duration: int) -> dict[str, float]:
    """Run wrk once; requests/s, p50/p99 latency (ms) and the count of failed responses."""
    threads = max(1, min(conns, 2))
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--latency",
                          "-s", str(script), f"{url}/persona"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    return {"rps": rps, "p50": p50, "p99": p99, "failed": failed}


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


def main(argv: list[str]) -> None:
    """Run the serving benchmark and print its table."""
    ap = argparse.ArgumentParser(prog="python -m bench serving")
    ap.add_argument("--data", type=Path, default=PROJECT_ROOT / "data" / "bench" / "serving")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", default="1,8,32")
    ap.add_argument("--fresh", type=int, default=200, help="events for the freshness measurement")
    ap.add_argument("--profile", choices=["default", "production"], default="default",
                    help="production: online store on Redis, Feast registry on PostgreSQL")
    args = ap.parse_args(argv)
    settings = bench_settings(args.data.resolve(), users=args.users, days=args.days)
    _ensure_data(settings)
    users = _known_users(settings)
    key = secrets.token_hex(16)
    env = {settings.serving.api_key_env: key}
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
    print(f"profile: {args.profile}")
    persona = start_service(settings, port=free_port(), env=env)
    cold = start_service(settings, port=free_port(), env=env | {"PERSONA_SCORE_CACHE_SIZE": "0"})
    bare = start_service(settings, port=free_port(), service="bench._bare_service:BareService")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "persona.lua"
            script.write_text(LUA % ",".join(f'"{u}"' for u in users))
            for svc in (bare, persona, cold):  # warm up (fills the persona cache)
                wrk(svc.url, script, 2, 3)
            print(f"\nPOST /persona, one user per request ({len(users)} users), {args.duration}s per run, "
                  f"{os.cpu_count()} cores; 'cached' = persona cache on (default), 'cold' = every request scored")
            print(f"{'conns':>5} | {'service':>7} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} | {'rps/bare':>8} "
                  f"{'Δp99 ms':>7} | failed")
            for conns in [int(c) for c in args.conns.split(",")]:
                b = wrk(bare.url, script, conns, args.duration)
                for name, svc in (("bare", None), ("cached", persona), ("cold", cold)):
                    r = b if svc is None else wrk(svc.url, script, conns, args.duration)
                    print(f"{conns:>5} | {name:>7} {r['rps']:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} | "
                          f"{r['rps'] / b['rps']:>8.2f} {r['p99'] - b['p99']:>7.2f} | {int(r['failed'])}")
        delays = freshness(persona.url, key, users, args.fresh) if args.fresh else []
        if delays:
            print(f"\nfreshness (POST /events returned → POST /persona shows it), {len(delays)} events: "
                  f"p50 {_pct(delays, 50):.2f} ms, p99 {_pct(delays, 99):.2f} ms, max {max(delays):.2f} ms")
    finally:
        for svc in (bare, persona, cold):
            svc.stop()
        if redis_store is not None:  # leave nothing behind in the shared servers
            project = redis_store.project
            redis_store._get_provider().teardown_infra(project, redis_store.list_feature_views(),  # noqa: SLF001
                                                       redis_store.list_entities())
            redis_store.registry.delete_project(project, commit=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
