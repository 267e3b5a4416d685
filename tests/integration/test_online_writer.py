"""The fast online writer stores exactly what Feast's own materialize stores, on SQLite and Redis,
and Feast reads it back and keeps working on top of it (push, later writes)."""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing

import pandas as pd
import pytest

from features.online_layout import entity_keys, redis_client, sqlite_path, sqlite_table
from features.online_writer import write_latest
from features.realtime import push_activity
from persona.pipeline import materialize
from tests.integration.online_data import PROFILES, fresh_store, snapshot_settings

FEATURES = None  # every user_behaviour field, resolved per store


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return snapshot_settings(tmp_path_factory.mktemp("writer") / "data")


def _stored(store, ids: list[str]) -> list:
    """Everything the online store holds for user_behaviour, project name aside."""
    fv = store.get_feature_view("user_behaviour")
    if store.config.online_store.type == "sqlite":
        with closing(sqlite3.connect(sqlite_path(store))) as conn:
            return conn.execute("SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                                f'FROM "{sqlite_table(store, fv)}" ORDER BY entity_key, feature_name').fetchall()
    client = redis_client(store)
    return [client.hgetall(k + store.project.encode()) for k in entity_keys("user_id", ids)]


def _refs(store) -> list[str]:
    return [f"user_behaviour:{f.name}" for f in store.get_feature_view("user_behaviour").features]


@pytest.mark.parametrize("profile", PROFILES)
def test_fast_write_stores_the_bytes_feast_materialize_stores(history: tuple, profile: str) -> None:
    s, newest = history
    ids = sorted(newest["user_id"])
    with fresh_store(s, profile) as feast_store, fresh_store(s, profile) as ours:
        materialize(s, feast_store, use_feast=True)
        assert materialize(s, ours) == len(ids)
        expected, got = _stored(feast_store, ids), _stored(ours, ids)
        assert len(got) == len(expected) > 0 and all(got)
        assert got == expected
        fv = ours.get_feature_view("user_behaviour")
        assert fv.materialization_intervals[-1][1] == newest["event_timestamp"].max().to_pydatetime()


@pytest.mark.parametrize("profile", PROFILES)
def test_feast_reads_back_exactly_what_was_written(history: tuple, profile: str) -> None:
    s, newest = history
    with fresh_store(s, profile) as store:
        materialize(s, store)
        refs = _refs(store)
        names = [r.split(":")[1] for r in refs]
        got = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in newest["user_id"]]
                                        ).to_dict()
        for name in names:
            for i, (want, have) in enumerate(zip(newest[name].tolist(), got[name])):
                if isinstance(want, float) and math.isnan(want):
                    assert have is None, (name, i)
                else:
                    assert have == want and math.copysign(1, have) == math.copysign(1, want), (name, i, have, want)


@pytest.mark.parametrize("profile", PROFILES)
def test_push_and_newer_writes_work_after_a_fast_write(history: tuple, profile: str) -> None:
    s, newest = history
    with fresh_store(s, profile) as store:
        materialize(s, store)
        user = newest["user_id"].iloc[0]
        now = pd.Timestamp.now(tz="UTC").floor("s")
        push_activity(store, pd.DataFrame({"user_id": [user], "timestamp": [now], "event_type": ["purchase"],
                                           "amount": [12.0]}), offline=False)
        got = store.get_online_features(features=["user_activity:purchases_today", "user_behaviour:spend_90d"],
                                        entity_rows=[{"user_id": user}]).to_dict()
        assert got["purchases_today"] == [1] and got["spend_90d"] == [newest["spend_90d"].iloc[0]]

        later = newest.assign(event_timestamp=newest["event_timestamp"] + pd.Timedelta(days=1),
                              created=newest["created"] + pd.Timedelta(days=1), spend_90d=1234.5)
        write_latest(store, "user_behaviour", later)
        older = newest.assign(event_timestamp=newest["event_timestamp"] - pd.Timedelta(days=1), spend_90d=-1.0)
        write_latest(store, "user_behaviour", older)  # one rule on both profiles: a stored newer row stays
        got = store.get_online_features(features=["user_behaviour:spend_90d", "user_activity:purchases_today"],
                                        entity_rows=[{"user_id": user}]).to_dict(include_event_timestamps=True)
        assert got["spend_90d"] == [1234.5] and got["purchases_today"] == [1]
        assert got["spend_90d__ts"] == [int(later["event_timestamp"].iloc[0].timestamp())]


def test_missing_columns_are_named(history: tuple) -> None:
    s, newest = history
    with fresh_store(s, "default") as store:
        with pytest.raises(ValueError, match="lacks columns.*spend_90d"):
            write_latest(store, "user_behaviour", newest.drop(columns=["spend_90d"]))
