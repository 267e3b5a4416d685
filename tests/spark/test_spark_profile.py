"""The Spark profile in local mode against the default engine on the same events: the snapshot build
cell for cell, Feast's Spark retrieval, ``spark.engine`` materialization and the batch scores."""

from __future__ import annotations

import sqlite3
import uuid

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from base.config import Settings
from base.paths import DataPaths
from features.compute import compute_snapshots, newest_rows, read_snapshots
from features.time_features import time_features
from persona.pipeline import build_features, load_clean_events, training_events
from training.champions import LoadedModel
from training.labels import make_labels
from training.registry import ModelRef

KEY = ["user_id", "event_timestamp"]


def assert_cells_equal(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    """Same columns, rows, integer cells exactly, float cells to 1e-12 (relative), nulls in the same cells."""
    assert list(got.columns) == list(expected.columns)
    expected = expected.sort_values(KEY).reset_index(drop=True)
    got = got.sort_values(KEY).reset_index(drop=True)
    assert len(got) == len(expected)
    assert (got["user_id"].astype(str).to_numpy() == expected["user_id"].astype(str).to_numpy()).all()
    for col in expected.columns.drop("user_id"):
        a, b = expected[col], got[col]
        if pd.api.types.is_datetime64_any_dtype(a):
            assert (pd.to_datetime(b, utc=True).to_numpy() == pd.to_datetime(a, utc=True).to_numpy()).all(), col
        elif pd.api.types.is_integer_dtype(a):
            assert pd.api.types.is_integer_dtype(b) and (a.to_numpy() == b.to_numpy()).all(), col
        else:
            a, b = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            assert (np.isnan(a) == np.isnan(b)).all(), col
            assert np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True), col


@pytest.fixture(scope="module")
def reference(spark_settings: Settings) -> pd.DataFrame:
    """The default builder's snapshots of the sample."""
    return read_snapshots(DataPaths(spark_settings.data_dir).behaviour_snapshots)


@pytest.fixture(scope="module")
def spark_built(spark_settings: Settings, spark: object, reference: pd.DataFrame) -> Settings:
    """The sample's snapshots rebuilt by the Spark builder through the pipeline (PERSONA_ENGINE=spark)."""
    summary = build_features(spark_settings, incremental=False)
    assert summary.rows == len(reference) and summary.users == reference["user_id"].nunique()
    return spark_settings


def test_spark_builder_equals_the_default_builder(spark_built: Settings, reference: pd.DataFrame) -> None:
    got = read_snapshots(DataPaths(spark_built.data_dir).behaviour_snapshots)
    assert got["event_timestamp"].dtype == pd.DatetimeTZDtype("us", "UTC")  # microseconds, zone kept
    assert_cells_equal(reference, got)
    assert (reference["purchases_90d"] > 0).sum() > 100 and reference["avg_session_minutes_30d"].notna().any()


def test_spark_builder_from_a_day_and_every_other_day(spark_built: Settings, spark: object) -> None:
    from features.spark_snapshots import compute_snapshots_spark, read_events

    cfg = spark_built.features.model_copy(update={"snapshot_every_days": 3})
    events = load_clean_events(spark_built)
    start = events["timestamp"].min().floor("D") + pd.Timedelta(days=40)
    expected = compute_snapshots(events, cfg, first_snapshot=start)
    got = compute_snapshots_spark(read_events(spark, spark_built), cfg, first_snapshot=start).toPandas()
    assert len(expected) > 0 and expected["event_timestamp"].min() >= start
    assert_cells_equal(expected, got)


@pytest.fixture(scope="module")
def labels(spark_built: Settings) -> pd.DataFrame:
    """Label rows at two cutoffs, one between two snapshots, and rows before any snapshot."""
    events = training_events(spark_built)
    first = events["timestamp"].min().floor("D")
    cutoffs = [first + pd.Timedelta(days=44), first + pd.Timedelta(days=37, hours=13)]
    rows = make_labels(events, cutoffs, 14)
    early = rows.head(5).assign(event_timestamp=first - pd.Timedelta(days=3))
    return pd.concat([rows, early], ignore_index=True)


def test_spark_retrieval_equals_the_default_store(spark_built: Settings, labels: pd.DataFrame) -> None:
    from features.spark_store import apply_spark_definitions, open_spark_store
    from features.store import apply_definitions, open_store
    from training.dataset import build_training_set
    from training.spark_dataset import build_training_set_spark

    default = open_store(spark_built, project="spark_test_default")
    apply_definitions(spark_built, default)
    expected = build_training_set(default, labels, spark_built.data_dir)
    store = open_spark_store(spark_built, project="spark_test_spark")
    apply_spark_definitions(spark_built, store)
    got = build_training_set_spark(spark_built, store, labels)
    assert len(got) == len(labels) == len(expected)  # every entity row comes back from both engines
    assert got["event_timestamp"].dt.tz is not None
    first = pd.Timestamp(min(DataPaths(spark_built.data_dir).behaviour_snapshots.glob("date=*")).name[5:],
                         tz="UTC")
    features = [c for c in expected.columns if c not in labels.columns]
    for frame in (got, expected):  # before any snapshot: the rows come back with null features
        early = frame.loc[frame["event_timestamp"] < first]
        assert len(early) == 5 and early[features].isna().all().all()
    expected = expected.sort_values(KEY).reset_index(drop=True)
    got = got.sort_values(KEY).reset_index(drop=True)[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)  # every row, cell for cell
    assert got["purchases_90d"].notna().sum() > 100 and got["btyd_monetary"].gt(0).sum() > 20


def test_training_sample_keeps_the_same_users_at_every_cutoff(labels: pd.DataFrame) -> None:
    from training.user_sample import sampled

    half = sampled(labels, 0.5)
    assert 0.3 * len(labels) < len(half) < 0.7 * len(labels)
    users = [set(g["user_id"]) for _, g in half.groupby("event_timestamp") if len(g) > 20]
    every = [set(g["user_id"]) for _, g in labels.groupby("event_timestamp") if len(g) > 20]
    for mine, all_ in zip(users, every):
        assert mine == {u for u in all_ if u in set(half["user_id"])}
    assert sampled(labels, 0.5).equals(half)


SLOW_INSERT = """CREATE TRIGGER slow_insert AFTER INSERT ON "{table}" BEGIN
    SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
                          SELECT x FROM c);
END"""
"""A few milliseconds of SQLite work per inserted row: a partition's write transaction then outlasts
the 5 s busy timeout of Feast's SQLite connections, as at 50,000 users."""


def test_spark_engine_materializes_every_feature_of_every_user(spark_built: Settings) -> None:
    """Into SQLite with writes as slow as at scale: each Spark partition used to write from its own worker
    and connection, and the second writer gave up after SQLite's 5 s busy timeout ("database is locked")."""
    from features.spark_store import (
        apply_spark_definitions,
        materialize_spark,
        open_spark_store,
    )

    project = "spark_test_mat"
    store = open_spark_store(spark_built, project=project)
    apply_spark_definitions(spark_built, store)
    db_path = DataPaths(spark_built.data_dir).feast / "online_store.db"
    with sqlite3.connect(db_path) as db:
        db.execute(SLOW_INSERT.format(table=f"{project}_user_behaviour"))
    assert spark_built.spark.shuffle_partitions > 1  # the snapshot table comes in several partitions
    try:
        users = materialize_spark(spark_built, store)
    finally:
        with sqlite3.connect(db_path) as db:
            db.execute("DROP TRIGGER IF EXISTS slow_insert")
    latest = newest_rows(DataPaths(spark_built.data_dir).behaviour_snapshots).set_index("user_id")
    newest = max(DataPaths(spark_built.data_dir).behaviour_snapshots.glob("date=*"))
    # sparse: every user's newest row goes online, not only the users of the newest partition
    assert users == len(latest) > read_snapshots(newest)["user_id"].nunique() and users > 50
    with sqlite3.connect(db_path) as db:
        for name in ("user_behaviour", "user_lifetime"):  # both views over the snapshots, as the default engine
            rows = db.execute(f"SELECT COUNT(*), COUNT(DISTINCT entity_key) FROM {project}_{name}").fetchone()
            assert rows == (users * len(store.get_feature_view(name).features), users), name
    some = list(latest.index[:3])
    online = store.get_online_features(
        features=["user_behaviour:spend_90d", "user_behaviour:events_30d", "user_lifetime:lifetime_spend"],
        entity_rows=[{"user_id": u} for u in some]).to_dict()
    assert online["spend_90d"] == pytest.approx(list(latest.loc[some, "spend_90d"]))
    assert online["events_30d"] == list(latest.loc[some, "events_30d"])
    assert online["lifetime_spend"] == pytest.approx(list(latest.loc[some, "lifetime_spend"]))


@pytest.fixture(scope="module")
def models(reference: pd.DataFrame) -> dict[str, LoadedModel]:
    """Small real boosters trained on the sample's snapshots."""
    features = ["spend_90d", "purchases_90d", "aov_90d", "product_views_30d", "events_30d", "days_since_last_event",
                "affinity_home"]  # every feature segments.classic.yaml reads, and a few more
    at = (reference["event_timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    reference = pd.concat([reference, time_features(reference, at)], axis=1)  # recency as of each row
    x = reference[features].to_numpy(dtype=float)
    params = {"verbosity": -1, "num_threads": 1, "min_data_in_leaf": 20}
    spend = lgb.train({**params, "objective": "tweedie"}, lgb.Dataset(x, reference["spend_30d"], feature_name=features), 15)
    churn = lgb.train({**params, "objective": "binary"},
                      lgb.Dataset(x, (reference["events_7d"] == 0).astype(float), feature_name=features), 15)
    return {"spend": LoadedModel("spend", ModelRef("persona-spend", "4", "r1"), spend, features, 12.0),
            "churn": LoadedModel("churn", ModelRef("persona-churn", "2", "r2"), churn, features, 0.4)}


def test_spark_batch_scores_equal_the_scorers(spark_built: Settings, spark: object,
                                              models: dict[str, LoadedModel]) -> None:
    from scoring.batch import newest_snapshots, score_personas
    from scoring.spark_batch import newest_snapshots_spark, score_spark

    from base.config import load_segment_file
    from tests.conftest import PROJECT

    settings = spark_built.model_copy(update={"segments": load_segment_file(PROJECT / "segments.classic.yaml")})
    snaps = newest_snapshots(settings)
    previous = snaps[["user_id"]].iloc[::2].assign(predicted_spend=30.0, churn_risk=0.5)  # half have a persona
    now = pd.Timestamp("2026-12-01 12:00", tz="UTC")
    expected = score_personas(settings, models, snaps, previous, now)
    got = score_spark(spark, settings, models, newest_snapshots_spark(spark, settings), previous, now).toPandas()
    got = got.assign(feature_timestamp=got["feature_timestamp"].dt.tz_localize("UTC"),
                     scored_at=got["scored_at"].dt.tz_localize("UTC"))
    expected = expected.assign(feature_timestamp=pd.to_datetime(expected["feature_timestamp"], utc=True))
    got = got.sort_values("user_id").reset_index(drop=True)
    expected = expected.sort_values("user_id").reset_index(drop=True)
    assert len(got) == len(snaps) > 50 and expected["segment"].nunique() > 1
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)


def test_spark_engine_materializes_into_redis(spark_built: Settings) -> None:
    """The production profile's online store (Redis at 127.0.0.1:6379, registry on PostgreSQL) under a
    project of its own, removed afterwards."""
    import redis

    from features.spark_store import (
        apply_spark_definitions,
        materialize_spark,
        open_spark_store,
    )

    settings = spark_built.model_copy(update={"profile": "production"})
    project = f"persona_spark_{uuid.uuid4().hex[:8]}"
    store = open_spark_store(settings, project=project)
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        apply_spark_definitions(settings, store)
        users = materialize_spark(settings, store)
        keys = [k for k in client.scan_iter(match=f"*{project}", count=1000)]
        values = sum(len([f for f in client.hkeys(k) if not f.startswith(b"_ts:")]) for k in keys)
        assert len(keys) == users > 50
        assert values == users * sum(len(store.get_feature_view(v).features) for v in ("user_behaviour", "user_lifetime"))
    finally:  # leave nothing behind in the shared PostgreSQL and Redis
        store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
        store.registry.delete_project(project, commit=True)
    assert not list(client.scan_iter(match=f"*{project}", count=1000))
