"""Labels and cutoffs: a time split whose label windows never reach into evaluation."""

import pandas as pd
import pytest

from base.config import TrainingConfig
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


def test_category_label_is_the_most_bought_category_in_the_horizon() -> None:
    c = T0 + pd.Timedelta(days=10)
    ev = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "u2"],
        "timestamp": [T0, c + pd.Timedelta(days=1), c + pd.Timedelta(days=2), c - pd.Timedelta(days=1), T0],
        "event_type": ["page_view", "purchase", "purchase", "purchase", "page_view"],
        "amount": [None, 5.0, 7.0, 9.0, None],
        "category": [None, "home", "home", "sports", None],
    })
    labels = make_labels(ev, [c], 30, ["sports", "home"]).set_index("user_id")
    assert labels.loc["u1", "label_category"] == 1  # home, not the sports purchase before the cutoff
    assert labels.loc["u2", "label_category"] == -1  # bought nothing


def test_evaluation_never_sees_the_future_of_its_training_rows() -> None:
    """Leakage proof: rewriting every event at or after the evaluation cutoff changes no training row,
    no training label and none of the pre-cutoff history the baselines use; only evaluation labels move."""
    import numpy as np

    from training.baselines import history_summary
    from training.train import split_frames

    cfg = TrainingConfig(horizon_days=30, train_cutoffs=4, cutoff_step_days=7)
    rng = np.random.default_rng(0)
    n = 3000
    ev = pd.DataFrame({
        "user_id": [f"u{i:04d}" for i in rng.integers(0, 80, n)],
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, 120 * 86400, n), unit="s"),
        "event_type": rng.choice(["page_view", "purchase"], n),
        "amount": rng.gamma(2, 20, n),
        "category": rng.choice(["home", "sports"], n),
    })
    split = rolling_cutoffs(T0 + pd.Timedelta(days=120), T0, cfg)

    def frames(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        labels = make_labels(events, split.all, 30, ["home", "sports"])
        hist = history_summary(events, split.all, 30)
        data = labels.merge(hist, on=["user_id", "event_timestamp"])
        return split_frames(data, split)

    future = ev["timestamp"] >= split.evaluation
    changed = ev.copy()
    changed.loc[future, "amount"] *= 100
    changed.loc[future, "event_type"] = "purchase"
    (train_a, eval_a), (train_b, eval_b) = frames(ev), frames(changed)
    pd.testing.assert_frame_equal(train_a, train_b)
    hist_cols = [c for c in eval_a if c.startswith("hist_")]
    pd.testing.assert_frame_equal(eval_a[hist_cols], eval_b[hist_cols])
    assert not eval_a["label_spend"].equals(eval_b["label_spend"])  # the change did reach evaluation labels
    assert set(train_a["event_timestamp"]).isdisjoint(set(eval_a["event_timestamp"]))
