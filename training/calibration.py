"""Calibration fitted on the newest training cutoff: the level of amounts, the probabilities' scale.

The trees cannot extrapolate a level that drifts between cutoffs (a declining spend rate): the newest
training cutoff, predicted by a fit on the older ones (the same split that chooses the rounds), shows by
how much the level is off. Amounts (log link) get a factor, probabilities (logit link) a Platt scaling
(slope and intercept on the raw score); both are written into the booster itself, as a scale of every
leaf and a shift of the first tree's leaves, so a calibrated model is still a plain LightGBM model that
the registry, the scorer and ``pred_contrib`` handle as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from base.config import TrainingConfig
from training.evaluation import matrix
from training.targets import Target


def calibration_split(target: Target, train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(older training cutoffs, the newest training cutoff) of a target's rows."""
    rows = target.rows(train)
    ts = pd.to_datetime(rows["event_timestamp"], utc=True)
    return rows.loc[ts < ts.max()], rows.loc[ts == ts.max()]


Fit = Callable[..., Any]
"""training.train.fit: (target, rows, features, cfg, categories, rounds=...) -> booster."""


def fit_calibration(target: Target, booster: Any, train: pd.DataFrame, features: list[str], cfg: TrainingConfig,
                    fit: Fit | None = None, categories: Sequence[str] = ()) -> tuple[float, float] | None:
    """(scale, shift) of the raw score, from a fit with the booster's rounds (``fit``, or LightGBM with the
    booster's own parameters) on the older training cutoffs, scored on the newest (None for targets
    without a link to calibrate or without two cutoffs)."""
    import lightgbm as lgb

    from training.refit import rounds_of

    if fit is None:
        def fit(t: Target, rows: pd.DataFrame, feats: list[str], c: TrainingConfig, cats: Sequence[str] = (),
                rounds: int = 1) -> Any:
            data = lgb.Dataset(matrix(rows, feats), label=rows[t.label].to_numpy(dtype="float64"))
            return lgb.train(dict(booster.params), data, num_boost_round=rounds)

    kind = target.objective["objective"]
    older, newest = calibration_split(target, train)
    if kind not in ("tweedie", "binary") or older.empty or newest.empty:
        return None
    probe = fit(target, older, features, cfg, categories, rounds=rounds_of(booster))
    raw = np.asarray(probe.predict(matrix(newest, features), raw_score=True))
    y = newest[target.label].to_numpy(dtype=float)
    if kind == "tweedie":  # log link: one factor puts the predicted total on the actual one
        total = float(np.exp(raw).sum())
        return (1.0, float(np.log(max(y.sum(), 1e-9) / total))) if total > 0 else None
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return None
    lr = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), y.astype(int))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def apply_calibration(booster: Any, scale: float, shift: float) -> Any:
    """A booster whose raw score is ``scale * raw + shift`` (every leaf scaled, the first tree shifted)."""
    import lightgbm as lgb

    out, first = [], True
    for line in booster.model_to_string().splitlines():
        if line.startswith("tree_sizes="):  # byte sizes of the trees: no longer true, and optional
            continue
        if line.startswith("leaf_value="):
            values = np.array(line[len("leaf_value="):].split(), dtype=float) * scale
            if first:
                values = values + shift
                first = False
            line = "leaf_value=" + " ".join(repr(float(v)) for v in values)
        out.append(line)
    calibrated = lgb.Booster(model_str="\n".join(out) + "\n")
    calibrated.params = dict(booster.params)
    return calibrated


def calibrate_predictions(target: Target, booster: Any, train: pd.DataFrame, evaluation: pd.DataFrame,
                          features: list[str], cfg: TrainingConfig, fit: Fit | None = None) -> np.ndarray:
    """Predictions of the calibrated booster on ``evaluation`` (uncalibrated when nothing to fit)."""
    found = fit_calibration(target, booster, train, features, cfg, fit)
    model = apply_calibration(booster, *found) if found else booster
    return np.asarray(model.predict(matrix(evaluation, features)))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Reliability curve: per equal-width bin, the mean prediction, the observed rate and the rows."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out: dict[str, list[float]] = {"predicted": [], "observed": [], "rows": []}
    for b in range(bins):
        m = idx == b
        if m.any():
            out["predicted"].append(float(p[m].mean()))
            out["observed"].append(float(y[m].mean()))
            out["rows"].append(float(m.sum()))
    return out
