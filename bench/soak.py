"""Soak: the service on two workers under a bounded load while the platform changes underneath it.

    python -m bench soak [--seconds 600] [--data DIR] [--users 300]

Several clients read ``POST /persona`` and write ``POST /events`` (one purchase per call, each with
its own id; some re-sent on purpose, and every call that lost its connection retried, as a careful
client does) against ``bentoml serve`` with two workers, while, in order: ``persona update`` runs, a
champion is promoted, one worker is killed (``SIGKILL``; BentoML starts a new one) and the champion
is rolled back. Afterwards: the count of 5xx answers (must be 0), every event the service took
exactly once in the clean store after the next ingest, and exactly once in the online values (each
user's ``purchases_today`` moved by exactly the purchases taken for them), and the growth of the
surviving worker's resident memory from after a warm-up that takes every path once (a swap and its
roll-back included) to the end (must stay under 10%). ``tests/soak`` runs a short version.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from base.config import Settings
    from serving.process import ServiceProcess

@dataclass
class SoakResult:
    """What a soak saw and what it checked afterwards."""

    seconds: float
    statuses: Counter = field(default_factory=Counter)
    connection_errors: int = 0
    taken: dict[str, str] = field(default_factory=dict)  # event id -> user, taken by the service
    resent: int = 0
    duplicates_answered: int = 0
    timeline: list[str] = field(default_factory=list)
    clean_counts: dict[str, int] = field(default_factory=dict)
    online_delta: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (expected, found)
    rss_start: int = 0
    rss_end: int = 0

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def memory_growth(self) -> float:
        """Relative growth of the surviving worker's resident memory."""
        return (self.rss_end - self.rss_start) / self.rss_start if self.rss_start else 0.0

    def problems(self) -> list[str]:
        """Every broken promise, as text (empty when the soak passed)."""
        out = []
        if self.server_errors:
            out.append(f"{self.server_errors} answers 5xx: {dict(self.statuses)}")
        not_once = {i: n for i, n in self.clean_counts.items() if n != 1}
        if not_once:
            out.append(f"{len(not_once)} taken events not exactly once in the clean store: {list(not_once.items())[:5]}")
        wrong = {u: d for u, d in self.online_delta.items() if d[0] != d[1]}
        if wrong:
            out.append(f"{len(wrong)} users whose online purchases_today moved by another count than their "
                       f"taken purchases (expected, found): {list(wrong.items())[:5]}")
        if self.memory_growth >= 0.10:
            out.append(f"resident memory of the surviving worker grew {self.memory_growth:.1%} "
                       f"({self.rss_start / 1e6:.0f} → {self.rss_end / 1e6:.0f} MB)")
        if not self.taken:
            out.append("no event was taken")
        return out

    def summary(self) -> str:
        """A short report."""
        return (f"{sum(self.statuses.values())} answers in {self.seconds:.0f}s {dict(sorted(self.statuses.items()))}, "
                f"{self.connection_errors} lost connections (retried), {len(self.taken)} events taken "
                f"({self.resent} re-sent on purpose, {self.duplicates_answered} answered as duplicates), "
                f"worker RSS {self.rss_start / 1e6:.0f} → {self.rss_end / 1e6:.0f} MB ({self.memory_growth:+.1%}); "
                f"timeline: {'; '.join(self.timeline)}")


def workers(svc: ServiceProcess) -> list[Any]:
    """The service's worker processes (psutil)."""
    import psutil

    procs = []
    for pid in svc.worker_pids():
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:  # gone since it was listed
            pass
    return procs


def _purchases_today(settings: Settings, users: list[str]) -> dict[str, int]:
    from features.store import open_store

    got = open_store(settings).get_online_features(features=["user_activity:purchases_today"],
                                                   entity_rows=[{"user_id": u} for u in users]).to_dict()
    return {u: int(v or 0) for u, v in zip(users, got["purchases_today"])}


class Load:
    """Reader and writer clients running until stopped."""

    def __init__(self, url: str, key: str, users: list[str], result: SoakResult, seed: int = 11) -> None:
        self.url, self.key, self.users, self.result = url, key, users, result
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def _post(self, client: httpx.Client, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
        """POST, retrying the same body after a lost connection (the killed worker)."""
        for _ in range(20):
            try:
                resp = client.post(path, json=body, headers=headers or {})
            except httpx.TransportError:
                with self.lock:
                    self.result.connection_errors += 1
                time.sleep(0.2)
                continue
            with self.lock:
                self.result.statuses[resp.status_code] += 1
            if resp.status_code < 500:
                return resp
            time.sleep(0.2)
        raise RuntimeError(f"{path}: no answer after 20 tries")

    def reader(self) -> None:
        """Personas of random known users, a few per call."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                self._post(client, "/persona", {"user_ids": self.rng.sample(self.users, 3)})

    def writer(self, name: str) -> None:
        """One purchase per call; every fifth re-sent on purpose."""
        auth = {"X-API-Key": self.key}
        i = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                user = self.rng.choice(self.users)
                event_id = f"soak-{name}-{i}-{secrets.token_hex(4)}"
                event = {"event_id": event_id, "user_id": user, "event_type": "purchase", "amount": 5.0,
                         "currency": "EUR", "category": "home",
                         "timestamp": (datetime.now(UTC) - timedelta(seconds=2)).isoformat()}
                sends = 2 if i % 5 == 0 else 1
                for _ in range(sends):
                    body = self._post(client, "/events", {"events": [event]}, auth).json()
                    with self.lock:
                        if body.get("accepted") == 1 or body.get("duplicates") == 1:
                            self.result.taken[event_id] = user
                        self.result.duplicates_answered += body.get("duplicates", 0)
                self.result.resent += sends - 1
                i += 1
                time.sleep(0.02)


def _promote(settings: Settings) -> tuple[Any, Any]:
    """A new spend version with the champion's artifacts, made champion; returns (old, new)."""
    from training.registry import ModelRef, alias_version, client, set_alias

    ml = settings.ml
    old = alias_version(ml, "spend")
    src = client(ml).get_model_version(old.name, old.version)
    mv = client(ml).create_model_version(old.name, source=src.source, run_id=src.run_id)
    new = ModelRef(old.name, str(mv.version), src.run_id)
    set_alias(ml, new, ml.champion_alias, "soak: promote")
    return old, new


def run_soak(settings: Settings, seconds: float, readers: int = 3, writers: int = 2,
             progress: Any = print, warmup: float = 3.0) -> SoakResult:
    """Run the soak on a data directory that holds a finished pipeline run (see the module docstring).

    ``seconds``: the measured run (the update, promotion, kill and roll-back happen at fixed fractions
    of it, each after the one before has finished); ``warmup``: the pause after each warm-up step (the
    service polls the champions every second)."""
    from persona.pipeline import ingest_inbox
    from persona.update import run_update
    from serving.process import free_port, start_service
    from training.registry import set_alias

    key = secrets.token_hex(16)
    result = SoakResult(seconds)
    from features.compute import read_snapshots

    newest = max((settings.data_dir / "features" / "user_behaviour").glob("date=*"))
    users = sorted(read_snapshots(newest, columns=["user_id"])["user_id"].astype(str).unique())[:60]
    before = _purchases_today(settings, users)
    svc = start_service(settings, port=free_port(), workers=2, timeout=180,
                        env={settings.serving.api_key_env: key, "PERSONA_MODEL_POLL_SECONDS": "1",
                             "PERSONA_MODEL_RETRY_SECONDS": "1"})
    load = Load(svc.url, key, users, result)
    threads = [threading.Thread(target=load.reader, daemon=True) for _ in range(readers)]
    threads += [threading.Thread(target=load.writer, args=(f"w{i}",), daemon=True) for i in range(writers)]
    old = None
    try:
        deadline = time.monotonic() + 60
        while len(workers(svc)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        for t in threads:
            t.start()
        # warm-up: every path once (reads, writes, a swap with its re-score, the roll-back) before the
        # memory baseline, so the growth measured is what the run adds, not first use
        time.sleep(warmup)
        old, _ = _promote(settings)
        time.sleep(warmup)
        set_alias(settings.ml, old, settings.ml.champion_alias, "soak: warm-up roll back")
        old = None
        time.sleep(warmup)
        # the survivor is the worker the warm-up used most (the larger one: it ran the swap's re-score, which
        # only one worker claims); the other, maybe never through that path, is the one killed
        survivor, victim = sorted(workers(svc), key=lambda p: p.memory_info().rss, reverse=True)[:2]
        result.rss_start = survivor.memory_info().rss
        started = time.monotonic()

        gap = max(1.0, seconds * 0.1)  # at least this long under load between two changes, and after the last
        last = [started]

        def at(fraction: float) -> None:
            time.sleep(max(0.0, started + seconds * fraction - time.monotonic(), last[0] + gap - time.monotonic()))

        def mark(what: str) -> None:
            last[0] = time.monotonic()
            result.timeline.append(f"{time.monotonic() - started:.0f}s {what}")
            progress(f"  soak {result.timeline[-1]}")

        at(0.1)
        mark("persona update starts")
        summary = run_update(settings)
        mark(f"persona update done ({summary.seconds:.0f}s)")
        at(0.4)
        old, new = _promote(settings)
        mark(f"spend v{new.version} promoted")
        at(0.55)
        os.kill(victim.pid, signal.SIGKILL)
        mark(f"worker {victim.pid} killed")
        at(0.7)
        set_alias(settings.ml, old, settings.ml.champion_alias, "soak: roll back")
        old = None
        mark("spend rolled back")
        at(1.0)
        load.stop.set()
        for t in threads:
            t.join(60)
        mark("load stopped")
        result.rss_end = survivor.memory_info().rss
        time.sleep(1.0)
    finally:
        load.stop.set()
        if old is not None:
            set_alias(settings.ml, old, settings.ml.champion_alias, "soak: roll back")
        svc.stop()
    ingest_inbox(settings)  # the api channel's files, up to the last accepted event
    from ingestion.event_store import read_events

    stored = read_events(settings.data_dir / "events", columns=["event_id"])["event_id"]
    counts = Counter(i for i in stored if i.startswith("api:soak-"))
    result.clean_counts = {i: counts.get(f"api:{i}", 0) for i in result.taken}
    after = _purchases_today(settings, users)
    expected = Counter(result.taken.values())
    result.online_delta = {u: (expected.get(u, 0), after[u] - before[u]) for u in users}
    return result


def main(argv: list[str]) -> None:
    """The long soak (``python -m bench soak``)."""
    from bench._settings import bench_settings
    from persona.pipeline import run_all
    from serving.process import PROJECT_ROOT

    ap = argparse.ArgumentParser(prog="python -m bench soak")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--data", type=Path, default=PROJECT_ROOT / "data" / "bench" / "soak")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    args = ap.parse_args(argv)
    settings = bench_settings(args.data.resolve(), users=args.users, days=args.days)
    settings = settings.model_copy(update={"config_path": PROJECT_ROOT / "persona.yaml"})
    if not (settings.data_dir / "feast" / "online_store.db").exists():
        print(f"building the pipeline's data in {settings.data_dir} (once)")
        run_all(settings)
    result = run_soak(settings, args.seconds)
    print(result.summary())
    problems = result.problems()
    print("soak passed" if not problems else "soak FAILED:\n  " + "\n  ".join(problems))
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
