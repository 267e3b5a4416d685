"""Champion models from the MLflow registry: which versions hold the alias, and loading them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from base.config import MlflowSettings
from training.registry import ModelRef, alias_version, client, use_tracking
from training.targets import TARGETS, Target, target


@dataclass(frozen=True)
class LoadedModel:
    """A champion booster with what scoring needs to know about it."""

    target: str
    ref: ModelRef
    booster: Any
    features: list[str]
    prior: float


REQUIRED = tuple(t.key for t in TARGETS if t.required)
"""Targets the service cannot answer without; the others are loaded when they have a champion."""


class NoChampion(RuntimeError):
    """A required target has no version with the champion alias (train first)."""


def champion_refs(ml: MlflowSettings) -> dict[str, ModelRef]:
    """The version holding the champion alias for each target that has one (one registry call each)."""
    refs = {}
    for target in TARGETS:
        ref = alias_version(ml, target.key)
        if ref is not None:
            refs[target.key] = ref
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

    use_tracking(ml)
    out: dict[str, LoadedModel] = {}
    for target, ref in refs.items():
        old = (reuse or {}).get(target)
        if old is not None and old.ref == ref:
            out[target] = old
            continue
        booster = mlflow.lightgbm.load_model(ref.uri, dst_path=None)
        run = client(ml).get_run(ref.run_id)
        prior = float(run.data.metrics.get("prior_prediction", 0.0))
        out[target] = LoadedModel(target, ref, booster, list(booster.feature_name()), prior)
    return out


def load_champions(ml: MlflowSettings) -> dict[str, LoadedModel]:
    """Every target's champion booster, its feature order and its population prior."""
    return load_models(ml, champion_refs(ml))


@dataclass(frozen=True)
class ServingCheck:
    """What the service offers a model: the features it serves online and the configured categories."""

    served: frozenset[str] | None = None
    categories: tuple[str, ...] | None = None


def fit_reasons(key: str, features: list[str], num_class: int, served: Set[str] | None,
                categories: Sequence[str] | None) -> list[str]:
    """Why the service could not serve a model of ``key`` with these inputs and outputs (empty: it can)."""
    t: Target = target(key)
    reasons = []
    if served is not None:
        missing = sorted(set(features) - set(served))
        if missing:
            reasons.append(f"needs features the online feature service does not serve: {', '.join(missing)}")
    if t.output == "classes" and categories is not None and num_class != len(categories):
        reasons.append(f"predicts {num_class} classes but the configuration has {len(categories)} categories")
    if t.output != "classes" and num_class > 1:
        reasons.append(f"predicts {num_class} classes where one number is expected")
    return reasons


def servable_reasons(ml: MlflowSettings, ref: ModelRef, key: str, check: ServingCheck | None = None) -> list[str]:
    """Load a registered version as the service would and say why it could not serve it (empty: it can)."""
    check = check or ServingCheck()
    try:
        model = load_models(ml, {key: ref})[key]
    except Exception as exc:  # unreadable artifact, wrong flavour, missing run
        return [f"cannot be loaded from {ref.uri}: {exc}"]
    return fit_reasons(key, model.features, int(model.booster.num_model_per_iteration()),
                       check.served, check.categories)
