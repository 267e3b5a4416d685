"""The Spark builder's incremental build: it reads only the event partitions its windows reach back to,
carries the older history from the stored rows, and ends with the table a full default build gives."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from base.config import Settings
from base.paths import DataPaths
from bench.features import T0, synthetic_events
from features.compute import compute_snapshots, read_snapshots
from features.incremental import WINDOW_DAYS
from features.spark_snapshots import SparkBuild
from ingestion.event_store import write_batch
from persona.pipeline import load_clean_events
from tests.conftest import settings_in
from tests.spark.conftest import LOCAL
from tests.spark.test_spark_profile import assert_cells_equal

DAYS, CUT = 130, 120
"""History length and the day the second batch of events starts (longer than the 90-day windows)."""


@pytest.fixture(scope="module")
def incremental(tmp_path_factory: pytest.TempPathFactory, spark: object) -> tuple[Settings, SparkBuild, SparkBuild]:
    """A full Spark build of the first ``CUT`` days, then an incremental one after the rest arrived."""
    from features.spark_snapshots import build_features_spark

    s = settings_in(Path(tmp_path_factory.mktemp("spark-incr")) / "data")
    s = s.model_copy(update={"spark": LOCAL, "engine": "spark"})
    events = synthetic_events(80, DAYS, 0.4, seed=7)
    # sessions of a day (the generator's run over the whole history; a session is counted on its first
    # day, so one longer than the 60 days between the windows' reach and the 30-day window would differ)
    events["session_id"] = events["user_id"] + events["timestamp"].dt.strftime("-%Y%m%d")
    # whole minutes: session lengths are then exact in binary, so the windows' sums of them are the same
    # numbers whether they start at the first event or at the reach (a sum of fractions of a minute can
    # differ in its last bit, and a 2-decimal average at a rounding tie by 0.01: the default builder's
    # incremental build has that property too)
    events["timestamp"] = events["timestamp"].dt.floor("min")
    cut = T0.floor("D") + pd.Timedelta(days=CUT)
    root = DataPaths(s.data_dir).events
    write_batch(events.loc[events["timestamp"] < cut].reset_index(drop=True), root, "first")
    full, start = build_features_spark(s)
    assert start is None and full.events_from is None
    write_batch(events.loc[events["timestamp"] >= cut].reset_index(drop=True), root, "second")
    incr, start = build_features_spark(s)
    assert start == cut + pd.Timedelta(days=1)  # the first snapshot that sees the new day
    return s, full, incr


def test_incremental_reads_only_the_windows_reach(incremental: tuple[Settings, SparkBuild, SparkBuild],
                                                  spark: object) -> None:
    from features.spark_snapshots import read_events

    s, _, incr = incremental
    since = T0.floor("D") + pd.Timedelta(days=CUT + 1 - WINDOW_DAYS - 1)
    assert incr.events_from == since
    files = read_events(spark, s, since).inputFiles()
    days = sorted({f.split("date=")[1][:10] for f in files})
    every = sorted(p.name[5:] for p in DataPaths(s.data_dir).events.glob("date=*"))
    assert days == [d for d in every if d >= f"{since:%Y-%m-%d}"] and len(days) < len(every) - 20


def test_incremental_equals_a_full_default_build(incremental: tuple[Settings, SparkBuild, SparkBuild]) -> None:
    s, full, incr = incremental
    expected = compute_snapshots(load_clean_events(s), s.features)
    got = read_snapshots(DataPaths(s.data_dir).behaviour_snapshots)
    assert incr.first == T0.floor("D") + pd.Timedelta(days=CUT + 1) and 0 < incr.rows < full.rows
    assert_cells_equal(expected, got)  # every row, the rebuilt ones and the ones kept
    rebuilt = expected.loc[expected["event_timestamp"] >= incr.first]
    assert len(rebuilt) == incr.rows and (rebuilt["lifetime_purchases"] > rebuilt["purchases_90d"]).sum() > 10
