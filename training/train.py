"""Train one LightGBM model per persona target, log it to MLflow and register it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from persona.config import MlflowSettings, TrainingConfig
from persona.progress import step
from training.labels import Split
from training.registry import ModelRef, ensure_experiment, set_alias, use_tracking
from training.targets import TARGETS, Target


@dataclass(frozen=True)
class TrainedModel:
    """One trained and registered model with its evaluation metrics."""

    target: str
    ref: ModelRef
    metrics: dict[str, float]
    rows_train: int
    rows_eval: int


@dataclass
class TrainSummary:
    """What a training run produced."""

    models: list[TrainedModel] = field(default_factory=list)


def split_frames(dataset: pd.DataFrame, split: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the training cutoffs and of the evaluation cutoff (never mixed)."""
    ts = pd.to_datetime(dataset["event_timestamp"], utc=True)
    train = dataset.loc[ts.isin(pd.to_datetime(split.train, utc=True))]
    evaluation = dataset.loc[ts == pd.Timestamp(split.evaluation).tz_convert("UTC")]
    return train, evaluation


def lgb_params(target: Target, cfg: TrainingConfig) -> dict[str, Any]:
    """LightGBM parameters for a target (deterministic, quiet)."""
    return {
        **target.params,
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "seed": 7,
        "deterministic": True,
        "num_threads": 1,  # OpenMP spin-waits collapse on a shared 2-core machine (10x slower)
        "verbosity": -1,
    }


def fit(target: Target, train: pd.DataFrame, features: list[str], cfg: TrainingConfig) -> Any:
    """Fit a LightGBM booster on the training rows."""
    import lightgbm as lgb

    data = lgb.Dataset(train[features].astype("float64"), label=train[target.label].astype("float64"),
                       feature_name=features, free_raw_data=True)
    return lgb.train(lgb_params(target, cfg), data, num_boost_round=cfg.num_boost_round)


def model_requirements() -> list[str]:
    """Pinned runtime requirements of a logged model (the versions in this environment)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "scikit-learn")]


def log_model(target: Target, booster: Any, metrics: dict[str, float], train: pd.DataFrame,
              evaluation: pd.DataFrame, features: list[str], split: Split, cfg: TrainingConfig,
              ml: MlflowSettings, lineage: dict[str, str]) -> ModelRef:
    """Log params, metrics, priors and the model to MLflow; register it as a new version."""
    import mlflow
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    use_tracking(ml)
    experiment_id = ensure_experiment(ml)
    example = evaluation[features].head(5).astype("float64")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{target.key}-{split.evaluation:%Y%m%d}") as run:
        mlflow.log_params({**{k: v for k, v in lgb_params(target, cfg).items()},
                           "num_boost_round": cfg.num_boost_round, "horizon_days": cfg.horizon_days,
                           "n_features": len(features)})
        mlflow.log_metrics({f"eval_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({
            "prior_prediction": float(train[target.label].mean()),
            "rows_train": len(train), "rows_eval": len(evaluation),
        })
        mlflow.set_tags({
            "persona.target": target.key,
            "persona.feature_service": "persona_v1",
            "persona.features": ",".join(features),
            "persona.train_cutoffs": ",".join(f"{c:%Y-%m-%d}" for c in split.train),
            "persona.eval_cutoff": f"{split.evaluation:%Y-%m-%d}",
            **{f"persona.{k}": v for k, v in lineage.items()},
        })
        info = mlflow.lightgbm.log_model(
            booster, name="model", registered_model_name=ml.models[target.key],  # type: ignore[index]
            signature=infer_signature(example, booster.predict(example)), input_example=example,
            pip_requirements=model_requirements(),  # explicit: skips slow environment inference
        )
    version = str(info.registered_model_version)
    return ModelRef(name=ml.models[target.key], version=version, run_id=run.info.run_id)  # type: ignore[index]


def train_all(dataset: pd.DataFrame, features: list[str], split: Split, cfg: TrainingConfig,
              ml: MlflowSettings, *, lineage: dict[str, str] | None = None, make_champion: bool = True,
              progress: Any | None = None) -> TrainSummary:
    """Train, evaluate on the latest cutoff, register every target; optionally alias them champion."""
    train, evaluation = split_frames(dataset, split)
    if train.empty or evaluation.empty:
        raise ValueError(f"empty split: {len(train)} training rows, {len(evaluation)} evaluation rows")
    summary = TrainSummary()
    with step(progress, "train + register models", total=len(TARGETS)) as advance:
        for target in TARGETS:
            booster = fit(target, train, features, cfg)
            pred = booster.predict(evaluation[features].astype("float64"))
            metrics = target.metrics(evaluation[target.label].to_numpy(dtype=float), pred)
            ref = log_model(target, booster, metrics, train, evaluation, features, split, cfg, ml, lineage or {})
            if make_champion:
                set_alias(ml, ref, ml.champion_alias, "first model trained by the pipeline")
            summary.models.append(TrainedModel(target.key, ref, metrics, len(train), len(evaluation)))
            advance(1)
    return summary
