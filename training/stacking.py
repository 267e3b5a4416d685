"""BG/NBD + Gamma-Gamma predictions as model features (stacking), fitted at each cutoff on data before it.

For each cutoff of a training set, both models are fitted by maximum likelihood on that cutoff's rows
only, from their lifetime features (features/lifetime.py: frequency, recency, age T and the repeat
purchases' mean value, all computed from events before the cutoff), and their predictions over the
horizon become four features. Nothing at or after a cutoff enters its fit, so the features leak no
label (tests/model/test_stacking.py). The fitted parameters of each cutoff are returned with the frame;
the newest are what a served model would use: they are logged as ``stacking.*`` run parameters and the
scorer (scoring/scorer.py) recomputes the four features from a user's lifetime features with
:func:`predictions_from` at scoring time, so online, batch and evaluation scores use the same code as
training.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

STACK_FEATURES = ("btyd_expected_purchases", "btyd_p_alive", "btyd_p_no_purchase", "btyd_expected_spend")
INPUTS = ("btyd_frequency", "btyd_recency_days", "btyd_age_days", "tenure_days", "btyd_monetary")
"""The lifetime features the stacked features are computed from (all served online)."""
PARAM_PREFIX = "stacking."
"""Run parameters holding the newest cutoff's fitted BTYD parameters and the horizon."""


def btyd_inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T, mean value) from lifetime features; customers without a purchase have x = 0 and T =
    days since first seen (as training/baselines.py's history summary)."""
    x = frame["btyd_frequency"].to_numpy(dtype=float)
    t_x = np.nan_to_num(frame["btyd_recency_days"].to_numpy(dtype=float))
    age = frame["btyd_age_days"].to_numpy(dtype=float)
    T = np.where(np.isfinite(age), age, frame["tenure_days"].to_numpy(dtype=float) + 1.0)
    return x, t_x, np.maximum(T, 1.0), frame["btyd_monetary"].to_numpy(dtype=float)


def predictions_from(params: dict[str, float], frame: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """:data:`STACK_FEATURES` of ``frame``'s rows (its :data:`INPUTS` columns) from fitted parameters
    (``bgnbd_*``, ``gamma_gamma_*``): the one computation for training and scoring."""
    from training.btyd import BgNbd, GammaGamma

    bg = BgNbd(**{k: float(params[f"bgnbd_{k}"]) for k in ("r", "alpha", "a", "b")})
    gg = GammaGamma(**{k: float(params[f"gamma_gamma_{k}"]) for k in ("p", "q", "v")})
    x, t_x, T, m = btyd_inputs(frame)
    with np.errstate(all="ignore"):
        purchases = bg.expected_purchases(horizon_days, x, t_x, T)
        return pd.DataFrame({
            "btyd_expected_purchases": purchases,
            "btyd_p_alive": bg._p_alive(x, t_x, T),
            "btyd_p_no_purchase": bg.prob_no_purchase(horizon_days, x, t_x, T),
            "btyd_expected_spend": purchases * gg.expected_value(x, m),
        }, index=frame.index)


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
