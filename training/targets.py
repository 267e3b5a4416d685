"""The persona targets: what each model predicts, its LightGBM objective and its metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def spend_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, Tweedie deviance and the share of spend captured by the top predicted decile."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, mean_tweedie_deviance

    order = np.argsort(-pred)
    top = order[: max(1, len(order) // 10)]
    total = float(y.sum())
    return {
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "tweedie_deviance": float(mean_tweedie_deviance(y, np.maximum(pred, 1e-9), power=1.5)),
        "top_decile_capture": float(y[top].sum() / total) if total > 0 else 0.0,
    }


def churn_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score and calibration gap (mean predicted - observed)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    p = np.clip(pred, 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) > 1
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "calibration_gap": float(p.mean() - y.mean()),
    }


@dataclass(frozen=True)
class Target:
    """One persona model."""

    key: str
    label: str
    params: dict[str, object]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    primary_metric: str
    description: str
    extra: dict[str, object] = field(default_factory=dict)


TARGETS: tuple[Target, ...] = (
    Target(
        key="spend",
        label="label_spend",
        params={"objective": "tweedie", "tweedie_variance_power": 1.5, "metric": "rmse"},
        metrics=spend_metrics,
        primary_metric="rmse",
        description="Spend in the horizon after the cutoff (base currency)",
    ),
    Target(
        key="churn",
        label="label_churn",
        params={"objective": "binary", "metric": "binary_logloss"},
        metrics=churn_metrics,
        primary_metric="roc_auc",
        description="Probability of no purchase in the horizon after the cutoff",
    ),
)
