"""Evaluation figures logged as MLflow artifacts: feature importance, calibration, lift."""

from __future__ import annotations

from typing import Any

import numpy as np


def _figure(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.set_title(title)
    return fig, ax


def importance_figure(booster: Any, top: int = 15) -> Any:
    """Horizontal bars of total gain per feature."""
    gain = booster.feature_importance(importance_type="gain")
    names = np.array(booster.feature_name())
    order = np.argsort(gain)[-top:]
    fig, ax = _figure("feature importance (gain)")
    ax.barh(names[order], gain[order])
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Any:
    """Observed rate against mean predicted probability per decile of prediction."""
    order = np.argsort(p)
    groups = np.array_split(order, bins)
    fig, ax = _figure("calibration (deciles of predicted probability)")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot([p[g].mean() for g in groups if len(g)], [y[g].mean() for g in groups if len(g)], "o-")
    ax.set_xlabel("mean predicted")
    ax.set_ylabel("observed")
    fig.tight_layout()
    return fig


def lift_figure(y: np.ndarray, pred: np.ndarray, bins: int = 10) -> Any:
    """Mean outcome per decile of prediction relative to the overall mean (decile 1 = highest prediction)."""
    order = np.argsort(-pred, kind="stable")
    groups = np.array_split(order, bins)
    base = max(float(np.mean(y)), 1e-12)
    fig, ax = _figure("lift by predicted decile")
    ax.bar(range(1, len(groups) + 1), [float(np.mean(y[g])) / base if len(g) else 0 for g in groups])
    ax.axhline(1.0, color="grey", linestyle="--")
    ax.set_xlabel("decile (1 = highest prediction)")
    fig.tight_layout()
    return fig


def close_figure(fig: Any) -> None:
    """Release a figure (pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
