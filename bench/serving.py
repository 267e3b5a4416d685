"""Serving throughput and latency against the framework's own ceiling, freshness and re-score speed:
every goal of issue 14 from one run, 1 and 2 workers, on SQLite (default profile) and Redis (production).

    python -m bench serving [--data DIR] [--users 500] [--duration 4] [--workers 1,2]
                            [--profiles default,production] [--fresh 100]

Per profile and worker count it starts three real ``bentoml serve`` processes with that many workers
(in parallel): a bare BentoML service with the persona API's shape that returns a constant
(bench/_bare_service.py, the framework's ceiling), the persona service answering from records scored
on write (the default), and the persona service scoring every request (``PERSONA_READ_RECORDS=false``,
what a user without a record costs). A Python load generator (bench/_load.py, in its own process;
nothing to install) drives ``POST /persona`` with one random known user per request: bare and records
at 1 connection (p99), then bare, records and scored at 8 connections (throughput), ``--duration``
seconds each. Freshness: a purchase is posted (``POST /events``), and from its answer until ``POST
/persona`` shows it is timed (p50/p99), with the ``POST /events`` round trip beside it; the reads go
over a connection of their own (with 2 workers, often another worker than the event's).

Several workers: the workers share one listening socket, and a worker woken by a burst of connects
accepts the whole burst, so 8 connections opened at once often all landed on one worker (seen: the
bare service with 2 workers at 1,020 rps in one run and 1,918 in the next, and the persona service
with 2 workers no faster than with 1). The load generator therefore opens its connections a few
milliseconds apart, and each run's CPU split between the workers is measured (from /proc) and
printed: a run in which the least busy worker did less than 70% of an even share is repeated, up to
3 runs, and the most even run is kept (the line says how many runs it took, and the cores the
workers used). Every service, bare included, is measured the same way. An even split did not make
the bare service's 2-worker figure steady (a run at load 12: bare 1,103 rps with its workers at
51/49 beside records at 1,575), so the bare service at 8 connections is measured twice and the
better run is the ceiling (both are printed): ratios are taken against the higher figure. Re-score: every
user's record from the online store with the champions (vectorised LightGBM with contributions, what a
swap triggers), in users/s.

The table at the end gives each goal, the figure, the target and pass/fail, with the load average
before and after (the machine must be quiet for the figures to mean anything). The data (one pipeline
run over the sample) is built once into ``--data`` and reused; at the defaults the measuring takes
about 4 minutes. Production needs Redis and PostgreSQL on 127.0.0.1 (``--profiles default`` skips it);
it uses a Feast project of its own, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench._load import run_in_process
from bench._settings import bench_settings
from serving.process import PROJECT_ROOT, ServiceProcess, free_port, start_service


def _ensure_data(settings) -> None:
    from persona.pipeline import run_all

    if not (settings.data_dir / "feast" / "online_store.db").exists():
        print(f"building the pipeline's data in {settings.data_dir} (once)")
        run_all(settings)


def _known_users(settings, n: int = 500) -> list[str]:
    from features.compute import read_snapshots

    newest = max((settings.data_dir / "features" / "user_behaviour").glob("date=*"))
    users = sorted(read_snapshots(newest, columns=["user_id"])["user_id"].unique())
    return random.Random(7).sample(users, min(n, len(users)))


def freshness(url: str, key: str, users: list[str], n: int) -> tuple[list[float], list[float]]:
    """Milliseconds from ``POST /events`` (a purchase) returning to ``POST /persona`` showing it, and the
    ``POST /events`` round trips, one client."""
    delays, posts = [], []
    # two connections: with several workers the event and the read are often taken by different workers
    with httpx.Client(base_url=url, timeout=30) as client, httpx.Client(base_url=url, timeout=30) as reads:
        for i in range(n):
            user = users[i % len(users)]
            when = datetime.now(UTC) - timedelta(seconds=1)
            event = {"user_id": user, "event_type": "purchase", "timestamp": when.isoformat(), "amount": 10.0 + i,
                     "currency": "EUR", "category": "home", "event_id": f"bench-{secrets.token_hex(8)}"}
            sent = time.perf_counter()
            r = client.post("/events", json={"events": [event]}, headers={"X-API-Key": key})
            r.raise_for_status()
            t0 = time.perf_counter()
            posts.append((t0 - sent) * 1000)
            while True:
                p = reads.post("/persona", json={"user_ids": [user]}).json()["personas"][0]
                seen = p["feature_timestamp"] and datetime.fromisoformat(p["feature_timestamp"]) >= when.replace(microsecond=0)
                if seen:
                    delays.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError(f"event for {user} not visible after 5 s")
    return delays, posts


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def rescore_speed(settings, env: dict[str, str]) -> tuple[int, float]:
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


MIN_EVEN = 0.7
"""With several workers, a run counts only if the least busy worker did at least this fraction of an
even share of the CPU work (2 workers: 35/65 or better); a run whose connections landed on one worker
measures one worker."""
ATTEMPTS = 3


def balanced_run(svc: ServiceProcess, bodies: list[bytes], conns: int, duration: float, workers: int) -> dict:
    """One load run whose connections were served by all workers: with several workers (and at least as
    many connections) a run whose CPU split shows one worker idle is repeated, up to ``ATTEMPTS`` runs; the
    most even one is kept. The result carries ``shares`` (each worker's CPU share) and ``attempts``."""
    pids = svc.worker_pids()
    best: dict | None = None
    for attempt in range(1, ATTEMPTS + 1):
        before = [_cpu_seconds(p) for p in pids]
        result = run_in_process(f"{svc.url}/persona", bodies, conns, duration)
        used = [max(_cpu_seconds(p) - b, 0.0) for p, b in zip(pids, before)]
        total = sum(used) or 1.0
        result["shares"] = [u / total for u in used]
        result["cores"] = sum(used) / duration  # CPU the workers used, in cores
        result["attempts"] = attempt
        even = min(result["shares"]) * len(pids) if pids else 1.0  # 1.0 = perfectly even
        result["even"] = even
        if best is None or even > best["even"]:
            best = result
        if len(pids) < 2 or conns < len(pids) or even >= MIN_EVEN:
            break
    assert best is not None
    return best


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Goals:
    """The figures of one profile and worker count."""

    profile: str
    workers: int
    runs: dict[tuple[str, int], dict] = field(default_factory=dict)  # (service, conns) -> load result
    fresh: list[float] = field(default_factory=list)
    posts: list[float] = field(default_factory=list)
    rescore: tuple[int, float] | None = None

    def rows(self) -> list[tuple[str, str, str, bool | None]]:
        """(goal, figure, target, passed) rows."""
        r = self.runs
        out: list[tuple[str, str, str, bool | None]] = []
        if ("records", 8) in r:
            ratio = r["records", 8]["rps"] / r["bare", 8]["rps"]
            out.append(("records ×bare, 8 conns", f"{ratio:.2f} ({r['records', 8]['rps']:.0f}/{r['bare', 8]['rps']:.0f} rps)",
                        "≥ 0.9", ratio >= 0.9))
        if ("records", 1) in r:
            delta = r["records", 1]["p99"] - r["bare", 1]["p99"]
            out.append(("records Δp99, 1 conn", f"{delta:+.2f} ms ({r['records', 1]['p99']:.2f}/{r['bare', 1]['p99']:.2f})",
                        "≤ 2 ms", delta <= 2.0))
        if ("scored", 8) in r:
            ratio = r["scored", 8]["rps"] / r["bare", 8]["rps"]
            out.append(("scored on request ×bare, 8 conns", f"{ratio:.2f} ({r['scored', 8]['rps']:.0f} rps)", "≥ 0.5",
                        ratio >= 0.5))
        if self.fresh:
            p99 = _pct(self.fresh, 99)
            figure = (f"{p99:.2f} ms (p50 {_pct(self.fresh, 50):.2f}; "
                      f"POST /events p50 {_pct(self.posts, 50):.1f} p99 {_pct(self.posts, 99):.1f})")
            out.append(("freshness p99 (events → persona)", figure, "≤ 20 ms", p99 <= 20.0))
        if self.rescore:
            n, seconds = self.rescore
            out.append(("re-score after a swap", f"{n / seconds:.0f} users/s ({n} users)", "report", None))
        return out


def _measure(settings, env: dict[str, str], bodies: list[bytes], users: list[str], key: str, workers: int,
             duration: float, conns: tuple[int, int], fresh: int, goals: Goals) -> None:
    """Start the three services with ``workers`` workers and fill ``goals``."""
    from concurrent.futures import ThreadPoolExecutor

    starts: dict[str, dict] = {"bare": {"service": "bench._bare_service:BareService", "name": "bare"},
                               "records": {"env": env}, "scored": {"env": env | {"PERSONA_READ_RECORDS": "false"}}}
    with ThreadPoolExecutor(3) as pool:  # start together: the start-up dominates otherwise
        futures = {n: pool.submit(start_service, settings, port=free_port(), workers=workers, timeout=240, **kw)
                   for n, kw in starts.items()}
        services: dict[str, ServiceProcess] = {}
        try:
            for n, f in futures.items():
                services[n] = f.result()
        except BaseException:
            for f in futures.values():
                if f.done() and f.exception() is None:
                    f.result().stop()
            raise
    try:
        for svc in services.values():
            _warm(svc, bodies, workers)
        plan = [("bare", conns[0]), ("records", conns[0]), ("bare", conns[1]), ("records", conns[1]), ("scored", conns[1])]
        for name, c in plan:
            r = balanced_run(services[name], bodies, c, duration, workers)
            note = ""
            if name == "bare" and c == conns[1]:  # the ceiling: the better of two runs (it varies most)
                again = balanced_run(services[name], bodies, c, duration, workers)
                note = f" (better of {r['rps']:.0f} and {again['rps']:.0f})"
                r = max(r, again, key=lambda x: x["rps"])
            goals.runs[name, c] = r
            split = "/".join(f"{x * 100:.0f}" for x in r["shares"])
            runs = f" ({r['attempts']} runs)" if r["attempts"] > 1 else ""
            print(f"  {goals.profile:>10} {workers:>2}w {c:>2}c {name:>7}: {r['rps']:7.0f} rps  p50 {r['p50']:6.2f}  "
                  f"p99 {r['p99']:7.2f} ms  failed {int(r['failed'])}  workers {r['cores']:.2f} cores, {split}%{runs}{note}"
                  f"  (load {_load()})", flush=True)
        if fresh:
            goals.fresh, goals.posts = freshness(services["records"].url, key, users, fresh)
    finally:
        for svc in services.values():
            svc.stop()


def _production_env(settings) -> tuple[dict[str, str], object]:
    """The same data with its online store on Redis and the Feast registry on PostgreSQL (a project of its own)."""
    from features.store import open_store
    from persona.pipeline import materialize, register_features

    project = f"persona_bench_{secrets.token_hex(4)}"
    store = open_store(settings, profile="production", project=project)
    register_features(settings, store)
    materialize(settings, store)
    sqlite = f"sqlite:///{settings.data_dir / 'mlflow' / 'mlflow.db'}"  # the models stay where they were trained
    salt = settings.hash_salt if len(settings.hash_salt) >= 32 else secrets.token_hex(32)
    return {"PERSONA_PROFILE": "production", "PERSONA_FEAST_PROJECT": project, "PERSONA_HASH_SALT": salt,
            "PERSONA_MLFLOW_TRACKING_URI": sqlite, "PERSONA_MLFLOW_REGISTRY_URI": sqlite}, store


def _remove_production(store) -> None:
    """Leave nothing behind in the shared servers."""
    from features.online_layout import redis_client

    project = store.project
    client = redis_client(store)
    for kind in ("record", "event_id", "rescore"):  # records, folded event ids, re-score claims
        for k in client.scan_iter(match=f"persona:{kind}:{project}:*".encode(), count=5000):
            client.delete(k)
    store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
    store.registry.delete_project(project, commit=True)


def table(goals: list[Goals], load_before: str, load_after: str) -> str:
    """The goals as a markdown table with pass/fail."""
    lines = [f"load average before {load_before}, after {load_after}; {os.cpu_count()} cores", "",
             "| profile | workers | goal | measured | target | result |", "|---|---|---|---|---|---|"]
    for g in goals:
        for goal, figure, target, ok in g.rows():
            verdict = "—" if ok is None else ("pass" if ok else "FAIL")
            lines.append(f"| {g.profile} | {g.workers} | {goal} | {figure} | {target} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Run the serving benchmark and print its table of goals."""
    ap = argparse.ArgumentParser(prog="python -m bench serving")
    ap.add_argument("--data", type=Path, default=PROJECT_ROOT / "data" / "bench" / "serving")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--duration", type=float, default=4, help="seconds per load run")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--conns", default="1,8", help="the p99 concurrency and the throughput concurrency")
    ap.add_argument("--fresh", type=int, default=100, help="events for the freshness measurement (0: skip)")
    ap.add_argument("--profiles", default="default,production",
                    help="default: SQLite online store; production: Redis online store, PostgreSQL registry")
    ap.add_argument("--profile", choices=["default", "production"], help="one profile only (older spelling)")
    args = ap.parse_args(argv)
    profiles = [args.profile] if args.profile else [p.strip() for p in args.profiles.split(",") if p.strip()]
    low, high = (int(c) for c in args.conns.split(","))
    settings = bench_settings(args.data.resolve(), users=args.users, days=args.days)
    settings = settings.model_copy(update={"config_path": PROJECT_ROOT / "persona.yaml"})
    _ensure_data(settings)
    users = _known_users(settings)
    bodies = [json.dumps({"user_ids": [u]}).encode() for u in users]
    key = secrets.token_hex(16)
    base_env = {settings.serving.api_key_env: key, "PERSONA_DATA_DIR": str(settings.data_dir)}
    print(f"{os.cpu_count()} cores; POST /persona, one user per request ({len(users)} users), {args.duration:g}s per "
          f"run, Python load generator in its own process; 'records' = scored on write, 'scored' = scored on "
          f"each request; load average {_load()}", flush=True)
    load_before, started = _load(), time.monotonic()
    results: list[Goals] = []
    for profile in profiles:
        env, store = dict(base_env), None
        try:
            if profile == "production":
                extra, store = _production_env(settings)
                env |= extra
            for workers in [int(w) for w in args.workers.split(",")]:
                goals = Goals(profile, workers)
                results.append(goals)
                _measure(settings, env, bodies, users, key, workers, args.duration, (low, high), args.fresh, goals)
            n, seconds = rescore_speed(settings, env)
            for g in results:
                if g.profile == profile:
                    g.rescore = (n, seconds)
        finally:
            if store is not None:
                _remove_production(store)
    print(f"\n{table(results, load_before, _load())}\n\n(measured in {time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
