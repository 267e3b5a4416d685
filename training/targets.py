"""The persona targets: what each model predicts, its LightGBM objective, its metrics and its baselines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

HIGHER_IS_BETTER = frozenset({"roc_auc", "pr_auc", "top_decile_capture", "top1_accuracy", "top3_hit_rate"})


def better(metric: str, new: float, old: float) -> float:
    """Relative improvement of ``new`` over ``old`` (positive = better), whatever the metric's direction."""
    if not np.isfinite(new) or not np.isfinite(old):
        return float("-inf") if not np.isfinite(new) else float("inf")
    gain = (new - old) if metric in HIGHER_IS_BETTER else (old - new)
    return float(gain / max(abs(old), 1e-12))


def spend_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, Tweedie deviance and the share of spend captured by the top predicted decile."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, mean_tweedie_deviance

    order = np.argsort(-pred, kind="stable")
    top = order[: max(1, len(order) // 10)]
    total = float(y.sum())
    return {
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "tweedie_deviance": float(mean_tweedie_deviance(y, np.maximum(pred, 1e-9), power=1.5)),
        "top_decile_capture": float(y[top].sum() / total) if total > 0 else 0.0,
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed - predicted| over equal-width probability bins, weighted by bin size."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in np.unique(idx):
        m = idx == b
        err += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(err)


def churn_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, calibration gap (mean predicted - observed) and ECE."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    p = np.clip(pred, 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) > 1
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "calibration_gap": float(p.mean() - y.mean()),
        "ece": expected_calibration_error(y, p),
    }


def category_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy, top-3 hit rate and multi-class log loss of the next category bought."""
    y = y.astype(int)
    k = pred.shape[1]
    top3 = np.argsort(-pred, axis=1)[:, : min(3, k)]
    p = np.clip(pred[np.arange(len(y)), y], 1e-9, 1.0)
    return {
        "top1_accuracy": float((top3[:, 0] == y).mean()),
        "top3_hit_rate": float((top3 == y[:, None]).any(axis=1).mean()),
        "log_loss": float(-np.log(p).mean()),
    }


Baselines = Callable[[pd.DataFrame, pd.DataFrame, int, list[str]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Target:
    """One persona model; every target goes through the same training path."""

    key: str
    label: str
    objective: dict[str, object]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    baselines: Baselines
    description: str
    labelled_only: bool = False  # train/evaluate only rows whose label is >= 0 (e.g. users who bought)

    def params(self, categories: list[str]) -> dict[str, object]:
        """The objective, with the class count for multi-class targets."""
        return {**self.objective, "num_class": len(categories)} if self.objective["objective"] == "multiclass" \
            else dict(self.objective)

    def rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows this target learns from and is evaluated on."""
        return frame.loc[frame[self.label] >= 0] if self.labelled_only else frame


def _spend_baselines(train: pd.DataFrame, ev: pd.DataFrame, horizon: int, cats: list[str]) -> dict[str, np.ndarray]:
    from training.baselines import spend_baselines

    return spend_baselines(train, ev, horizon)


def _churn_baselines(train: pd.DataFrame, ev: pd.DataFrame, horizon: int, cats: list[str]) -> dict[str, np.ndarray]:
    from training.baselines import churn_baselines

    return churn_baselines(train, ev, horizon)


def _category_baselines(train: pd.DataFrame, ev: pd.DataFrame, horizon: int, cats: list[str]) -> dict[str, np.ndarray]:
    from training.baselines import category_baselines

    return category_baselines(train, ev, cats)


TARGETS: tuple[Target, ...] = (
    Target(
        key="spend",
        label="label_spend",
        objective={"objective": "tweedie", "tweedie_variance_power": 1.5, "metric": "tweedie"},
        metrics=spend_metrics,
        baselines=_spend_baselines,
        description="Spend in the horizon after the cutoff (base currency); mostly zero, hence Tweedie",
    ),
    Target(
        key="churn",
        label="label_churn",
        objective={"objective": "binary", "metric": "binary_logloss"},
        metrics=churn_metrics,
        baselines=_churn_baselines,
        description="Probability of no purchase in the horizon after the cutoff (log loss keeps it calibrated)",
    ),
    Target(
        key="category",
        label="label_category",
        objective={"objective": "multiclass", "metric": "multi_logloss"},
        metrics=category_metrics,
        baselines=_category_baselines,
        description="Which category the user buys most in the horizon (class probabilities = affinity)",
        labelled_only=True,
    ),
)


def target(key: str) -> Target:
    """The target with this key."""
    for t in TARGETS:
        if t.key == key:
            return t
    raise KeyError(f"unknown target {key!r}; known: {', '.join(t.key for t in TARGETS)}")
