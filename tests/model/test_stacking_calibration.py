"""BTYD stacking leaks nothing from at or after a cutoff; calibration written into the booster does what
it says; the refit cutoffs lie between the training cutoffs and the evaluation cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from base.config import FeatureConfig, TrainingConfig
from features.compute import compute_snapshots
from training.calibration import apply_calibration, fit_calibration, reliability
from training.labels import make_labels, rolling_cutoffs
from training.stacking import STACK_FEATURES, stack
from training.targets import target

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _events(seed: int, users: int = 150, days: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1 / 25, users)
    rows = []
    for u in range(users):
        n = rng.poisson(rate[u] * days)
        for t in rng.integers(0, days * 86400, n):
            rows.append({"user_id": f"u{u:03d}", "timestamp": T0 + pd.Timedelta(seconds=int(t)),
                         "event_type": "purchase", "amount": float(rng.gamma(4, 15)), "channel": "web",
                         "category": "home", "session_id": None})
        rows.append({"user_id": f"u{u:03d}", "timestamp": T0 + pd.Timedelta(days=int(rng.integers(0, 20))),
                     "event_type": "page_view", "amount": None, "channel": "web", "category": None,
                     "session_id": None})
    return pd.DataFrame(rows)


def _training_frame(events: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    snaps = compute_snapshots(events, FeatureConfig(), dense=True)  # a row per user and cutoff (the oracle)
    labels = make_labels(events, cutoffs, 30)
    return labels.merge(snaps, on=["user_id", "event_timestamp"], how="left")


def test_stacked_features_at_a_cutoff_ignore_everything_at_or_after_it() -> None:
    events = _events(1)
    cutoffs = [T0 + pd.Timedelta(days=d) for d in (100, 140)]
    full, params = stack(_training_frame(events, cutoffs), 30)
    first = full.loc[full["event_timestamp"] == cutoffs[0]].set_index("user_id")
    assert set(params) == {"2026-04-11", "2026-05-21"} and params["2026-04-11"] != params["2026-05-21"]
    # rewrite the future: every event at or after the first cutoff replaced by other draws
    other = _events(2)
    changed = pd.concat([events.loc[events["timestamp"] < cutoffs[0]],
                         other.loc[other["timestamp"] >= cutoffs[0]]], ignore_index=True)
    again = stack(_training_frame(changed, cutoffs), 30)[0]
    second = again.loc[again["event_timestamp"] == cutoffs[0]].set_index("user_id").loc[first.index]
    assert not np.allclose(first["label_spend"], second["label_spend"])  # the future did change
    for col in STACK_FEATURES:
        np.testing.assert_allclose(first[col], second[col], rtol=1e-9, err_msg=col)
    later = full.loc[full["event_timestamp"] == cutoffs[1]]
    assert later["btyd_expected_purchases"].std() > 0 and (full["btyd_p_alive"].between(0, 1)).all()


def test_stacked_spend_ranks_future_spend() -> None:
    events = _events(3, users=300)
    frame = stack(_training_frame(events, [T0 + pd.Timedelta(days=150)]), 30)[0]
    corr = np.corrcoef(frame["btyd_expected_spend"], frame["label_spend"])[0, 1]
    assert corr > 0.3


def test_calibration_is_written_into_the_booster() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = (x[:, 0] + rng.normal(size=500) > 0).astype(float)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7}, lgb.Dataset(x, y), 20)
    raw = booster.predict(x, raw_score=True)
    cal = apply_calibration(booster, 0.5, -0.3)
    np.testing.assert_allclose(cal.predict(x, raw_score=True), 0.5 * raw - 0.3, atol=1e-9)
    np.testing.assert_allclose(cal.predict(x), 1 / (1 + np.exp(-(0.5 * raw - 0.3))), atol=1e-9)
    curve = reliability(y, cal.predict(x))
    assert sum(curve["rows"]) == 500 and all(0 <= v <= 1 for v in curve["observed"])


def test_level_calibration_puts_the_newest_cutoffs_total_on_target() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for k, level in enumerate((1.0, 1.0, 0.5)):  # spend halves at the newest training cutoff
        x = rng.normal(size=400)
        rows.append(pd.DataFrame({"event_timestamp": T0 + pd.Timedelta(days=7 * k), "f": x,
                                  "label_spend": rng.gamma(2, 10 * level * np.exp(0.3 * x))}))
    train = pd.concat(rows, ignore_index=True)
    cfg = TrainingConfig(num_boost_round=30, early_stopping_rounds=0, num_leaves=4, min_data_in_leaf=20)
    from training.train import fit

    booster = fit(target("spend"), train, ["f"], cfg)
    scale, shift = fit_calibration(target("spend"), booster, train, ["f"], cfg, fit)
    assert scale == 1.0 and shift == pytest.approx(np.log(0.5), abs=0.2)


def test_refit_cutoffs_lie_between_the_training_and_evaluation_cutoffs() -> None:
    cfg = TrainingConfig(horizon_days=30, train_cutoffs=4, cutoff_step_days=7)
    split = rolling_cutoffs(T0 + pd.Timedelta(days=200), T0, cfg)
    assert split.refit and max(split.train) < min(split.refit) and max(split.refit) < split.evaluation
    assert all(c + pd.Timedelta(days=30) <= T0 + pd.Timedelta(days=200) for c in split.all)  # labelled
    wide = rolling_cutoffs(T0 + pd.Timedelta(days=200), T0, cfg.model_copy(update={"cutoff_spread": "whole_history"}))
    assert min(wide.train) - T0 < pd.Timedelta(days=30) < min(split.train) - T0
    off = rolling_cutoffs(T0 + pd.Timedelta(days=200), T0, cfg.model_copy(update={"refit_on_newest": False}))
    assert off.refit == [] and off.all == [*off.train, off.evaluation]


@pytest.mark.parametrize("with_offset", [False, True])
def test_served_stacked_features_and_predictions_equal_the_training_time_ones(mlflow_settings, settings,  # noqa: ANN001
                                                                               with_offset: bool) -> None:
    """A model trained with stacking serves: the scorer computes each user's stacked features from the
    lifetime features with the parameters logged on the version, equal to the training-time features of
    the same user and cutoff (the newest), and so the served refit's predictions equal its own on the
    stacked training rows (with ``btyd_offset``: boosting from the BTYD prediction, which the scorer adds);
    the serving check accepts it on the lifetime features alone."""
    from scoring.scorer import PersonaScorer
    from tests.model.conftest import FAST
    from training.baselines import history_summary
    from training.champions import ServingCheck, load_models
    from training.evaluation import matrix
    from training.labels import Split
    from training.stacking import INPUTS, predict_frame, with_stacking
    from training.train import train_all, with_history

    events = _events(4, users=200)
    cutoffs = [T0 + pd.Timedelta(days=d) for d in (100, 120, 140, 160)]
    frame = with_history(_training_frame(events, cutoffs), history_summary(events, cutoffs, 30))
    features = [c for c in frame.columns if c not in ("user_id", "event_timestamp") and
                not c.startswith(("label_", "hist_")) and pd.api.types.is_numeric_dtype(frame[c])]
    assert set(INPUTS) <= set(features)
    cfg = FAST.model_copy(update={"stacking": True, "horizon_days": 30, "btyd_offset": with_offset})
    summary = train_all(frame, features, Split(train=cutoffs[:-1], evaluation=cutoffs[-1]), cfg,
                        mlflow_settings, categories=["home"], gate=False)
    models = load_models(mlflow_settings, {m.target: m.ref for m in summary.models if m.target in ("spend", "churn")})
    assert all(m.stacking and m.stacking["horizon_days"] == 30 for m in models.values())
    assert all(bool(m.stacking.get("offset")) == with_offset for m in models.values())
    scorer = PersonaScorer(models, settings)
    assert not set(STACK_FEATURES) & set(scorer.features) and set(STACK_FEATURES) <= set(scorer.names)
    assert ServingCheck(frozenset(features)).reasons("spend", models["spend"].booster) == []

    trained = with_stacking(frame, 30)
    newest = trained.loc[trained["event_timestamp"] == cutoffs[-1]].reset_index(drop=True)
    x = scorer.frame_matrix(newest.drop(columns=list(STACK_FEATURES)))
    for key, model in models.items():
        served = scorer.extended(key, x)
        for f in STACK_FEATURES:
            np.testing.assert_allclose(served[:, scorer.names.index(f)], newest[f], rtol=1e-12, err_msg=f)
        x_own = matrix(newest, model.features)
        own = predict_frame(key, model.booster, x_own, newest, with_offset)
        np.testing.assert_allclose(scorer.predict(x, [key])[key], own, rtol=1e-12)
        few = scorer.predict(x[:3], [key])[key]  # a request's few users: LightGBM's single-row path
        np.testing.assert_allclose(few, own[:3], rtol=1e-12)
        assert np.allclose(own, model.booster.predict(x_own)) != with_offset  # the offset is not a no-op
    assert newest["btyd_expected_spend"].std() > 0
    records = scorer.score(newest["user_id"].tolist()[:5], x[:5], [1.0] * 5)
    assert all(r.drivers["spend"] for r in records)
