"""The whole pipeline at scale, stage by stage: wall time, throughput and peak memory of each.

sample (persona/sample_scale.py: users drawn and written in parts, every channel with its mess) →
ingest (``persona ingest``: read, canonicalise, GX gate, identity stitching, event store) → feature
build (full) → ``feast apply`` → materialize (newest snapshot of every user online) → training set +
train (``persona train``: every target, registered in MLflow) → batch re-score of every user with the
champions (``scoring/batch.py``, or its Spark twin). Everything runs in a temporary data directory
through the project's own functions, each stage in its own child process (``python -m bench scale
--stage NAME``), so the peak memory printed for a stage is that stage's alone: the resident set of
the child and its children (a Spark JVM included), polled by the parent every 0.2 s.

``--profile spark`` runs the same stages with ``PERSONA_ENGINE=spark`` in local mode (``--master``).

Usage: python -m bench scale [--users 20000] [--days 90] [--rate 0.3] [--profile default|spark]
       [--part-users 50000] [--training-share 1.0] [--master local[2]] [--keep DIR [--stages train,score]]
Goal (issue 18): --users 1000000 --days 90 --rate 0.3 under 20 minutes and 12 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
STAGES = ("sample", "ingest", "features", "apply", "materialize", "train", "score")
TRAINING_SET_STEP = "training set"
"""The step of ``persona train`` (persona/pipeline.py) whose time is shown as its own row."""


class StepClock:
    """A stand-in for ``rich.progress.Progress`` that records when each pipeline step starts and ends
    and prints a progress line for both (base/progress.py calls ``add_task``, ``advance``, ``update``)."""

    class _Task:
        def __init__(self, total: int | None) -> None:
            self.total = total

    def __init__(self) -> None:
        self.tasks: list[StepClock._Task] = []
        self.names: list[str] = []
        self.started: list[float] = []
        self.seconds: dict[str, float] = {}

    def add_task(self, description: str, total: int | None = None) -> int:
        """A step starts."""
        self.tasks.append(self._Task(total))
        self.names.append(description)
        self.started.append(time.perf_counter())
        print(f"      · {description} …", flush=True)
        return len(self.tasks) - 1

    def advance(self, task: int, n: int = 1) -> None:
        """Nothing to show between a step's start and end."""

    def update(self, task: int, **_: Any) -> None:
        """A step ends (``step`` updates a task only when it finishes)."""
        took = time.perf_counter() - self.started[task]
        self.seconds[self.names[task]] = self.seconds.get(self.names[task], 0.0) + took
        print(f"      · {self.names[task]}: {took:.1f} s", flush=True)


def _settings(args: argparse.Namespace) -> Any:
    """The project's settings on the benchmark's data directory and engine."""
    from bench._settings import bench_settings

    s = bench_settings(Path(args.data_dir))
    if args.training_share < 1:
        s = s.model_copy(update={"training": s.training.model_copy(update={"sample_share": args.training_share})})
    if args.profile != "spark":
        return s
    spark = s.spark.model_copy(update={"master": args.master, "driver_memory": args.driver_memory})
    return s.model_copy(update={"engine": "spark", "spark": spark})


def _user_days(s: Any) -> int:
    """User-days with at least one clean event (identities resolved), the sparse builder's floor; the
    event store read part by part as Arrow (two columns), distinct pairs kept per part."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from base.paths import DataPaths
    from ingestion.event_store import iter_resolved

    paths = DataPaths(s.data_dir)
    pairs = []
    for table in iter_resolved(paths.events, paths.identity_graph, ["timestamp"]):
        day = pc.cast(pc.floor_temporal(table["timestamp"], unit="day"), pa.int64())
        pairs.append(pa.table({"u": table["user_id"], "d": day}).group_by(["u", "d"]).aggregate([]))
    if not pairs:
        return 0
    return pa.concat_tables(pairs).group_by(["u", "d"]).aggregate([]).num_rows


def run_stage(args: argparse.Namespace) -> dict[str, Any]:
    """Run one stage in this process; returns what it counted."""
    s = _settings(args)
    clock = StepClock()
    if args.stage == "sample":
        from persona.sample_scale import generate_scaled_sample

        def said(done: int, total: int, events: int) -> None:
            print(f"      · {done:,}/{total:,} users, {events:,} events", flush=True)

        r = generate_scaled_sample(s, args.users, args.days, args.rate, args.part_users, progress=said)
        return {"count": r.events, "unit": "events", "rows_written": r.rows_written,
                "files": sum(len(v) for v in r.files.values())}
    if args.stage == "ingest":
        from persona.pipeline import ingest_inbox

        r = ingest_inbox(s, clock)
        return {"count": r.total("rows_read"), "unit": "rows", "accepted": r.total("accepted"),
                "quarantined": r.total("quarantined"), "duplicates": r.total("duplicates"),
                "batches": len(r.batches), "timings": r.timings}
    if args.stage == "features":
        from persona.pipeline import build_features

        r = build_features(s, clock, incremental=False)
        return {"count": r.rows, "unit": "snapshots", "users": r.users}
    if args.stage == "userdays":
        return {"count": _user_days(s), "unit": "user-days"}
    if args.stage == "apply":
        from persona.pipeline import register_features

        return {"count": len(register_features(s)), "unit": "objects"}
    if args.stage == "materialize":
        from persona.pipeline import materialize

        return {"count": materialize(s, progress=clock), "unit": "users"}
    if args.stage == "train":
        from persona.pipeline import train

        r = train(s, progress=clock)
        rows = r.models[0].rows_train + r.models[0].rows_eval
        return {"count": rows, "unit": "rows", "models": len(r.models),
                "training_set_s": sum(v for k, v in clock.seconds.items() if k.startswith(TRAINING_SET_STEP))}
    if args.stage == "score":
        from scoring.batch import rescore_all
        from training.champions import load_champions

        t = time.perf_counter()
        models = load_champions(s.ml)
        load_s = time.perf_counter() - t
        print(f"      · champions loaded from the registry: {load_s:.1f} s", flush=True)
        t = time.perf_counter()
        if s.engine == "spark":
            from scoring.spark_batch import rescore_all_spark

            r = rescore_all_spark(s, models)
        else:
            r = rescore_all(s, models)
        print(f"      · re-score + history append: {time.perf_counter() - t:.1f} s", flush=True)
        return {"count": r.users, "unit": "users", "changed": r.changed, "load_champions_s": load_s,
                "rescore_s": time.perf_counter() - t}
    raise SystemExit(f"unknown stage {args.stage!r}")


def _tree_usage(pid: int, cpu: dict[int, float]) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone); records each one's CPU
    seconds so far (user + system) in ``cpu`` by pid."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            with p.oneshot():
                total += p.memory_info().rss
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def child(args: argparse.Namespace, stage: str, out: Path) -> tuple[float, int, dict[str, Any]]:
    """Run ``stage`` in a child process; returns (wall seconds, peak tree RSS in bytes, its counts with
    ``cpu_s``: the CPU seconds of the child and its descendants, the figure a shared machine does not
    distort and a cluster plan multiplies)."""
    import resource
    cmd = [sys.executable, "-m", "bench", "scale", "--stage", stage, "--result", str(out), *args.passthrough]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.profile == "spark":
        env.setdefault("PYSPARK_PYTHON", sys.executable)
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env)
    peak = 0
    cpu: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_usage(proc.pid, cpu))
            done.wait(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    code = proc.wait()
    done.set()
    watcher.join()
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"stage {stage} failed (exit {code}) after {seconds:.0f} s")
    waited = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, peak, {**json.loads(out.read_text()), "cpu_s": max(waited, sum(cpu.values()))}


def _load() -> str:
    """The 1/5/15-minute load averages."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _row(name: str, seconds: float, peak: int, count: int, unit: str, load: str, cpu: float | None = None) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    used = f"  cpu {cpu:7.1f} s" if cpu is not None else ""
    return (f"  {name:13s} {seconds:8.1f} s  {count:>12,} {unit:10s} {rate:>10,.0f}/s  "
            f"peak {peak / 2**30:5.2f} GB{used}  load {load}")


def orchestrate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every stage in order in a temporary (or kept) data directory; prints the table."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="persona-bench-scale-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = root / "data"
        args.passthrough = ["--data-dir", str(data), "--users", str(args.users), "--days", str(args.days),
                            "--rate", str(args.rate), "--profile", args.profile, "--part-users", str(args.part_users),
                            "--master", args.master, "--driver-memory", args.driver_memory,
                            "--training-share", str(args.training_share)]
        print(f"scale bench, {args.profile} profile: {args.users:,} users x {args.days} days at "
              f"{args.rate}/user/day in {data} (load {_load()}, {os.cpu_count()} cores)", flush=True)
        stages = [*STAGES[:3], "userdays", *STAGES[3:]]
        if args.stages:  # again on a kept folder: only these, in the pipeline's order
            wanted = [x.strip() for x in args.stages.split(",") if x.strip()]
            unknown = sorted(set(wanted) - set(stages))
            if unknown or not args.keep:
                raise SystemExit(f"--stages needs --keep and names from {stages} (unknown: {unknown})")
            stages = [x for x in stages if x in wanted]
        for stage in stages:
            print(f"  [{time.strftime('%H:%M:%S')}] {stage} …", flush=True)
            seconds, peak, got = child(args, stage, root / f"{stage}.json")
            load = _load()
            if stage == "train":  # the training-set step of `persona train` gets its own row
                ts = got.get("training_set_s", 0.0)
                rows.append({"stage": "training set", "seconds": ts, "peak": peak, "count": got["count"],
                             "unit": "rows", "load": load, "part_of": "train"})
                rows.append({"stage": "train", "seconds": seconds - ts, "peak": peak, "count": got["count"],
                             "unit": "rows", "load": load, "extra": got, "cpu": got["cpu_s"]})
            else:
                rows.append({"stage": stage, "seconds": seconds, "peak": peak, "count": got["count"],
                             "unit": got["unit"], "load": load, "extra": got, "cpu": got["cpu_s"]})
            for r in rows[-2:] if stage == "train" else rows[-1:]:
                print(_row(r["stage"], r["seconds"], r["peak"], r["count"], r["unit"], r["load"], r.get("cpu")),
                      flush=True)
        if not args.stages:
            summary(args, rows)
    return rows


def summary(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The table at the end: per stage, then the totals against the goal."""
    timed = [r for r in rows if r["stage"] != "userdays"]
    total = sum(r["seconds"] for r in timed)
    peak = max(r["peak"] for r in timed)
    by = {r["stage"]: r for r in rows}
    events = by["sample"]["count"]
    snaps, user_days = by["features"]["count"], by["userdays"]["count"]
    print(f"\n  {args.profile} profile, {args.users:,} users x {args.days} days, {events:,} events")
    print(f"  {'stage':13s} {'wall s':>8s}  {'count':>14s} {'per s':>12s}  {'peak GB':>8s}  {'cpu s':>9s}  load 1/5/15")
    for r in timed:
        print(_row(r["stage"], r["seconds"], r["peak"], r["count"], r["unit"], r["load"], r.get("cpu")))
    cpu = sum(r.get("cpu") or 0.0 for r in timed)
    print(f"  {'total':13s} {total:8.1f} s  ({total / 60:.1f} min; goal 20 min at 1M users)   "
          f"peak {peak / 2**30:.2f} GB (goal 12 GB)   end-to-end {events / total:,.0f} events/s; "
          f"{cpu:,.0f} CPU-seconds ({events / max(cpu, 1e-9):,.0f} events per CPU-second)")
    print(f"  snapshot rows {snaps:,} for {user_days:,} user-days with an event: "
          f"{snaps / max(user_days, 1):.2f} x (goal <= 4 x)")
    ingest = by["ingest"]["extra"]
    print(f"  ingest: {ingest['accepted']:,} accepted, {ingest['quarantined']:,} quarantined, "
          f"{ingest['duplicates']:,} duplicates in {ingest['batches']} batches; timings {ingest['timings']}")


def main(argv: list[str] | None = None) -> None:
    """Run the scale benchmark (or, with ``--stage``, one of its stages in this process)."""
    ap = argparse.ArgumentParser(prog="python -m bench scale")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--rate", type=float, default=0.3, help="clean events per user per day")
    ap.add_argument("--profile", choices=("default", "spark"), default="default")
    ap.add_argument("--part-users", type=int, default=50_000, help="users drawn and written at a time")
    ap.add_argument("--master", default="local[2]", help="spark.master (spark profile)")
    ap.add_argument("--driver-memory", default="4g", help="spark.driver.memory (spark profile)")
    ap.add_argument("--training-share", type=float, default=1.0,
                    help="training.sample_share: share of users at the fit cutoffs, every engine (evaluation keeps everyone)")
    ap.add_argument("--keep", default="", help="write into this folder and keep it (default: a temp dir)")
    ap.add_argument("--stages", default="",
                    help="with --keep: run only these stages (comma-separated) again on the kept folder")
    ap.add_argument("--stage", default="", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        got = run_stage(args)
        Path(args.result).write_text(json.dumps(got, default=str))
        return
    orchestrate(args)


if __name__ == "__main__":
    main()
