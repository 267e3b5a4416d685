"""Small synthetic training sets shaped like the Feast training set (features, labels, hist_* columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from base.config import MlflowSettings, SegmentRule, TrainingConfig
from training.labels import Split

CATEGORIES = ["home", "sports", "beauty"]
FEATURES = ["purchases_90d", "spend_90d", "days_since_last_purchase", "product_views_30d",
            *[f"affinity_{c}" for c in CATEGORIES]]
T0 = pd.Timestamp("2026-06-01", tz="UTC")
RULES = [
    SegmentRule(name="big", all=[{"field": "predicted_spend", "op": ">=", "value": 60}]),
    SegmentRule(name="risky", all=[{"field": "churn_risk", "op": ">=", "value": 0.6}]),
    SegmentRule(name="rest", all=[]),
]
FAST = TrainingConfig(horizon_days=30, train_cutoffs=4, cutoff_step_days=7, num_boost_round=60,
                      learning_rate=0.1, num_leaves=7, min_data_in_leaf=20, early_stopping_rounds=10)


def synthetic_set(users: int = 600, seed: int = 0, cutoffs: int = 5) -> tuple[pd.DataFrame, Split]:
    """Users with a latent purchase rate and favourite category; features see it, the hist_* baselines barely."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(1.2, 0.04, users)  # purchases per day
    basket = rng.lognormal(3.3, 0.4, users)
    fav = rng.integers(0, len(CATEGORIES), users)
    times = [T0 + pd.Timedelta(days=7 * i) for i in range(cutoffs)]
    frames = []
    for cutoff in times:
        p90 = rng.poisson(rate * 90)
        future = rng.poisson(rate * 30)
        aff = rng.dirichlet(np.ones(len(CATEGORIES)), users) * 0.4
        aff[np.arange(users), fav] += 0.6
        top = np.where(future > 0, np.where(rng.random(users) < 0.8, fav, rng.integers(0, len(CATEGORIES), users)), -1)
        frame = pd.DataFrame({
            "user_id": [f"u{i:05d}" for i in range(users)],
            "event_timestamp": cutoff,
            "label_spend": (future * basket).round(2),
            "label_churn": (future == 0).astype(int),
            "label_category": top,
            "purchases_90d": p90,
            "spend_90d": (p90 * basket).round(2),
            "days_since_last_purchase": np.where(p90 > 0, rng.exponential(1 / np.maximum(rate, 1e-3)).clip(0, 90), np.nan),
            "product_views_30d": rng.poisson(rate * 300),
            **{f"affinity_{c}": aff[:, j] for j, c in enumerate(CATEGORIES)},
        })
        seen = rng.poisson(rate * 10)  # the baselines only get a short, noisy look at the past
        frame = frame.assign(hist_x=np.maximum(seen - 1, 0).astype(float), hist_t_x=np.where(seen > 1, 5.0, 0.0),
                             hist_T=10.0, hist_mean_value=np.where(seen > 1, basket, 0.0),
                             hist_last_window_spend=(seen * basket * 3).round(2),
                             hist_last_window_purchases=seen.astype(float), hist_spend_total=seen * basket,
                             hist_purchase_days=seen.astype(float), hist_tenure_days=10.0)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), Split(train=times[:-1], evaluation=times[-1])


@pytest.fixture
def mlflow_settings(tmp_path: Path) -> MlflowSettings:
    """A real SQLite tracking and registry store in a temporary folder."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowSettings(tracking_uri=uri, registry_uri=uri, artifact_location=(tmp_path / "artifacts").as_uri(),
                          experiment="persona-test")
