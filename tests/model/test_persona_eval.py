"""Persona recovery (ARI) and switch pick-up with exponential smoothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from persona.config import SegmentRule
from training.persona_eval import recovery, switch_pickup, true_persona_at

T0 = pd.Timestamp("2026-09-01", tz="UTC")
TRUTH = pd.DataFrame({"user_id": ["a", "b", "c"], "persona": ["big", "big", "small"],
                      "persona_start": ["small", "big", "small"],
                      "switch_day": ["2026-09-05", "", ""], "signup_date": ["2026-01-01"] * 3})


class Linear:
    """A stand-in booster: predicts one feature column (the test is about the replay, not the model)."""

    def __init__(self, column: int, scale: float = 1.0) -> None:
        self.column, self.scale = column, scale

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.column] * self.scale


def test_true_persona_follows_the_switch_day() -> None:
    before = true_persona_at(TRUTH, T0)
    after = true_persona_at(TRUTH, T0 + pd.Timedelta(days=10))
    assert before["a"] == "small" and after["a"] == "big" and after["b"] == "big"


def test_ari_ignores_names_and_same_name_does_not() -> None:
    truth = pd.Series(["x", "x", "y", "y"], index=list("abcd"))
    r = recovery(pd.Series(["p", "p", "q", "q"], index=list("abcd")), truth)
    assert r["ari"] == 1.0 and r["same_name"] == 0.0


def test_heavier_smoothing_picks_a_switch_up_later() -> None:
    rules = [SegmentRule(name="big", all=[{"field": "predicted_spend", "op": ">=", "value": 100}]),
             SegmentRule(name="small", all=[])]
    days = pd.date_range(T0, periods=20, freq="D")
    spend = np.where(days >= pd.Timestamp("2026-09-05", tz="UTC"), 200.0, 10.0)
    snaps = pd.DataFrame({"user_id": "a", "event_timestamp": days, "f": spend, "g": 0.1})
    models = {"spend": Linear(0), "churn": Linear(1)}
    fast = switch_pickup(models, snaps, TRUTH, rules, ["f", "g"], alpha=1.0)
    slow = switch_pickup(models, snaps, TRUTH, rules, ["f", "g"], alpha=0.3)
    assert fast.switched_users == 1 and fast.picked_up == 1 and fast.median_days == 0
    assert slow.median_days > fast.median_days
