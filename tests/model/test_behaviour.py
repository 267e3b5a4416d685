"""Behavioural model tests (direction, invariance) with real LightGBM on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.compute import compute_snapshots
from base.config import FeatureConfig
from tests.model.conftest import CATEGORIES, FAST, FEATURES, synthetic_set
from training.explain import contributions, top_drivers
from training.labels import make_labels
from training.targets import target
from training.train import fit, matrix, split_frames


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    data, split = synthetic_set(users=500, seed=1)
    train, _ = split_frames(data, split)
    return {k: fit(target(k), train, FEATURES, FAST, CATEGORIES) for k in ("spend", "churn", "category")}


def _users(n: int = 50, seed: int = 3) -> pd.DataFrame:
    data, _ = synthetic_set(users=n, seed=seed, cutoffs=1)
    return data


def test_a_user_who_buys_more_is_predicted_to_spend_more(trained: dict) -> None:
    base = _users()
    low = base.assign(purchases_90d=1, spend_90d=30.0, days_since_last_purchase=40.0)
    high = base.assign(purchases_90d=12, spend_90d=360.0, days_since_last_purchase=3.0)
    spend = trained["spend"]
    lo, hi = spend.predict(matrix(low, FEATURES)), spend.predict(matrix(high, FEATURES))
    assert (hi > lo).mean() >= 0.9
    assert hi.mean() > 2 * lo.mean()


def test_churn_risk_rises_with_inactivity(trained: dict) -> None:
    base = _users().assign(purchases_90d=3, spend_90d=90.0)
    risks = [trained["churn"].predict(matrix(base.assign(days_since_last_purchase=d), FEATURES)).mean()
             for d in (1.0, 20.0, 60.0, 89.0)]
    assert risks[-1] > risks[0]
    assert all(b >= a - 0.02 for a, b in zip(risks, risks[1:]))  # never clearly falls as inactivity grows


def test_predictions_are_invariant_to_the_order_of_events(trained: dict) -> None:
    rng = np.random.default_rng(4)
    n = 2000
    t0 = pd.Timestamp("2026-06-01", tz="UTC")
    events = pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in rng.integers(0, 40, n)],
        "timestamp": t0 + pd.to_timedelta(rng.integers(0, 60 * 86400, n), unit="s"),
        "event_type": rng.choice(["page_view", "product_view", "purchase", "add_to_cart"], n),
        "amount": rng.gamma(2, 20, n), "channel": "web", "category": rng.choice(CATEGORIES, n),
        "session_id": [f"s{i}" for i in rng.integers(0, 300, n)], "device": "mobile",
    })
    shuffled = events.sample(frac=1.0, random_state=9).reset_index(drop=True)
    cfg = FeatureConfig(categories=CATEGORIES)

    def predict(ev: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        snaps = compute_snapshots(ev, cfg, dense=True)  # every user at the newest snapshot, with recency
        last = snaps.loc[snaps["event_timestamp"] == snaps["event_timestamp"].max()].sort_values("user_id")
        x = matrix(last, FEATURES)
        preds = np.column_stack([trained[k].predict(x) if k != "category" else trained[k].predict(x).argmax(1)
                                 for k in ("spend", "churn", "category")])
        labels = make_labels(ev, [t0 + pd.Timedelta(days=30)], 30, CATEGORIES).sort_values("user_id")
        return preds, labels.reset_index(drop=True)

    (p1, l1), (p2, l2) = predict(events), predict(shuffled)
    np.testing.assert_array_equal(p1, p2)
    pd.testing.assert_frame_equal(l1, l2)


def test_drivers_are_the_contributions_that_sum_to_the_raw_score(trained: dict) -> None:
    x = matrix(_users(10), FEATURES)
    for key in ("spend", "churn", "category"):
        contrib = contributions(trained[key], x)
        assert contrib.shape == (10, len(FEATURES) + 1)
        raw = trained[key].predict(x, raw_score=True)
        if raw.ndim == 2:
            raw = raw[np.arange(10), trained[key].predict(x).argmax(1)]
        np.testing.assert_allclose(contrib.sum(axis=1), raw, rtol=1e-6, atol=1e-6)
    drivers = top_drivers(trained["spend"], x, FEATURES, k=3)
    assert len(drivers) == 10 and all(len(d) == 3 for d in drivers)
    assert {d["feature"] for row in drivers for d in row} <= set(FEATURES)


def test_churn_probabilities_are_calibrated_on_held_out_cutoff() -> None:
    data, split = synthetic_set(users=1500, seed=2)
    train, evaluation = split_frames(data, split)
    booster = fit(target("churn"), train, FEATURES, FAST, CATEGORIES)
    metrics = target("churn").metrics(evaluation["label_churn"].to_numpy(float), booster.predict(matrix(evaluation, FEATURES)))
    assert metrics["ece"] < 0.05 and abs(metrics["calibration_gap"]) < 0.03
    assert metrics["roc_auc"] > 0.7


def test_the_same_rows_in_another_order_give_the_same_model() -> None:
    """Retrieval promises no row order and bagging samples rows by position: after the canonical order a
    shuffled training set fits the same booster (same predictions, bit for bit)."""
    from training.train import canonical_order

    data, split = synthetic_set(users=300, seed=5)
    shuffled = data.sample(frac=1.0, random_state=11)
    assert not shuffled.index.equals(data.index)
    probe = matrix(_users(), FEATURES)
    fits = []
    for frame in (data, shuffled):
        train, _ = split_frames(canonical_order(frame), split)
        fits.append(fit(target("spend"), train, FEATURES, FAST, CATEGORIES).predict(probe))
    assert np.array_equal(fits[0], fits[1])
    train, _ = split_frames(shuffled, split)  # the order matters without it: the guard is needed
    unordered = fit(target("spend"), train, FEATURES, FAST, CATEGORIES).predict(probe)
    assert not np.array_equal(fits[0], unordered)
