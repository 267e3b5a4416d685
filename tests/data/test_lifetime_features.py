"""Lifetime features: point-in-time correct (they equal the BTYD inputs computed from events before each
cutoff), the same from a full build, an incremental build and the real-time fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from base.config import FeatureConfig
from base.paths import DataPaths
from features.compute import EPOCH, compute_snapshots, read_snapshots
from features.lifetime import COLUMNS, fold_lifetime
from features.time_features import time_features
from ingestion.event_store import write_batch
from persona.pipeline import build_features
from tests.conftest import settings_in
from tests.data.test_incremental_features import T0, _events, _sorted
from training.baselines import history_summary

CFG = FeatureConfig()


def _purchases(rng: np.random.Generator, n: int, days: int) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": [f"u{i}" for i in rng.integers(0, 12, n)],
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, days * 86400, n), unit="s"),
        "event_type": rng.choice(["purchase", "page_view", "purchase"], n),
        "amount": np.round(rng.gamma(2, 20, n), 2), "channel": "web", "category": "home", "session_id": None,
    })


def test_lifetime_columns_equal_the_btyd_inputs_before_each_cutoff() -> None:
    ev = _purchases(np.random.default_rng(5), 600, 200)
    browser = {"user_id": "u99", "timestamp": T0, "event_type": "page_view", "amount": None, "channel": "web",
               "category": None, "session_id": None}
    ev = pd.concat([ev, pd.DataFrame([browser])], ignore_index=True)
    snaps = compute_snapshots(ev, CFG).sort_values("event_timestamp")  # sparse rows
    cutoffs = [T0 + pd.Timedelta(days=d) for d in (20, 75, 150, 200)]
    hist = history_summary(ev, cutoffs, 30).set_index(["user_id", "event_timestamp"])
    rows = hist.index.to_frame(index=False).sort_values("event_timestamp")
    snap = pd.merge_asof(rows, snaps, on="event_timestamp", by="user_id")  # each user's row as of the cutoff
    request = (snap["event_timestamp"] - EPOCH).dt.total_seconds().to_numpy()
    snap = pd.concat([snap, time_features(snap, request)], axis=1).set_index(["user_id", "event_timestamp"])
    snap = snap.loc[hist.index]
    bought = snap["lifetime_purchase_days"] > 0
    assert bought.sum() > 20 and (~bought).sum() > 0
    b, h = snap.loc[bought], hist.loc[bought]
    np.testing.assert_array_equal(b["btyd_frequency"], h["hist_x"])
    np.testing.assert_array_equal(b["btyd_recency_days"], h["hist_t_x"])
    np.testing.assert_array_equal(b["btyd_age_days"], h["hist_T"])
    np.testing.assert_allclose(b["btyd_monetary"], h["hist_mean_value"], atol=0.011)
    np.testing.assert_allclose(b["lifetime_spend"], h["hist_spend_total"], atol=0.011)
    for (user, cutoff), row in b.sample(15, random_state=0).iterrows():  # brute force on the raw events
        mine = ev.loc[(ev.user_id == user) & (ev.timestamp < cutoff) & (ev.event_type == "purchase")]
        assert row["lifetime_purchases"] == len(mine)
        assert row["first_purchase_ts"] == pytest.approx(mine.timestamp.min().timestamp())
        assert row["avg_order_value"] == pytest.approx(mine.amount.mean(), abs=0.01)
    assert (snap.loc[~bought, "lifetime_spend"] == 0).all() and snap.loc[~bought, "btyd_age_days"].isna().all()


def test_incremental_build_keeps_lifetime_history_older_than_the_longest_window(tmp_path) -> None:
    rng = np.random.default_rng(12)
    inc, full = settings_in(tmp_path / "inc"), settings_in(tmp_path / "full")
    history, new_day = _events(rng, 2500, 0, 130, "h"), _events(rng, 60, 130, 1, "n")
    for s in (inc, full):
        write_batch(history, DataPaths(s.data_dir).events, "b1")
    build_features(inc)
    for s in (inc, full):
        write_batch(new_day, DataPaths(s.data_dir).events, "b2")
    assert build_features(inc).incremental
    build_features(full, incremental=False)
    a = _sorted(read_snapshots(DataPaths(inc.data_dir).behaviour_snapshots))
    b = _sorted(read_snapshots(DataPaths(full.data_dir).behaviour_snapshots))
    newest = a["event_timestamp"] == a["event_timestamp"].max()
    assert a.loc[newest, "lifetime_purchases"].sum() > a.loc[newest, "purchases_90d"].sum()  # older than 90 d
    pd.testing.assert_frame_equal(a[list(COLUMNS)], b[list(COLUMNS)])


def test_real_time_fold_equals_the_next_snapshot() -> None:
    rng = np.random.default_rng(8)
    day = T0 + pd.Timedelta(days=59)
    last_day = _purchases(rng, 40, 1).assign(timestamp=lambda f: f.timestamp + pd.Timedelta(days=59))
    ev = pd.concat([_purchases(rng, 400, 59), last_day], ignore_index=True)
    snaps = compute_snapshots(ev, CFG, end=day + pd.Timedelta(days=1), dense=True)
    before = snaps.loc[snaps["event_timestamp"] == day].set_index("user_id")
    after = snaps.loc[snaps["event_timestamp"] == day + pd.Timedelta(days=1)].set_index("user_id")
    today = ev.loc[ev.timestamp >= day]
    checked = 0
    for user, group in today.groupby("user_id"):
        if user not in before.index or not (group.event_type == "purchase").any():
            continue
        row = before.loc[user]
        current = {c: (None if pd.isna(row[c]) else float(row[c])) for c in COLUMNS}
        last = None if pd.isna(row["last_purchase_ts"]) else float(row["last_purchase_ts"])
        folded = fold_lifetime(current, group, last)
        for c in COLUMNS:
            want = after.loc[user, c]
            assert (folded[c] is None and pd.isna(want)) or folded[c] == pytest.approx(float(want), abs=0.011), c
        checked += 1
    assert checked >= 5


def test_lifetime_view_is_served_online_and_folds_posted_purchases(tmp_path) -> None:
    from features.live_behaviour import update_lifetime_online
    from features.store import FEATURE_SERVICE, open_store
    from persona.pipeline import materialize, register_features

    s = settings_in(tmp_path / "data")
    events = _events(np.random.default_rng(3), 1500, 0, 100, "h")
    write_batch(events, DataPaths(s.data_dir).events, "b1")
    build_features(s)
    store = open_store(s)
    register_features(s, store)
    materialize(s, store)
    snaps = read_snapshots(DataPaths(s.data_dir).behaviour_snapshots)
    newest = snaps.loc[snaps["event_timestamp"] == snaps["event_timestamp"].max()].set_index("user_id")
    user = newest["lifetime_purchases"].idxmax()
    refs = [f"user_lifetime:{c}" for c in COLUMNS]
    service = store.get_feature_service(FEATURE_SERVICE)
    online = store.get_online_features(features=service, entity_rows=[
        {"user_id": user, "request_ts": newest["event_timestamp"].max().timestamp()}]).to_dict()
    assert online["lifetime_purchases"] == [newest.loc[user, "lifetime_purchases"]]
    assert online["btyd_frequency"] == [newest.loc[user, "btyd_frequency"]]
    when = newest["event_timestamp"].max() + pd.Timedelta(hours=5)
    post = pd.DataFrame({"user_id": [user, user], "timestamp": [when, when + pd.Timedelta(minutes=3)],
                         "event_type": ["purchase", "purchase"], "amount": [10.0, 5.5], "channel": "api",
                         "device": None, "category": "home"})
    assert update_lifetime_online(store, post, when.timestamp()) == [user]
    after = store.get_online_features(features=refs, entity_rows=[{"user_id": user}]).to_dict()
    assert after["lifetime_purchases"] == [newest.loc[user, "lifetime_purchases"] + 2]
    assert after["lifetime_spend"][0] == pytest.approx(newest.loc[user, "lifetime_spend"] + 15.5)
    assert after["lifetime_purchase_days"] == [newest.loc[user, "lifetime_purchase_days"] + 1]  # one new day
    assert after["btyd_frequency"] == [newest.loc[user, "btyd_frequency"] + 1]
    now = store.get_online_features(features=service, entity_rows=[{"user_id": user, "request_ts": when.timestamp()}])
    now = now.to_dict()
    # bought today; read today: T counts to the newest snapshot midnight (today's), as a dense table had it
    assert now["btyd_recency_days"][0] == now["btyd_age_days"][0] == after["btyd_recency_days"][0]
    assert now["lifetime_purchase_rate"][0] == pytest.approx(after["lifetime_purchase_days"][0] / now["btyd_age_days"][0])
