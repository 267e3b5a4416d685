"""Sparse snapshots: Feast's point-in-time join (DuckDB offline store, the real feature repo) over the
sparse table, with the time-dependent features computed at the request time, equals the dense daily
table cell for cell; and the sparse table has at most four rows per user-day with an event."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from base.config import Settings
from base.paths import DataPaths
from features.compute import CHANGE_OFFSETS, compute_snapshots, write_snapshots
from features.time_features import REQUEST_TS
from tests.conftest import settings_in
from tests.data.transactions_export import write_export

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def _user_days(events: pd.DataFrame) -> int:
    """Known users' (user, day) pairs with an event."""
    from features.compute import is_known_user

    known = events.loc[is_known_user(events["user_id"])]
    return int(known.assign(day=known["timestamp"].dt.floor("D")).drop_duplicates(["user_id", "day"]).shape[0])


def _dense_as_of(dense: pd.DataFrame, entity: pd.DataFrame) -> pd.DataFrame:
    """The dense table's newest row at or before each entity row (null features when none): what Feast
    gave over dense snapshots."""
    left = entity.reset_index().sort_values("event_timestamp")
    right = dense.drop(columns=["created"]).sort_values("event_timestamp")
    joined = pd.merge_asof(left, right, on="event_timestamp", by="user_id", direction="backward")
    return joined.set_index("index").sort_index()


def _entity_rows(events: pd.DataFrame, cutoffs: list[pd.Timestamp], extra_users: list[str]) -> pd.DataFrame:
    users = sorted(set(events["user_id"].astype(str))) + extra_users
    rows = pd.DataFrame([(u, c) for c in cutoffs for u in users], columns=["user_id", "event_timestamp"])
    rows[REQUEST_TS] = (rows["event_timestamp"] - EPOCH).dt.total_seconds()
    return rows


def _assert_feast_equals_dense(s: Settings, events: pd.DataFrame, cutoffs: list[pd.Timestamp],
                               project: str) -> pd.DataFrame:
    """Write the sparse table, apply the repo, retrieve ``persona_v2`` at ``cutoffs`` for every user, and
    compare with the dense table; returns the retrieved frame."""
    from features.store import FEATURE_SERVICE, feature_refs, open_store
    from persona.pipeline import register_features
    from training.dataset import retrieve

    sparse = compute_snapshots(events, s.features)
    dense = compute_snapshots(events, s.features, dense=True)
    assert len(sparse) < len(dense)
    write_snapshots(sparse, DataPaths(s.data_dir).behaviour_snapshots)
    store = open_store(s, project=project)
    register_features(s, store)
    entity = _entity_rows(events, cutoffs, ["never-seen"])
    got = retrieve(store, entity, FEATURE_SERVICE)
    assert len(got) == len(entity)  # every entity row comes back
    got = got.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    want = _dense_as_of(dense, entity).sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    names = feature_refs(store, FEATURE_SERVICE)
    assert {"days_since_last_event", "tenure_days", "btyd_age_days"} <= set(names)
    for name in names:
        a = pd.to_numeric(got[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        b = pd.to_numeric(want[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        diff = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        assert not diff.any(), (name, got.loc[diff, ["user_id", "event_timestamp"]].head(), a[diff][:5], b[diff][:5])
    return got


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    """The generated sample, ingested: its settings and clean events."""
    from persona.pipeline import ingest_inbox, load_clean_events
    from persona.sample_data import generate_sample_data

    s = settings_in(tmp_path_factory.mktemp("sparse") / "data", users=150, days=200)
    generate_sample_data(s)
    ingest_inbox(s)
    return s, load_clean_events(s)


def test_sparse_rows_are_at_most_four_per_user_day_with_an_event(sample: tuple[Settings, pd.DataFrame]) -> None:
    s, events = sample
    sparse = compute_snapshots(events, s.features)
    dense = compute_snapshots(events, s.features, dense=True)
    assert len(CHANGE_OFFSETS) == 4 and 0 < len(sparse) <= 4 * _user_days(events)
    assert len(sparse) < len(dense) / 2
    assert set(sparse["user_id"]) == set(dense["user_id"])


def test_feast_join_over_sparse_rows_equals_the_dense_table_on_the_sample(sample: tuple[Settings, pd.DataFrame]) -> None:
    s, events = sample
    first, last = events["timestamp"].min().floor("D"), events["timestamp"].max().floor("D") + pd.Timedelta(days=1)
    cutoffs = [first + pd.Timedelta(days=d) for d in (0, 3, 20, 64, 97, 130)] + [last]
    cutoffs += [last - pd.Timedelta(hours=7)]  # not a midnight: the snapshot before it answers
    got = _assert_feast_equals_dense(s, events, cutoffs, "sparse_sample")
    at_end = got.loc[got["event_timestamp"] == last]
    assert (at_end["days_since_last_event"] > 90).any()  # users whose last event left every window
    assert got["tenure_days"].isna().any()  # users who appear after some cutoffs: null, not dropped


def test_feast_join_over_sparse_rows_equals_the_dense_table_on_a_transactions_export(tmp_path: Path) -> None:
    export = write_export(tmp_path / "purchases.csv", customers=150, start="2025-01-01", days=300)
    raw = pd.read_csv(export.path, dtype={"date": str})
    n = len(raw)
    hours = pd.to_timedelta(np.random.default_rng(5).integers(0, 86400, n), unit="s")
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "user_id": "c" + raw["customer"].astype(str),
        "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d", utc=True) + hours,
        "event_type": "purchase", "amount": raw["amount"].astype(float), "channel": None, "category": None,
        "session_id": None, "device": None,
    })
    s = settings_in(tmp_path / "data")
    first, last = events["timestamp"].min().floor("D"), events["timestamp"].max().floor("D") + pd.Timedelta(days=1)
    cutoffs = [first + pd.Timedelta(days=d) for d in (1, 45, 100, 180, 250)] + [last]
    got = _assert_feast_equals_dense(s, events, cutoffs, "sparse_export")
    assert (got["days_since_last_purchase"] > 90).any() and got["btyd_age_days"].notna().any()
