"""Feature snapshots: window sums match a brute-force count, and nothing after the snapshot leaks in."""

import numpy as np
import pandas as pd
import pytest

from features.compute import compute_snapshots
from base.config import FeatureConfig

CFG = FeatureConfig()
T0 = pd.Timestamp("2026-07-01", tz="UTC")


def _ev(user: str, when: pd.Timestamp, etype: str, amount: float | None = None, category: str | None = None) -> dict:
    return {"user_id": user, "timestamp": when, "event_type": etype, "amount": amount, "channel": "web",
            "category": category, "session_id": f"{user}-{when:%Y%m%d}"}


def test_windows_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    rows = [_ev(f"u{rng.integers(5)}", T0 + pd.Timedelta(minutes=int(m)),
                str(rng.choice(["purchase", "page_view", "add_to_cart", "refund"])), float(rng.gamma(2, 20)),
                str(rng.choice(CFG.categories)))
            for m in rng.integers(0, 100 * 1440, 2000)]
    ev = pd.DataFrame(rows)
    snaps = compute_snapshots(ev, CFG, dense=True)  # the oracle (sparse rows equal it: tests/data/test_sparse_snapshots.py)
    sparse = compute_snapshots(ev, CFG)
    assert set(sparse.columns) < set(snaps.columns) and 0 < len(sparse) < len(snaps)
    for _, snap in pd.concat([snaps.sample(40, random_state=1), sparse.sample(40, random_state=1)]).iterrows():
        mine = ev.loc[(ev.user_id == snap.user_id) & (ev.timestamp < snap.event_timestamp)]
        for days in (7, 30, 90):
            win = mine.loc[mine.timestamp >= snap.event_timestamp - pd.Timedelta(days=days)]
            buys = win.loc[win.event_type == "purchase"]
            assert snap[f"purchases_{days}d"] == len(buys)
            assert snap[f"spend_{days}d"] == pytest.approx(buys.amount.sum(), abs=0.02)
        if pd.notna(snap.get("tenure_days")):  # the dense rows
            assert snap.tenure_days == (snap.event_timestamp - mine.timestamp.min().floor("D")).days - 1


def test_snapshot_sees_only_events_before_its_timestamp() -> None:
    cutoff = T0 + pd.Timedelta(days=10)
    ev = pd.DataFrame([
        _ev("u1", T0, "page_view"),
        _ev("u1", cutoff - pd.Timedelta(seconds=1), "purchase", 10.0),
        _ev("u1", cutoff, "purchase", 1000.0),
        _ev("u1", cutoff + pd.Timedelta(hours=5), "purchase", 500.0),
    ])
    snaps = compute_snapshots(ev, CFG, dense=True)
    at_cutoff = snaps.loc[snaps.event_timestamp == cutoff].iloc[0]
    assert at_cutoff.purchases_7d == 1 and at_cutoff.spend_7d == 10.0
    assert at_cutoff.days_since_last_purchase == 0
    after = snaps.loc[snaps.event_timestamp == cutoff + pd.Timedelta(days=1)].iloc[0]
    assert after.purchases_7d == 3 and after.spend_7d == 1510.0


def test_anonymous_visitors_get_no_snapshots() -> None:
    ev = pd.DataFrame([_ev("anon:a1", T0, "page_view"), _ev("u1", T0, "page_view")])
    assert set(compute_snapshots(ev, CFG).user_id) == {"u1"}


def test_snapshot_columns_match_feature_view() -> None:
    from features.store import load_definitions
    from tests.conftest import PROJECT

    repo = load_definitions(PROJECT / "feature_repo")
    views = {o.name: o for o in repo.objects if getattr(o, "name", "") in ("user_behaviour", "user_lifetime")
             and hasattr(o, "schema")}
    snaps = compute_snapshots(pd.DataFrame([_ev("u1", T0, "purchase", 5.0, "home")]), CFG)
    fields = [f.name for fv in views.values() for f in fv.schema]  # two views over the same snapshots
    assert len(fields) == len(set(fields)) and set(fields) == set(snaps.columns) - {"user_id", "event_timestamp", "created"}
