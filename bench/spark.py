"""The pipeline on the Spark profile in local mode, stage by stage, with per-stage throughput.

Synthetic events (bench/features.py) → the event store; Spark snapshot build; ``feast apply`` with
Spark sources; training set from Feast's Spark offline store (one partition per cutoff, on the
``--sample`` share of users); LightGBM on one node; ``spark.engine`` materialization into the SQLite
online store; batch scoring of every user in pandas UDFs. Each figure is per second of wall time on
``--master`` (default ``local[2]``: this machine's two cores), and per CPU-second, the unit the
README's scale-out plan multiplies. After the pipeline, one more day of events arrives and the
incremental snapshot build runs (the daily update: it reads the 91 days its windows reach back to).

Each stage also prints its peak resident memory (this process and every process below it: the Spark
JVM and its Python workers), its CPU seconds (user + system over the same tree: the figure a shared
machine does not distort) and the load average when it ended.

Usage: python -m bench spark [--users 50000] [--days 90] [--rate 0.3] [--sample 0.2] [--master local[2]]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from pathlib import Path


class TreeMonitor:
    """Polls (every 0.2 s) the resident memory of this process and its descendants (the JVM and its
    Python workers included) and each one's CPU seconds; :meth:`lap` returns a stage's peak and CPU."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._cpu_at = 0.0

    def _poll(self) -> None:
        import psutil

        me = psutil.Process(os.getpid())
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                with p.oneshot():
                    total += p.memory_info().rss
                    times = p.cpu_times()
                    self.cpu[p.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()

    def lap(self) -> tuple[int, float]:
        """(peak resident bytes, CPU seconds) since the last lap."""
        self._poll()
        peak, self.peak = self.peak, 0
        cpu = sum(self.cpu.values())
        used, self._cpu_at = cpu - self._cpu_at, cpu
        return peak, used

    def stop(self) -> None:
        """End the polling thread."""
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> None:
    """Run the Spark-profile pipeline once and print the per-stage figures."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from base.config import load_segment_file
    from base.paths import DataPaths
    from bench._settings import PROJECT, bench_settings
    from bench.features import synthetic_events
    from features.spark_session import spark_session, stop_spark
    from features.spark_store import (
        apply_spark_definitions,
        materialize_spark,
        open_spark_store,
    )
    from ingestion.event_store import write_batch
    from persona.pipeline import build_features, load_clean_events, sampled_fit_rows
    from scoring.spark_batch import newest_snapshots_spark, score_spark
    from training.champions import LoadedModel
    from training.labels import make_labels, rolling_cutoffs
    from training.registry import ModelRef
    from training.spark_dataset import build_training_set_spark

    ap = argparse.ArgumentParser(prog="python -m bench spark")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--rate", type=float, default=0.3, help="events per user per day")
    ap.add_argument("--sample", type=float, default=0.2,
                    help="training.sample_share: share of users at the fit cutoffs (the evaluation cutoff keeps everyone)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="4g")
    args = ap.parse_args(argv)
    cores = int(m.group(1)) if (m := re.fullmatch(r"local\[(\d+)\]", args.master)) else 1
    rows: list[tuple[str, float, int, str]] = []
    monitor = TreeMonitor()
    cpu_total = 0.0

    def stage(name: str, seconds: float, count: int, unit: str) -> None:
        nonlocal cpu_total
        peak, cpu = monitor.lap()
        cpu_total += cpu
        rows.append((name, seconds, count, unit))
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"  {name:38s} {seconds:8.1f} s  {count:>12,} {unit:9s} {count / seconds:>11,.0f}/s "
              f"{count / max(cpu, 1e-9):>10,.0f}/cpu-s  cpu {cpu:8.1f} s  peak {peak / 2**30:5.2f} GB  "
              f"load {load}", flush=True)

    monitor.lap()
    with tempfile.TemporaryDirectory(prefix="persona-bench-spark-") as tmp:
        base = bench_settings(Path(tmp) / "data")
        spark_cfg = base.spark.model_copy(update={"master": args.master, "driver_memory": args.driver_memory,
                                                  "shuffle_partitions": max(4, 2 * cores)})
        training = base.training.model_copy(update={"sample_share": args.sample})
        s = base.model_copy(update={"engine": "spark", "spark": spark_cfg, "training": training})
        paths = DataPaths(s.data_dir)
        print(f"Spark profile, {args.master}: {args.users:,} users x {args.days} days at {args.rate}/user/day")
        t = time.perf_counter()
        history = synthetic_events(args.users, args.days, args.rate)
        write_batch(history, paths.events, "history")
        n_events = len(history)
        del history
        stage("events → event store (pandas)", time.perf_counter() - t, n_events, "events")

        t = time.perf_counter()
        spark_session(s.spark)
        stage("JVM + Spark session start", time.perf_counter() - t, 1, "session")
        t = time.perf_counter()
        built = build_features(s, incremental=False)
        stage("snapshot build (Spark SQL)", time.perf_counter() - t, n_events, "events")
        print(f"    {built.rows:,} snapshot rows for {built.users:,} users")

        t = time.perf_counter()
        store = open_spark_store(s, project="bench_spark")
        apply_spark_definitions(s, store)
        stage("feast apply (Spark sources)", time.perf_counter() - t, 1, "apply")

        t = time.perf_counter()
        events = load_clean_events(s)
        end = events["timestamp"].max().floor("D") + pd.Timedelta(days=1)
        split = rolling_cutoffs(end, events["timestamp"].min(), s.training)
        labels = make_labels(events, split.all, s.training.horizon_days, s.features.categories)
        labels = sampled_fit_rows(labels, split.evaluation, s.training.sample_share)  # as `persona train`
        del events
        stage("labels (pandas, driver)", time.perf_counter() - t, len(labels), "rows")
        t = time.perf_counter()
        frame = build_training_set_spark(s, store, labels)
        stage(f"training set (Spark store, {args.sample:.0%} users)", time.perf_counter() - t, len(frame), "rows")

        t = time.perf_counter()
        features = ["spend_90d", "purchases_90d", "aov_90d", "product_views_30d", "events_30d",  # + what segments read
                    "days_since_last_event", "active_days_30d", *[f"affinity_{c}" for c in s.features.categories]]
        x = frame[features].to_numpy(dtype=float)
        params = {"verbosity": -1, "num_threads": 1, "learning_rate": 0.1, "num_leaves": 31}
        spend = lgb.train({**params, "objective": "tweedie"}, lgb.Dataset(x, frame["label_spend"]), 100)
        churn = lgb.train({**params, "objective": "binary"}, lgb.Dataset(x, frame["label_churn"]), 100)
        s = s.model_copy(update={"segments": load_segment_file(PROJECT / "segments.classic.yaml")})  # reads these
        models = {"spend": LoadedModel("spend", ModelRef("persona-spend", "1", "b"), spend, features,
                                       float(frame["label_spend"].mean())),
                  "churn": LoadedModel("churn", ModelRef("persona-churn", "1", "b"), churn, features,
                                       float(frame["label_churn"].mean()))}
        stage("train 2 models (LightGBM, 1 node)", time.perf_counter() - t, len(frame), "rows")

        t = time.perf_counter()
        users = materialize_spark(s, store)
        stage("materialize (spark.engine → SQLite)", time.perf_counter() - t, users, "users")

        t = time.perf_counter()
        spark = spark_session(s.spark)
        scored = score_spark(spark, s, models, newest_snapshots_spark(spark, s), pd.DataFrame()).toPandas()
        stage("batch score (pandas UDF)", time.perf_counter() - t, len(scored), "users")
        print(f"    segments: {dict(scored['segment'].value_counts().head(4))}")

        t = time.perf_counter()
        day = synthetic_events(args.users, 1, args.rate, seed=2, day_offset=args.days)
        write_batch(day, paths.events, "next-day")
        daily = build_features(s)
        stage("daily update: snapshot build (+1 day)", time.perf_counter() - t, len(day), "events")
        print(f"    {daily.rows:,} snapshot rows rewritten for {daily.users:,} users from {daily.recomputed_from}")
        stop_spark()
        total = sum(r[1] for r in rows)
        monitor.stop()
        print(f"  {'total':38s} {total:8.1f} s, {cpu_total:,.0f} CPU-seconds; events per CPU-second end to end: "
              f"{n_events / max(cpu_total, 1e-9):,.0f}; snapshot rows/user: {built.rows / max(built.users, 1):.1f}")
        print(f"  (one run; {np.round(n_events / 1e6, 2)} M events; load average while running matters "
              "on a shared machine)")


if __name__ == "__main__":
    main()
