"""PSI and the retraining decisions built on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from base.config import DriftConfig
from scoring.drift import DriftResult, decide, psi
from persona.update import retrain_decision
from tests.conftest import settings_in


def test_psi_is_zero_for_the_same_population_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 20_000)
    assert psi(ref, rng.normal(0, 1, 20_000)) < 0.01
    small, large = psi(ref, rng.normal(0.2, 1, 20_000)), psi(ref, rng.normal(1.0, 1, 20_000))
    assert 0.01 < small < 0.1 < 0.25 < large


def test_psi_handles_zero_heavy_counts_missing_values_and_constants() -> None:
    rng = np.random.default_rng(1)
    counts = np.where(rng.random(10_000) < 0.8, 0, rng.poisson(3, 10_000)).astype(float)
    assert psi(counts, counts[::-1]) < 1e-9
    busier = np.where(rng.random(10_000) < 0.4, 0, rng.poisson(3, 10_000)).astype(float)
    assert psi(counts, busier) > 0.25
    with_nan = counts.copy()
    with_nan[:3000] = np.nan  # missing values appear: their own bin shows it
    assert psi(counts, with_nan) > 0.25
    assert psi(np.ones(100), np.ones(50)) == pytest.approx(0.0)
    assert np.isnan(psi(np.array([]), np.ones(3)))


def test_decide_counts_features_and_outputs_against_the_thresholds() -> None:
    cfg = DriftConfig(alert=0.25, retrain_features=2, retrain_on_outputs=True)
    feats, outs, retrain, why = decide({"a": 0.3, "b": 0.1}, {"spend": 0.05}, cfg)
    assert feats == ["a"] and outs == [] and not retrain and "no drift" in why
    feats, outs, retrain, why = decide({"a": 0.3, "b": 0.5}, {"spend": 0.05}, cfg)
    assert feats == ["b", "a"] and retrain and "2 features drifted" in why
    _, outs, retrain, why = decide({"a": 0.0}, {"churn": 0.4}, cfg)
    assert outs == ["churn"] and retrain and "output" in why
    assert not decide({"a": 0.0}, {"churn": 0.4}, cfg.model_copy(update={"retrain_on_outputs": False}))[2]


def _drift(retrain: bool) -> DriftResult:
    return DriftResult(key="k", window="2026-11-05", reference=["2026-11-01"], champions={}, features={}, outputs={},
                       warn=0.1, alert=0.25, retrain=retrain, reason="x drifted" if retrain else "no drift")


def test_retrain_follows_the_schedule_and_drift_with_a_cooldown(tmp_path) -> None:  # noqa: ANN001
    s = settings_in(tmp_path)  # retrain_every_days 7, drift_cooldown_days 2
    day = pd.Timestamp("2026-11-10", tz="UTC")
    assert retrain_decision(s, day, None, None)[0]
    assert not retrain_decision(s, day, day, _drift(True))[0]  # trained on this very data
    go, why = retrain_decision(s, day, day - pd.Timedelta(days=7), None)
    assert go and why.startswith("schedule")
    go, why = retrain_decision(s, day, day - pd.Timedelta(days=3), _drift(True))
    assert go and why.startswith("drift")
    go, why = retrain_decision(s, day, day - pd.Timedelta(days=1), _drift(True))
    assert not go and "cooldown" in why
    assert not retrain_decision(s, day, day - pd.Timedelta(days=3), _drift(False))[0]
