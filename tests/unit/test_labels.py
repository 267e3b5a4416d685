"""Labels and cutoffs: a time split whose label windows never reach into evaluation."""

import pandas as pd
import pytest

from persona.config import TrainingConfig
from training.labels import make_labels, rolling_cutoffs

T0 = pd.Timestamp("2026-07-01", tz="UTC")


def test_train_label_windows_end_before_evaluation_cutoff() -> None:
    cfg = TrainingConfig(horizon_days=30, train_cutoffs=6, cutoff_step_days=7)
    split = rolling_cutoffs(T0 + pd.Timedelta(days=120), T0, cfg)
    assert split.evaluation == T0 + pd.Timedelta(days=90)
    assert all(c + pd.Timedelta(days=30) <= split.evaluation for c in split.train)
    assert split.train == sorted(split.train) and len(split.train) == 6


def test_too_short_history_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too short"):
        rolling_cutoffs(T0 + pd.Timedelta(days=40), T0, TrainingConfig(horizon_days=30))


def test_labels_count_only_the_horizon_after_the_cutoff() -> None:
    c = T0 + pd.Timedelta(days=10)
    ev = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "u2", "u3"],
        "timestamp": [T0, c - pd.Timedelta(seconds=1), c, c + pd.Timedelta(days=30), T0, c + pd.Timedelta(days=1)],
        "event_type": ["page_view", "purchase", "purchase", "purchase", "page_view", "purchase"],
        "amount": [None, 5.0, 7.0, 100.0, None, 50.0],
    })
    labels = make_labels(ev, [c], 30).set_index("user_id")
    assert labels.loc["u1", "label_spend"] == 7.0 and labels.loc["u1", "label_churn"] == 0
    assert labels.loc["u2", "label_spend"] == 0.0 and labels.loc["u2", "label_churn"] == 1
    assert "u3" not in labels.index  # not seen before the cutoff
