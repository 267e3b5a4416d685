"""Scores of a model on evaluation rows: overall, against each baseline, within each segment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.targets import Target

EVAL_ARTIFACT = "evaluation/evaluation.parquet"
"""Where a training run logs its evaluation rows (the gate scores champion and challenger on them)."""
EVAL_ROWS_TAG = "persona.evaluation_rows"
"""Run tag naming the file of the run's per-user evaluation rows (kept in the data directory, not in MLflow)."""


def eval_rows_path(data_dir: Path, run_id: str) -> Path:
    """Where a run's per-user evaluation rows are kept (``training/evaluation/<run id>.parquet``)."""
    return data_dir / "training" / "evaluation" / f"{run_id}.parquet"



@dataclass(frozen=True)
class Evaluation:
    """A target's scores on the evaluation cutoff: the model, each baseline, each segment."""

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    segments: dict[str, dict[str, float]]


def matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Features as a float64 matrix in model order."""
    return frame[features].to_numpy(dtype="float64")


def evaluate(target: Target, pred: np.ndarray, rows: pd.DataFrame, baselines: dict[str, np.ndarray],
             min_rows: int = 1) -> Evaluation:
    """Metrics of the model, of each baseline, and of the model within each segment of ``rows``."""
    y = rows[target.label].to_numpy(dtype=float)
    seg = rows["segment"].to_numpy() if "segment" in rows else np.full(len(rows), "all")
    segments = {}
    for name in sorted(set(seg)):
        m = seg == name
        if m.sum() >= min_rows:
            segments[str(name)] = {**target.metrics(y[m], pred[m]), "rows": float(m.sum())}
    return Evaluation(metrics=target.metrics(y, pred),
                      baselines={k: target.metrics(y, v) for k, v in baselines.items()},
                      segments=segments)
