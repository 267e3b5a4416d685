"""Cost of ``persona update`` for one new day as a ratio to a full rebuild, in one run, in a temporary
folder (never ./data).

1. full rebuild on the sample history (120 days, 5,000 users by default): ingest → features →
   feast apply → materialize → train (``run_all`` without generating the sample);
2. the first update (scores every user into the history; not part of the ratio);
3. one more day of events written into the inbox, then the timed update (ingest, features,
   online store, drift, re-score, personas online; retraining is not due after one normal day).

``python -m bench update [users] [days]`` (both sides are measured in the same run).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench._settings import bench_settings


def run(users: int = 5000, days: int = 120) -> dict[str, float]:
    """Measure; returns the figures (seconds and the ratios)."""
    from persona.pipeline import ensure_sample, run_all
    from persona.sample_data import next_replay_offset, replay_day
    from persona.update import record_first_build, run_update

    with tempfile.TemporaryDirectory(prefix="persona-bench-update-") as tmp:
        s = bench_settings(Path(tmp) / "data", users=users, days=days)
        ensure_sample(s)
        t0 = time.perf_counter()
        rebuild = run_all(s)
        full = time.perf_counter() - t0
        record_first_build(s)
        first = run_update(s)
        replay_day(s, next_replay_offset(s))
        t0 = time.perf_counter()
        update = run_update(s)
        one_day = time.perf_counter() - t0
    train = rebuild.timings.get("train", 0.0)
    figures = {"rebuild_s": full, "rebuild_without_training_s": full - train, "first_update_s": first.seconds,
               "update_one_day_s": one_day, "ratio": one_day / full,
               "ratio_data_path": (one_day - update.timings.get("train", 0.0)) / (full - train)}
    print(f"users={users} days={days}")
    print(f"full rebuild (ingest, features, apply, materialize, train): {full:.1f}s  stages {rebuild.timings}")
    print(f"first update (everyone scored into the history):           {first.seconds:.1f}s")
    print(f"update for one new day:                                     {one_day:.1f}s  steps {update.timings}")
    print(f"  {update.events_in} events in, {update.personas_changed} personas changed, "
          f"train: {update.steps.get('train')}")
    print(f"ratio update / full rebuild:                         {figures['ratio']:.3f}  (aim <= 0.2)")
    print(f"ratio without training on either side (data path):   {figures['ratio_data_path']:.3f}")
    return figures


def main(argv: list[str]) -> None:
    """``python -m bench update [users] [days]``."""
    users = int(argv[0]) if argv else 5000
    days = int(argv[1]) if len(argv) > 1 else 120
    run(users, days)


if __name__ == "__main__":
    main(sys.argv[1:])
