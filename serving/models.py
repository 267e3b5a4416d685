"""Load the champion models from the MLflow registry (once, at service start)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from persona.config import MlflowSettings
from training.registry import ModelRef, alias_version, client, use_tracking
from training.targets import TARGETS


@dataclass(frozen=True)
class LoadedModel:
    """A champion booster with what scoring needs to know about it."""

    target: str
    ref: ModelRef
    booster: Any
    features: list[str]
    prior: float


REQUIRED = ("spend", "churn")
"""Targets the service cannot answer without; the others (category) are loaded when they have a champion."""


class NoChampion(RuntimeError):
    """A required target has no version with the champion alias (train first)."""


def load_champions(ml: MlflowSettings) -> dict[str, LoadedModel]:
    """Every target's champion booster, its feature order and its population prior."""
    import mlflow.lightgbm

    use_tracking(ml)
    out: dict[str, LoadedModel] = {}
    for target in TARGETS:
        ref = alias_version(ml, target.key)
        if ref is None and target.key not in REQUIRED:
            continue
        if ref is None:
            raise NoChampion(
                f"no '{ml.champion_alias}' version of {ml.models[target.key]} in {ml.registry_uri}; "  # type: ignore[index]
                "run `persona train` first"
            )
        booster = mlflow.lightgbm.load_model(ref.uri, dst_path=None)
        run = client(ml).get_run(ref.run_id)
        prior = float(run.data.metrics.get("prior_prediction", 0.0))
        out[target.key] = LoadedModel(target.key, ref, booster, list(booster.feature_name()), prior)
    return out
