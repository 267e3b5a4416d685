"""The Feast layer on a real store: push source, on-demand view, point-in-time retrieval, and the
data-scientist workflow of adding a feature view."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from features.realtime import push_activity
from features.store import open_store
from base.config import Settings
from persona.pipeline import build_features, ingest_inbox, materialize, register_features
from persona.sample_data import generate_sample_data
from tests.conftest import PROJECT, settings_in


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = settings_in(tmp_path_factory.mktemp("fs") / "data", users=120, days=60)
    generate_sample_data(s)
    ingest_inbox(s)
    build_features(s)
    store = open_store(s)
    register_features(s, store)
    materialize(s, store)
    return s


def _snapshots(s: Settings) -> pd.DataFrame:
    from features.compute import read_snapshots

    return read_snapshots(s.data_dir / "features" / "user_behaviour")


def test_online_store_holds_the_newest_snapshot(store_settings: Settings) -> None:
    snaps = _snapshots(store_settings)
    newest = snaps.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    old = newest["event_timestamp"] < newest["event_timestamp"].max()  # sparse: rows older than the newest day
    users = list(newest.index[old][:3]) + list(newest.index[~old][:2])
    assert old.sum() >= 3
    store = open_store(store_settings)
    now = pd.Timestamp.now(tz="UTC").timestamp()
    online = store.get_online_features(features=store.get_feature_service("persona_v1"),
                                       entity_rows=[{"user_id": u, "request_ts": now} for u in users]).to_dict()
    assert online["spend_90d"] == pytest.approx(list(newest.loc[users, "spend_90d"]))
    assert online["purchases_30d"] == list(newest.loc[users, "purchases_30d"])
    assert "last_event_ts" not in online  # persona_v1 serves only model features
    # recency as of now (the newest snapshot midnight before now), not as of the user's old row
    want = [now // 86400 - 1 - t // 86400 for t in newest.loc[users, "last_event_ts"]]
    assert online["days_since_last_event"] == want and min(want) > 2


def test_historical_retrieval_is_point_in_time(store_settings: Settings) -> None:
    snaps = _snapshots(store_settings)
    user = snaps["user_id"].iloc[0]
    mine = snaps.loc[snaps["user_id"] == user].sort_values("event_timestamp")
    pick = mine.iloc[len(mine) // 2]
    asked = pick["event_timestamp"] + pd.Timedelta(hours=12)  # between two daily snapshots
    store = open_store(store_settings)
    got = store.get_historical_features(
        entity_df=pd.DataFrame({"user_id": [user], "event_timestamp": [asked]}),
        features=["user_behaviour:spend_90d", "user_behaviour:events_30d"]).to_df()
    assert got["spend_90d"].iloc[0] == pytest.approx(pick["spend_90d"])
    assert got["events_30d"].iloc[0] == pick["events_30d"]


def test_on_demand_recency_uses_request_time(store_settings: Settings) -> None:
    snaps = _snapshots(store_settings)
    last = snaps.sort_values("event_timestamp").groupby("user_id").tail(1).iloc[0]
    request_ts = last["last_event_ts"] + 3 * 86400
    store = open_store(store_settings)
    got = store.get_online_features(
        features=["user_recency_now:days_since_last_event_now"],
        entity_rows=[{"user_id": last["user_id"], "request_ts": request_ts}]).to_dict()
    assert got["days_since_last_event_now"][0] == pytest.approx(3.0)


def test_push_updates_online_features_at_once(store_settings: Settings) -> None:
    store = open_store(store_settings)
    now = pd.Timestamp.now(tz="UTC").floor("D") + pd.Timedelta(hours=12)  # same day for every event
    events = pd.DataFrame({"user_id": ["u000003"] * 3, "timestamp": [now - pd.Timedelta(minutes=m) for m in (90, 5, 0)],
                           "event_type": ["page_view", "purchase", "page_view"], "amount": [None, 25.5, None]})
    t = time.perf_counter()
    push_activity(store, events)
    got = store.get_online_features(features=["user_activity:events_today", "user_activity:spend_today",
                                              "user_activity:events_last_hour"],
                                    entity_rows=[{"user_id": "u000003"}]).to_dict()
    elapsed = time.perf_counter() - t
    assert got["events_today"] == [3] and got["spend_today"] == [25.5]
    assert got["events_last_hour"] == [2]
    push_activity(store, events.iloc[[2]])  # a second push the same day adds up
    again = store.get_online_features(features=["user_activity:events_today"],
                                      entity_rows=[{"user_id": "u000003"}]).to_dict()
    assert again["events_today"] == [4]
    late = events.iloc[[0]].assign(timestamp=now - pd.Timedelta(days=1))
    push_activity(store, late)  # a late event from yesterday never rolls today's counters back
    after_late = store.get_online_features(features=["user_activity:events_today"],
                                           entity_rows=[{"user_id": "u000003"}]).to_dict()
    assert after_late["events_today"] == [4]
    offline = pd.read_parquet(store_settings.data_dir / "features" / "user_activity")
    assert (offline["user_id"] == "u000003").sum() >= 2  # pushed offline too
    assert elapsed < 30  # sanity only; latency is measured in bench/, not here


NEW_VIEW = '''
from datetime import timedelta
from feast import FeatureView, Field
from feast.types import Float64
from persona_repo import user, user_behaviour_source

user_spend_mix_fv = FeatureView(
    name="user_spend_mix",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[Field(name="spend_7d", dtype=Float64, description="Spend in the last 7 days", tags={"owner": "ds"}),
            Field(name="aov_90d", dtype=Float64, description="Average order value", tags={"owner": "ds"})],
    source=user_behaviour_source,
    tags={"owner": "ds"},
)
'''


def test_new_feature_view_is_applied_materialized_and_retrievable(store_settings: Settings, tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(PROJECT / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "spend_mix.py").write_text(NEW_VIEW)
    data = tmp_path / "data"
    shutil.copytree(store_settings.data_dir / "features" / "user_behaviour", data / "features" / "user_behaviour")
    s = store_settings.model_copy(update={"feature_repo": repo, "data_dir": data})
    store = open_store(s)
    names = register_features(s, store)
    assert "user_spend_mix" in names
    materialize(s, store, views=["user_spend_mix"])
    snaps = _snapshots(s)
    newest = snaps.sort_values("event_timestamp").groupby("user_id").tail(1).iloc[0]
    got = store.get_online_features(features=["user_spend_mix:spend_7d", "user_spend_mix:aov_90d"],
                                    entity_rows=[{"user_id": newest["user_id"]}]).to_dict()
    assert got["spend_7d"] == [pytest.approx(newest["spend_7d"])]


def test_features_cli_lists_and_describes(store_settings: Settings) -> None:
    from typer.testing import CliRunner

    from persona.cli import app

    env = {"PERSONA_DATA_DIR": str(store_settings.data_dir)}
    runner = CliRunner()
    listed = runner.invoke(app, ["features", "list", "-c", str(PROJECT / "persona.yaml")], env=env)
    assert listed.exit_code == 0, listed.output
    for name in ("user_behaviour", "user_activity", "user_recency_now", "persona_v1"):
        assert name in listed.output
    described = runner.invoke(app, ["features", "describe", "user_behaviour", "-c", str(PROJECT / "persona.yaml")], env=env)
    assert described.exit_code == 0 and "spend_90d" in described.output and "Spend (base currency)" in described.output
    missing = runner.invoke(app, ["features", "describe", "nope", "-c", str(PROJECT / "persona.yaml")], env=env)
    assert missing.exit_code == 1 and "no feature view or service named 'nope'" in missing.output


def test_materialize_incremental_moves_only_new_snapshots(tmp_path: Path) -> None:
    from features.compute import compute_snapshots, write_snapshots
    from persona.pipeline import materialize_incremental

    s = settings_in(tmp_path / "data")
    t0 = pd.Timestamp("2026-08-01", tz="UTC")
    events = pd.DataFrame({"user_id": ["u1", "u2", "u1"], "event_type": ["purchase", "page_view", "purchase"],
                           "timestamp": [t0, t0 + pd.Timedelta(hours=3), t0 + pd.Timedelta(days=2)],
                           "amount": [10.0, None, 30.0], "channel": "web"})
    root = s.data_dir / "features" / "user_behaviour"
    write_snapshots(compute_snapshots(events.iloc[:2], s.features), root)
    store = open_store(s)
    register_features(s, store)
    first = materialize_incremental(s, store)
    assert first == t0 + pd.Timedelta(days=1)
    assert materialize_incremental(s, store) == first  # nothing newer: nothing written
    write_snapshots(compute_snapshots(events, s.features), root)  # two more days arrive
    second = materialize_incremental(s, store)
    assert second == t0 + pd.Timedelta(days=3)
    online = store.get_online_features(features=["user_behaviour:spend_7d"], entity_rows=[{"user_id": "u1"}]).to_dict()
    assert online["spend_7d"] == [40.0]
