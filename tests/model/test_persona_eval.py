"""Persona recovery (ARI) and switch pick-up with exponential smoothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from base.config import SegmentRule, Settings
from scoring.evaluation import recovery, switch_pickup, true_persona_at
from scoring.scorer import PersonaScorer
from training.champions import LoadedModel
from training.registry import ModelRef

T0 = pd.Timestamp("2026-09-01", tz="UTC")
TRUTH = pd.DataFrame({"user_id": ["a", "b", "c"], "persona": ["big", "big", "small"],
                      "persona_start": ["small", "big", "small"],
                      "switch_day": ["2026-09-05", "", ""], "signup_date": ["2026-01-01"] * 3})


class Linear:
    """A stand-in booster: predicts one feature column (the test is about the replay, not the model)."""

    def __init__(self, column: int, scale: float = 1.0) -> None:
        self.column, self.scale = column, scale

    def predict(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        return x[:, self.column] * self.scale


def test_true_persona_follows_the_switch_day() -> None:
    before = true_persona_at(TRUTH, T0)
    after = true_persona_at(TRUTH, T0 + pd.Timedelta(days=10))
    assert before["a"] == "small" and after["a"] == "big" and after["b"] == "big"


def test_ari_ignores_names_and_same_name_does_not() -> None:
    truth = pd.Series(["x", "x", "y", "y"], index=list("abcd"))
    r = recovery(pd.Series(["p", "p", "q", "q"], index=list("abcd")), truth)
    assert r["ari"] == 1.0 and r["same_name"] == 0.0


def test_heavier_smoothing_picks_a_switch_up_later(settings: Settings) -> None:
    rules = [SegmentRule(name="big", all=[{"field": "predicted_spend", "op": ">=", "value": 100}]),
             SegmentRule(name="small", all=[])]
    days = pd.date_range(T0, periods=20, freq="D")
    spend = np.where(days >= pd.Timestamp("2026-09-05", tz="UTC"), 200.0, 10.0)
    snaps = pd.DataFrame({"user_id": "a", "event_timestamp": days, "f": spend, "g": 0.1})
    models = {key: LoadedModel(key, ModelRef(f"persona-{key}", "1", "r"), Linear(i), ["f", "g"], 0.0)
              for i, key in enumerate(("spend", "churn"))}
    scorer = PersonaScorer(models, settings.model_copy(update={"segments": rules}))
    fast = switch_pickup(scorer, snaps, TRUTH, alpha=1.0)
    slow = switch_pickup(scorer, snaps, TRUTH, alpha=0.3)
    assert fast.switched_users == 1 and fast.picked_up == 1 and fast.median_days == 0
    assert slow.median_days > fast.median_days
