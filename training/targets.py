"""The persona targets: what each model predicts, its LightGBM objective, its metrics and its baselines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from base.config import ConfigError, GateConfig, Settings

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
Output = Literal["amount", "probability", "classes"]


@dataclass(frozen=True)
class Target:
    """One persona model: everything the project knows about it is this entry.

    Training fits, evaluates, logs and gates it; the scorer puts its output in the persona record under
    ``record_field`` (numbers: the amount or probability; ``classes``: the top classes with their
    probabilities); scalar outputs with ``segment_input`` can be named in segment rules and are smoothed
    between batch updates and kept in the persona history.
    """

    key: str
    label: str
    objective: dict[str, object]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    baselines: Baselines
    description: str
    primary_metric: str
    baseline_metrics: tuple[str, ...]
    output: Output
    record_field: str
    record_description: str
    segment_input: bool = False
    history_tolerance: float = 0.0  # a kept prediction that moves by more than this is a changed persona
    required: bool = False  # the service cannot answer without its champion
    labelled_only: bool = False  # train/evaluate only rows whose label is >= 0 (e.g. users who bought)

    @property
    def scalar(self) -> bool:
        """One number per user (not class probabilities)."""
        return self.output != "classes"

    def params(self, categories: list[str]) -> dict[str, object]:
        """The objective, with the class count for multi-class targets."""
        return {**self.objective, "num_class": len(categories)} if self.objective["objective"] == "multiclass" \
            else dict(self.objective)

    def evaluated(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` this target learns from and is evaluated on (labelled ones only when
        ``labelled_only``)."""
        return (frame[self.label] >= 0).to_numpy() if self.labelled_only else np.ones(len(frame), dtype=bool)

    def rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows this target learns from and is evaluated on (:meth:`evaluated`)."""
        return frame.loc[self.evaluated(frame)] if self.labelled_only else frame

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Model output as served: amounts are not negative, probabilities lie in [0, 1]."""
        if self.output == "amount":
            return np.maximum(raw, 0.0)
        if self.output == "probability":
            return np.clip(raw, 0.0, 1.0)
        return raw

    def primary(self, gate: GateConfig) -> str:
        """The metric the gate compares (configuration overrides the target's default)."""
        return gate.primary_metric.get(self.key, self.primary_metric)

    def guarded(self, gate: GateConfig) -> list[str]:
        """Metrics on which the model may not trail a baseline beyond the gate's tolerance."""
        return list(gate.baseline_metrics.get(self.key, self.baseline_metrics))


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
        primary_metric="tweedie_deviance",
        baseline_metrics=("rmse", "mae", "top_decile_capture"),
        output="amount",
        record_field="predicted_spend",
        record_description="Predicted spend over the horizon (base currency)",
        segment_input=True,
        history_tolerance=5.0,
        required=True,
    ),
    Target(
        key="churn",
        label="label_churn",
        objective={"objective": "binary", "metric": "binary_logloss"},
        metrics=churn_metrics,
        baselines=_churn_baselines,
        description="Probability of no purchase in the horizon after the cutoff (log loss keeps it calibrated)",
        primary_metric="log_loss",
        baseline_metrics=("roc_auc", "pr_auc", "brier"),
        output="probability",
        record_field="churn_risk",
        record_description="Probability of no purchase over the horizon",
        segment_input=True,
        history_tolerance=0.05,
        required=True,
    ),
    Target(
        key="category",
        label="label_category",
        objective={"objective": "multiclass", "metric": "multi_logloss"},
        metrics=category_metrics,
        baselines=_category_baselines,
        description="Which category the user buys most in the horizon (class probabilities = affinity)",
        primary_metric="log_loss",
        baseline_metrics=("top1_accuracy", "top3_hit_rate"),
        output="classes",
        record_field="top_categories",
        record_description="Categories the user is most likely to buy next, with their probabilities",
        labelled_only=True,
    ),
)


def target(key: str) -> Target:
    """The target with this key."""
    for t in TARGETS:
        if t.key == key:
            return t
    raise KeyError(f"unknown target {key!r}; known: {', '.join(t.key for t in TARGETS)}")


def target_keys() -> list[str]:
    """Every target's key, in registry order."""
    return [t.key for t in TARGETS]


def segment_inputs() -> dict[str, Target]:
    """Record field → target, for the predictions that segment rules may name."""
    return {t.record_field: t for t in TARGETS if t.segment_input}


def segment_values(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The predictions segment rules may name, under their record field, from outputs by target key."""
    return {field: outputs[t.key] for field, t in segment_inputs().items() if t.key in outputs}


def check_target_settings(settings: Settings) -> None:
    """Every per-target entry of the configuration names a known target; errors name the file and key."""
    known = set(target_keys())
    entries = [(settings.config_path, "training.target_params", settings.training.target_params),
               (settings.config_path, "update.history.tolerance", settings.update.history.tolerance),
               (settings.mlflow_config, "models", settings.mlflow.models),
               (settings.mlflow_config, "gate.primary_metric", settings.mlflow.gate.primary_metric),
               (settings.mlflow_config, "gate.baseline_metrics", settings.mlflow.gate.baseline_metrics),
               (settings.config_path, "training.targets", settings.training.targets or [])]
    for path, where, mapping in entries:
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ConfigError(f"{path}: {where}: unknown target {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(known))} (training/targets.py)")
    chosen = settings.training.targets
    off = [t.key for t in TARGETS if t.required and chosen is not None and t.key not in chosen]
    if off:
        raise ConfigError(f"{settings.config_path}: training.targets: {', '.join(off)} cannot be switched off "
                          "(the service needs them for every persona); only optional targets can")
