"""Champion models from the MLflow registry: which versions hold the alias, and loading them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from base.config import MlflowSettings
from training.registry import ModelRef, alias_version, client, use_tracking
from training.targets import TARGETS, target

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass(frozen=True)
class LoadedModel:
    """A champion booster with what scoring needs to know about it."""

    target: str
    ref: ModelRef
    booster: Any
    features: list[str]
    prior: float
    stacking: dict[str, float] | None = None
    """The BG/NBD + Gamma-Gamma parameters (and ``horizon_days``) its stacked features are computed with
    (training/stacking.py); None when it was trained without stacking."""

    @property
    def stored_features(self) -> list[str]:
        """The features read from the stores: its own minus the stacked ones, plus their inputs."""
        from training.stacking import INPUTS, STACK_FEATURES

        own = [f for f in self.features if f not in STACK_FEATURES]
        return own + [f for f in INPUTS if f not in own] if self.stacking else own


REQUIRED = tuple(t.key for t in TARGETS if t.required)
"""Targets the service cannot answer without; the others are loaded when they have a champion."""


class NoChampion(RuntimeError):
    """A required target has no version with the champion alias (train first)."""


def champion_refs(ml: MlflowSettings) -> dict[str, ModelRef]:
    """The version holding the champion alias for each target that has one (one registry call each)."""
    refs = {}
    for spec in TARGETS:
        ref = alias_version(ml, spec.key)
        if ref is not None:
            refs[spec.key] = ref
    missing = [t for t in REQUIRED if t not in refs]
    if missing:
        raise NoChampion(
            f"no '{ml.champion_alias}' version of {', '.join(ml.model_name(t) for t in missing)} "
            f"in {ml.registry_uri}; run `persona train` first"
        )
    return refs


def load_models(ml: MlflowSettings, refs: Mapping[str, ModelRef],
                reuse: Mapping[str, LoadedModel] | None = None) -> dict[str, LoadedModel]:
    """Load each referenced version's booster, feature order and population prior.

    Models in ``reuse`` that are already at the referenced version are kept as they are, so a swap
    loads only what moved.
    """
    import mlflow.lightgbm

    from training.stacking import from_run_params

    use_tracking(ml)
    out: dict[str, LoadedModel] = {}
    for key, ref in refs.items():
        old = (reuse or {}).get(key)
        if old is not None and old.ref == ref:
            out[key] = old
            continue
        booster = mlflow.lightgbm.load_model(ref.uri, dst_path=None)
        run = client(ml).get_run(ref.run_id)
        prior = float(run.data.metrics.get("prior_prediction", 0.0))
        out[key] = LoadedModel(key, ref, booster, list(booster.feature_name()), prior,
                               from_run_params(run.data.params))
    return out


def load_champions(ml: MlflowSettings) -> dict[str, LoadedModel]:
    """Every target's champion booster, its feature order and its population prior."""
    return load_models(ml, champion_refs(ml))


@dataclass(frozen=True)
class ServingCheck:
    """What the service offers a model: the features it serves online and the configured categories
    (None: not known, not checked)."""

    served: frozenset[str] | None = None
    categories: tuple[str, ...] | None = None

    def reasons(self, key: str, booster: Any) -> list[str]:
        """Why the service could not serve ``booster`` as target ``key`` (empty: it can)."""
        from training.stacking import INPUTS, STACK_FEATURES

        features = list(booster.feature_name())
        if set(STACK_FEATURES) & set(features):  # computed by the scorer from these served inputs
            features = [f for f in features if f not in STACK_FEATURES] + list(INPUTS)
        classes = int(booster.num_model_per_iteration())
        multiclass = target(key).output == "classes"
        reasons = []
        if self.served is not None:
            missing = sorted(set(features) - self.served)
            if missing:
                reasons.append(f"needs features the online feature service does not serve: {', '.join(missing)}")
        if multiclass and self.categories is not None and classes != len(self.categories):
            reasons.append(f"predicts {classes} classes but the configuration has {len(self.categories)} categories")
        if not multiclass and classes > 1:
            reasons.append(f"predicts {classes} classes where one number is expected")
        return reasons


def serving_check(store: "FeatureStore", categories: Sequence[str]) -> ServingCheck:
    """What the service started on ``store`` offers: the features of the served feature service."""
    from features.store import feature_refs

    return ServingCheck(frozenset(feature_refs(store)), tuple(categories))


def servable_reasons(ml: MlflowSettings, ref: ModelRef, key: str, check: ServingCheck | None = None) -> list[str]:
    """Load a registered version as the service would and say why it could not serve it (empty: it can)."""
    import mlflow.lightgbm

    use_tracking(ml)
    try:
        booster = mlflow.lightgbm.load_model(ref.uri)
    except Exception as exc:  # unreadable artifact, wrong flavour, missing version
        return [f"cannot be loaded from {ref.uri}: {exc}"]
    return (check or ServingCheck()).reasons(key, booster)
