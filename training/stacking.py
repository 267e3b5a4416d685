"""BG/NBD + Gamma-Gamma predictions as model features (stacking), fitted at each cutoff on data before it.

For each cutoff of a training set, both models are fitted by maximum likelihood on that cutoff's rows
only, from their lifetime features (features/lifetime.py: frequency, recency, age T and the repeat
purchases' mean value, all computed from events before the cutoff), and their predictions over the
horizon become four features. Nothing at or after a cutoff enters its fit, so the features leak no
label (tests/model/test_stacking.py). The fitted parameters of each cutoff are returned with the frame;
the newest are what a served model would use: they are logged as ``stacking.*`` run parameters and the
scorer (scoring/scorer.py) recomputes the four features from a user's lifetime features with
:func:`stacked_columns` at scoring time, so online, batch and evaluation scores use the same code as
training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd

STACK_FEATURES = ("btyd_expected_purchases", "btyd_p_alive", "btyd_p_no_purchase", "btyd_expected_spend")
INPUTS = ("btyd_frequency", "btyd_recency_days", "btyd_age_days", "tenure_days", "btyd_monetary")
"""The lifetime features the stacked features are computed from (all served online)."""
PARAM_PREFIX = "stacking."
"""Run parameters holding the newest cutoff's fitted BTYD parameters and the horizon."""


def btyd_inputs(frame: pd.DataFrame | Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """(x, t_x, T, mean value) from lifetime features (a frame, or columns as arrays); customers without a
    purchase have x = 0 and T = days since first seen (as training/baselines.py's history summary)."""
    x = np.asarray(frame["btyd_frequency"], dtype=float)
    t_x = np.nan_to_num(np.asarray(frame["btyd_recency_days"], dtype=float))
    age = np.asarray(frame["btyd_age_days"], dtype=float)
    T = np.where(np.isfinite(age), age, np.asarray(frame["tenure_days"], dtype=float) + 1.0)
    return x, t_x, np.maximum(T, 1.0), np.asarray(frame["btyd_monetary"], dtype=float)


def predictions_from(params: dict[str, float], frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """:data:`STACK_FEATURES` of ``frame``'s rows (its :data:`INPUTS` columns) from fitted parameters
    (``bgnbd_*``, ``gamma_gamma_*``): the one computation for training and scoring."""
    return pd.DataFrame(stacked_columns(params, frame, horizon_days), index=frame.index)


def stacked_columns(params: dict[str, float], columns: pd.DataFrame | Mapping[str, np.ndarray],
                    horizon_days: int) -> dict[str, np.ndarray]:
    """:func:`predictions_from` as arrays, from a frame or from columns as arrays (the scorer's rows, no
    frame built per request)."""
    from training.btyd import BgNbd, GammaGamma

    bg = BgNbd(**{k: float(params[f"bgnbd_{k}"]) for k in ("r", "alpha", "a", "b")})
    gg = GammaGamma(**{k: float(params[f"gamma_gamma_{k}"]) for k in ("p", "q", "v")})
    x, t_x, T, m = btyd_inputs(columns)
    with np.errstate(all="ignore"):
        purchases = bg.expected_purchases(horizon_days, x, t_x, T)
        return {
            "btyd_expected_purchases": purchases,
            "btyd_p_alive": bg._p_alive(x, t_x, T),
            "btyd_p_no_purchase": bg.prob_no_purchase(horizon_days, x, t_x, T),
            "btyd_expected_spend": purchases * gg.expected_value(x, m),
        }


def btyd_predictions(frame: pd.DataFrame, horizon_days: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fit BG/NBD and Gamma-Gamma on ``frame`` (one cutoff's rows) and predict over the horizon."""
    from training.btyd import fit_bgnbd, fit_gamma_gamma

    x, t_x, T, m = btyd_inputs(frame)
    bg = fit_bgnbd(x, t_x, T)
    gg = fit_gamma_gamma(x, m)
    params = {**{f"bgnbd_{k}": float(v) for k, v in asdict(bg).items()},
              **{f"gamma_gamma_{k}": float(v) for k, v in asdict(gg).items()}}
    return predictions_from(params, frame, horizon_days), params


def run_params(params: dict[str, float], horizon_days: int) -> dict[str, str]:
    """The newest cutoff's parameters as run parameters (``repr``: a float reads back exactly)."""
    return {**{f"{PARAM_PREFIX}{k}": repr(float(v)) for k, v in params.items()},
            f"{PARAM_PREFIX}horizon_days": str(int(horizon_days))}


def from_run_params(run_params: dict[str, str]) -> dict[str, float] | None:
    """The stacking parameters (with ``horizon_days``) logged by :func:`run_params`; None without stacking."""
    out = {k[len(PARAM_PREFIX):]: float(v) for k, v in run_params.items() if k.startswith(PARAM_PREFIX)}
    return out or None


def with_stacking(dataset: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """The training set with :data:`STACK_FEATURES`, each cutoff's from a fit on that cutoff's rows only."""
    return stack(dataset, horizon_days)[0]


def stack(dataset: pd.DataFrame, horizon_days: int) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """:func:`with_stacking` and the fitted parameters per cutoff (``YYYY-MM-DD`` -> params)."""
    parts, params = [], {}
    ts = pd.to_datetime(dataset["event_timestamp"], utc=True)
    for cutoff in sorted(ts.unique()):
        rows = dataset.loc[ts == cutoff]
        pred, fitted = btyd_predictions(rows, horizon_days)
        parts.append(pred)
        params[f"{pd.Timestamp(cutoff):%Y-%m-%d}"] = fitted
    return dataset.join(pd.concat(parts)), params


OFFSET_FEATURES = {"spend": "btyd_expected_spend", "churn": "btyd_p_no_purchase"}
"""With ``training.btyd_offset``: the stacked feature each target's boosting starts from (its raw scale:
log expected spend for the tweedie spend model, logit P(no purchase) for the churn model)."""


def offset(key: str, values: np.ndarray) -> np.ndarray:
    """The raw-scale start of target ``key`` from its :data:`OFFSET_FEATURES` values."""
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0 if key == "spend" else 0.5)
    if key == "spend":
        return np.log(np.maximum(v, 1e-3))
    p = np.clip(v, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def uses_offset(key: str, enabled: bool | float | None) -> bool:
    """Whether target ``key`` boosts from the BTYD prediction (``enabled``: the config flag or logged param)."""
    return bool(enabled) and key in OFFSET_FEATURES


def frame_offset(key: str, frame: pd.DataFrame, enabled: bool | float | None) -> np.ndarray | None:
    """The ``init_score`` of ``frame``'s rows for target ``key`` (None without an offset)."""
    return offset(key, frame[OFFSET_FEATURES[key]].to_numpy(dtype=float)) if uses_offset(key, enabled) else None


def linked(key: str, raw: np.ndarray) -> np.ndarray:
    """Raw scores (offset included) on the output scale: exp for spend, the logistic for churn."""
    return np.exp(raw) if key == "spend" else 1.0 / (1.0 + np.exp(-raw))


def predict_frame(key: str, booster: object, x: np.ndarray, frame: pd.DataFrame,
                  enabled: bool | float | None) -> np.ndarray:
    """A booster's predictions for ``frame``'s rows (matrix ``x``), with the BTYD offset when it has one."""
    start = frame_offset(key, frame, enabled)
    if start is None:
        return np.asarray(booster.predict(x))  # type: ignore[attr-defined]
    return linked(key, np.asarray(booster.predict(x, raw_score=True)) + start)  # type: ignore[attr-defined]
