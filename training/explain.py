"""Per-prediction explanations from LightGBM's ``pred_contrib`` (SHAP values of the trees)."""

from __future__ import annotations

from typing import Any

import numpy as np


def contributions(booster: Any, x: np.ndarray) -> np.ndarray:
    """Per-row feature contributions (last column = bias); for multi-class, those of the predicted class."""
    contrib = np.asarray(booster.predict(x, pred_contrib=True))
    n_features = x.shape[1]
    if contrib.shape[1] == n_features + 1:
        return contrib
    blocks = contrib.reshape(len(x), -1, n_features + 1)
    chosen = np.asarray(booster.predict(x)).argmax(axis=1)
    return blocks[np.arange(len(x)), chosen]


def top_drivers(booster: Any, x: np.ndarray, features: list[str], k: int = 3) -> list[list[dict[str, float | str]]]:
    """The ``k`` features with the largest absolute contribution for each row."""
    contrib = contributions(booster, x)[:, :-1]
    out = []
    for row in contrib:
        top = np.argsort(-np.abs(row))[:k]
        out.append([{"feature": features[j], "contribution": float(row[j])} for j in top])
    return out
