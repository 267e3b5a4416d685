"""The training set on a real Feast store built from the sample: the per-cutoff offline window gives
exactly what one retrieval over the whole offline store gives, and no row leaks a later identity link."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.store import open_store
from base.config import Settings
from persona.pipeline import build_features, ingest_inbox, register_features, training_events, training_set
from persona.sample_data import generate_sample_data
from tests.conftest import settings_in
from training.dataset import build_training_set, rows_as_of
from training.labels import identity_exclusions, make_labels


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = settings_in(tmp_path_factory.mktemp("ts") / "data", users=150, days=80)
    generate_sample_data(s)
    ingest_inbox(s)
    build_features(s)
    register_features(s, open_store(s))
    return s


def test_windowed_retrieval_equals_a_retrieval_over_the_whole_store(built: Settings) -> None:
    store = open_store(built)
    events = training_events(built)
    first = events["timestamp"].min().floor("D")
    cutoffs = [first + pd.Timedelta(days=d) for d in (20, 41, 66)]
    cutoffs.append(first + pd.Timedelta(days=55, hours=13))  # between two daily snapshots
    labels = make_labels(events, cutoffs, 14)
    early = labels.head(5).assign(event_timestamp=first - pd.Timedelta(days=3))  # before any snapshot
    labels = pd.concat([labels, early], ignore_index=True)
    windowed = build_training_set(store, labels, built.data_dir)
    full = build_training_set(store, labels, built.data_dir, windowed=False)
    pd.testing.assert_frame_equal(windowed, full)
    assert windowed["purchases_90d"].notna().sum() > 100  # features were found...
    assert windowed.loc[windowed["event_timestamp"] < first, "purchases_90d"].isna().all()  # ...never from the future


def test_direct_join_equals_feasts_retrieval_cell_for_cell(built: Settings) -> None:
    from training.dataset import direct_plan

    store = open_store(built)
    assert direct_plan(store) is not None  # the default service is answered without Feast
    events = training_events(built)
    first = events["timestamp"].min().floor("D")
    cutoffs = [first + pd.Timedelta(days=d) for d in (9, 33, 52)] + [first + pd.Timedelta(days=47, hours=7)]
    labels = make_labels(events, cutoffs, 14)
    extra = pd.DataFrame({"user_id": ["u-never-seen", labels["user_id"].iloc[0]],
                          "event_timestamp": [cutoffs[1], first - pd.Timedelta(days=1)]})
    labels = pd.concat([labels, extra.assign(label_spend=0.0, label_churn=1, label_category=-1)], ignore_index=True)
    direct = build_training_set(store, labels, built.data_dir)
    feast = build_training_set(store, labels, built.data_dir, direct=False)  # Feast's DuckDB join + user_time
    pd.testing.assert_frame_equal(direct, feast, check_exact=True)
    assert direct["days_since_last_event"].notna().sum() > 100 and direct["lifetime_spend"].notna().sum() > 100
    assert direct.loc[direct["user_id"] == "u-never-seen", "purchases_90d"].isna().all()


def test_users_without_a_snapshot_by_the_cutoff_come_back_with_null_features(built: Settings) -> None:
    from features.compute import read_snapshots

    store = open_store(built)
    snaps = read_snapshots(Path(built.data_dir) / "features" / "user_behaviour", columns=["user_id", "event_timestamp"])
    first_seen = snaps.groupby("user_id")["event_timestamp"].min().sort_values()
    cutoff = first_seen.iloc[len(first_seen) // 2]  # half the users have no snapshot yet
    rows = pd.DataFrame({"user_id": list(first_seen.index) + ["u-never-seen"], "event_timestamp": cutoff,
                         "label_spend": 1.0})
    got = build_training_set(store, rows, built.data_dir)
    assert len(got) == len(rows)  # the file store dropped the users whose snapshots start later
    known = got.set_index("user_id")["purchases_90d"].notna()
    expected = (first_seen <= cutoff).reindex(known.index, fill_value=False)
    assert (known == expected).all()
    assert 0 < known.sum() < len(rows) - 1


def test_window_holds_each_users_newest_row_at_or_before_the_cutoff(built: Settings) -> None:
    from features.compute import read_snapshots

    root = Path(built.data_dir) / "features" / "user_behaviour"
    days = sorted(p.name for p in root.glob("date=*"))
    cutoff = pd.Timestamp(days[10][5:], tz="UTC") + pd.Timedelta(hours=6)
    got = rows_as_of(root, [cutoff]).set_index("user_id").sort_index()
    snaps = read_snapshots(root)
    want = snaps.loc[snaps["event_timestamp"] <= cutoff].sort_values("event_timestamp").groupby("user_id").tail(1)
    want = want.set_index("user_id").sort_index()
    assert len(got) == len(want) > len(read_snapshots(root / days[10]))  # sparse: older rows count too
    pd.testing.assert_frame_equal(got, want[got.columns])
    assert rows_as_of(root, [pd.Timestamp(days[0][5:], tz="UTC") - pd.Timedelta(days=1)]).empty
    assert not list((Path(built.data_dir) / "training").glob(".feast-window-*"))  # windows are cleaned up


def test_one_pass_window_holds_every_cutoffs_rows_once(built: Settings) -> None:
    from features.compute import read_snapshots

    root = Path(built.data_dir) / "features" / "user_behaviour"
    days = sorted(p.name for p in root.glob("date=*"))
    cutoffs = [pd.Timestamp(days[i][5:], tz="UTC") + pd.Timedelta(hours=h) for i, h in ((3, 0), (10, 6), (-1, 23))]
    got = rows_as_of(root, cutoffs, columns=["user_id", "event_timestamp", "purchases_90d"])
    assert list(got.columns) == ["user_id", "event_timestamp", "purchases_90d"]
    assert not got.duplicated(["user_id", "event_timestamp"]).any()  # a row newest at two cutoffs is written once
    snaps = read_snapshots(root)
    for cutoff in cutoffs:  # the newest row at or before each cutoff, per user, is in the window and is the newest there
        want = snaps.loc[snaps["event_timestamp"] <= cutoff].sort_values("event_timestamp").groupby("user_id").tail(1)
        seen = got.loc[got["event_timestamp"] <= cutoff].sort_values("event_timestamp").groupby("user_id").tail(1)
        pd.testing.assert_frame_equal(seen.set_index("user_id").sort_index()[["event_timestamp", "purchases_90d"]],
                                      want.set_index("user_id").sort_index()[["event_timestamp", "purchases_90d"]])


def test_training_set_has_no_row_that_a_later_login_would_leak(built: Settings) -> None:
    frame, split, features = training_set(built, open_store(built))
    excluded = identity_exclusions(training_events(built), split.all)
    assert len(excluded) > 0  # the sample has visitors who log in later
    leaked = frame.merge(excluded, on=["user_id", "event_timestamp"])
    assert leaked.empty
    assert len(frame) > 0 and set(features) <= set(frame.columns)
