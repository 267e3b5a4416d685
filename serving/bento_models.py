"""Champions in BentoML's model store, so ``bentoml build`` packages the service with its models.

``export_champions`` copies each target's champion (from the MLflow registry) into the BentoML
model store as ``persona-<target>``, labelled with the registered model and version it came from.
A service built from ``bentofile.yaml`` runs with ``PERSONA_MODEL_SOURCE=bento``: it loads those
packaged versions and does not follow the registry (a bento is an immutable release; promote by
building and deploying a new one).
"""

from __future__ import annotations

import json
from typing import Any

from base.config import MlflowSettings
from training.champions import REQUIRED, LoadedModel, NoChampion, champion_refs, load_models
from training.registry import ModelRef
from training.targets import TARGETS

MODEL_FILE = "model.txt"


def bento_name(target: str) -> str:
    """The BentoML model name of a target's packaged champion."""
    return f"persona-{target}"


def export_champions(ml: MlflowSettings) -> list[str]:
    """Copy every champion into the BentoML model store; returns the new model tags."""
    import bentoml

    tags = []
    for target, model in load_models(ml, champion_refs(ml)).items():
        labels = {"registered_model": model.ref.name, "version": model.ref.version, "alias": ml.champion_alias}
        meta = {"run_id": model.ref.run_id, "features": json.dumps(model.features), "prior": model.prior,
                "mlflow_uri": model.ref.uri, "stacking": json.dumps(model.stacking)}
        with bentoml.models.create(bento_name(target), labels=labels, metadata=meta) as saved:
            model.booster.save_model(saved.path_of(MODEL_FILE))
        tags.append(str(saved.tag))
    return tags


def load_packaged() -> dict[str, LoadedModel]:
    """The champions packaged in the bento (or the local model store): the newest of each target."""
    import bentoml
    import lightgbm as lgb
    from bentoml.exceptions import NotFound

    out: dict[str, LoadedModel] = {}
    for target in TARGETS:
        try:
            saved: Any = bentoml.models.get(f"{bento_name(target.key)}:latest")
        except NotFound:
            if target.key in REQUIRED:
                raise NoChampion(f"no packaged {bento_name(target.key)} model: run `persona package` first") from None
            continue
        booster = lgb.Booster(model_file=saved.path_of(MODEL_FILE))
        ref = ModelRef(saved.info.labels["registered_model"], saved.info.labels["version"],
                       saved.info.metadata["run_id"])
        out[target.key] = LoadedModel(target.key, ref, booster, json.loads(saved.info.metadata["features"]),
                                      float(saved.info.metadata["prior"]),
                                      json.loads(saved.info.metadata.get("stacking", "null")))
    return out
