"""OnlineReader returns what Feast's own get_online_features returns, on SQLite and on Redis: batch
and push views, unknown and repeated users, values pushed a moment ago, non-numeric fields."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from features.online_reader import OnlineReader
from features.realtime import push_activity
from features.store import FEATURE_SERVICE, feature_refs
from persona.pipeline import materialize
from tests.integration.online_data import PROFILES, fresh_store, snapshot_settings

LIVE = "persona_live_test"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return snapshot_settings(tmp_path_factory.mktemp("reader") / "data")


@pytest.fixture(scope="module", params=PROFILES)
def store(request: pytest.FixtureRequest, history: tuple) -> Iterator[object]:
    """A materialized store with pushed activity for a few users and a service over both views."""
    from feast import FeatureService

    s, newest = history
    with fresh_store(s, request.param) as st:
        materialize(s, st)
        behaviour, activity = st.get_feature_view("user_behaviour"), st.get_feature_view("user_activity")
        model = [f.name for f in behaviour.features if not f.name.endswith("_ts")]
        st.apply([FeatureService(name=LIVE, features=[behaviour[model], activity])])
        now = pd.Timestamp.now(tz="UTC").floor("s")
        users = list(newest["user_id"].iloc[:3])
        push_activity(st, pd.DataFrame({"user_id": users, "timestamp": [now] * 3,
                                        "event_type": ["purchase", "page_view", "purchase"],
                                        "amount": [10.0, None, 2.5]}), offline=False)
        yield st


def _assert_same_as_feast(store, reader: OnlineReader, users: list[str], service: str) -> None:
    now = 1.8e9
    batch = reader.read(users, now)
    feast = store.get_online_features(features=store.get_feature_service(service),
                                      entity_rows=[{"user_id": u, "request_ts": now} for u in users]
                                      ).to_dict(include_event_timestamps=True)
    assert batch.values.shape == (len(users), len(batch.features)) and batch.values.dtype == np.float64
    for j, name in enumerate(batch.features):
        want = [math.nan if v is None else float(v) for v in feast[name]]
        np.testing.assert_array_equal(batch.values[:, j], want, err_msg=name)
    for i, when in enumerate(batch.times):
        stamps = [feast[f"{n}__ts"][i] for n in batch.features if f"{n}__ts" in feast]
        if when is None:
            assert all(v is None for n in batch.features for v in [feast[n][i]]), users[i]
        else:
            assert int(when) == max(stamps)


def test_the_models_service_reads_both_snapshot_views_equal_to_feast(store, history: tuple) -> None:
    _, newest = history
    reader = OnlineReader(store, FEATURE_SERVICE)
    assert reader.features == feature_refs(store) and "btyd_frequency" in reader.features
    assert reader.on_arrays == ["user_time"]  # the time features on numpy arrays, equal to Feast's pandas function
    _assert_same_as_feast(store, reader, [*newest["user_id"].iloc[:20], "nobody"], FEATURE_SERVICE)


def test_persona_v1_reads_equal_feast(store, history: tuple) -> None:
    _, newest = history
    reader = OnlineReader(store, "persona_v1")
    assert reader.features == feature_refs(store, "persona_v1")
    users = [*newest["user_id"].iloc[:20], "nobody", newest["user_id"].iloc[0]]
    _assert_same_as_feast(store, reader, users, "persona_v1")
    batch = reader.read(users)
    assert batch.times[20] is None and np.isnan(batch.values[20]).all()  # unknown user
    np.testing.assert_array_equal(batch.values[0], batch.values[21])  # repeated user
    assert batch.times[0] == newest["event_timestamp"].iloc[0].timestamp()
    assert reader.read([]).values.shape == (0, len(reader.features))


def test_batch_and_push_views_read_together(store, history: tuple) -> None:
    _, newest = history
    reader = OnlineReader(store, LIVE)
    assert "events_today" in reader.features and "spend_90d" in reader.features
    users = list(newest["user_id"].iloc[:6]) + ["nobody"]
    _assert_same_as_feast(store, reader, users, LIVE)
    batch = reader.read(users[:3])
    assert list(batch.column("purchases_today")) == [1.0, 0.0, 1.0]
    assert batch.times[0] > newest["event_timestamp"].iloc[0].timestamp()  # the push is newer


def test_a_push_is_visible_to_the_next_read(store, history: tuple) -> None:
    _, newest = history
    reader = OnlineReader(store, LIVE)
    user = newest["user_id"].iloc[10]
    assert np.isnan(reader.read([user]).column("events_today")[0])
    now = pd.Timestamp.now(tz="UTC").floor("s")
    push_activity(store, pd.DataFrame({"user_id": [user] * 2, "timestamp": [now] * 2,
                                       "event_type": ["page_view", "purchase"], "amount": [None, 4.0]}), offline=False)
    batch = reader.read([user])
    assert batch.column("events_today")[0] == 2.0 and batch.column("spend_today")[0] == 4.0
    assert batch.times[0] == now.timestamp()


def test_non_numeric_fields_go_to_other(store, history: tuple) -> None:
    from feast import FeatureService, FeatureView, Field, FileSource
    from feast.types import Float64, String

    _, newest = history
    source = FileSource(name="user_profile_source", path="features/user_profile.parquet",
                        timestamp_field="event_timestamp")
    profile = FeatureView(name="user_profile", entities=[store.get_entity("user")], ttl=timedelta(days=30),
                          schema=[Field(name="favourite_channel", dtype=String), Field(name="score", dtype=Float64)],
                          source=source, online=True)
    store.apply([source, profile])
    store.apply([FeatureService(name="profile_test", features=[profile])])
    users = list(newest["user_id"].iloc[:3])
    store.write_to_online_store("user_profile", pd.DataFrame({
        "user_id": users[:2], "event_timestamp": [pd.Timestamp("2026-09-01", tz="UTC")] * 2,
        "favourite_channel": ["web", None], "score": [0.5, 1.5]}), allow_registry_cache=False)
    reader = OnlineReader(store, "profile_test")
    batch = reader.read(users)
    assert reader.features == ["favourite_channel", "score"]
    assert batch.other == {"favourite_channel": ["web", None, None]}
    assert np.isnan(batch.column("favourite_channel")).all()
    np.testing.assert_array_equal(batch.column("score"), [0.5, 1.5, math.nan])
    assert batch.times[2] is None


def test_on_demand_views_and_name_clashes_are_refused(store) -> None:
    from feast import FeatureService

    from feast import Field, RequestSource
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Float64

    odfv = store.get_on_demand_feature_view("user_recency_now")  # over batch fields and request_ts: computed
    store.apply([FeatureService(name="odfv_test", features=[odfv])])
    users = ["u000001", "nobody"]
    reader = OnlineReader(store, "odfv_test")
    assert reader.on_arrays == []  # not made by feast_udf: its own pandas function is called
    got = reader.read(users, 1.8e9)
    feast = store.get_online_features(features=store.get_feature_service("odfv_test"),
                                      entity_rows=[{"user_id": u, "request_ts": 1.8e9} for u in users]).to_dict()
    np.testing.assert_array_equal(got.column("days_since_last_event_now"),
                                  [math.nan if v is None else v for v in feast["days_since_last_event_now"]])
    other = RequestSource(name="other_request", schema=[Field(name="budget", dtype=Float64)])

    @on_demand_feature_view(sources=[other], schema=[Field(name="double_budget", dtype=Float64)], mode="pandas")
    def other_odfv(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"double_budget": inputs["budget"] * 2})

    store.apply([other, other_odfv, FeatureService(name="odfv_other", features=[other_odfv])])
    with pytest.raises(ValueError, match="other_odfv.*not a feature view"):
        OnlineReader(store, "odfv_other")
    behaviour, activity = store.get_feature_view("user_behaviour"), store.get_feature_view("user_activity")
    store.apply([FeatureService(name="clash_test", features=[behaviour[["last_event_ts"]], activity])])
    with pytest.raises(ValueError, match="two features named 'last_event_ts'"):
        OnlineReader(store, "clash_test")
    full = OnlineReader(store, "clash_test", full_feature_names=True)
    assert "user_behaviour__last_event_ts" in full.features and "user_activity__last_event_ts" in full.features
