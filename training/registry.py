"""MLflow tracking/registry helpers: configure URIs, find the champion, move aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from base.config import MlflowSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class ModelRef:
    """A registered model version."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


def client(ml: MlflowSettings) -> "MlflowClient":
    """An MlflowClient bound to the configured tracking and registry stores."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=ml.tracking_uri, registry_uri=ml.registry_uri)


def use_tracking(ml: MlflowSettings) -> None:
    """Point the fluent mlflow API at the configured stores (for ``mlflow.start_run``/``log_model``)."""
    import mlflow

    mlflow.set_tracking_uri(ml.tracking_uri)
    mlflow.set_registry_uri(ml.registry_uri)


def ensure_experiment(ml: MlflowSettings) -> str:
    """The experiment id, creating it with the configured artifact location when missing."""
    c = client(ml)
    exp = c.get_experiment_by_name(ml.experiment)
    if exp is not None:
        return exp.experiment_id
    return c.create_experiment(ml.experiment, artifact_location=ml.artifact_location)


def alias_version(ml: MlflowSettings, target: str, alias: str | None = None) -> ModelRef | None:
    """The version holding ``alias`` (default: champion) for a target, or None."""
    from mlflow.exceptions import MlflowException

    name = ml.model_name(target)
    try:
        mv = client(ml).get_model_version_by_alias(name, alias or ml.champion_alias)
    except MlflowException:
        return None
    return ModelRef(name=name, version=str(mv.version), run_id=mv.run_id)


def set_alias(ml: MlflowSettings, ref: ModelRef, alias: str, reason: str) -> None:
    """Move ``alias`` to ``ref`` and record the decision as tags on the version."""
    from datetime import datetime, timezone

    c = client(ml)
    c.set_registered_model_alias(ref.name, alias, ref.version)
    stamp = datetime.now(timezone.utc).isoformat()
    c.set_model_version_tag(ref.name, ref.version, f"{alias}.decided_at", stamp)
    c.set_model_version_tag(ref.name, ref.version, f"{alias}.decided_by", ml.decided_by)
    c.set_model_version_tag(ref.name, ref.version, f"{alias}.reason", reason)


def record_decision(ml: MlflowSettings, ref: ModelRef, action: str, reason: str) -> None:
    """Record a lifecycle decision on the version: who, when, what, why (kept per decision, plus the latest)."""
    import json
    from datetime import datetime, timezone

    c = client(ml)
    stamp = datetime.now(timezone.utc)
    body = json.dumps({"action": action, "by": ml.decided_by, "at": stamp.isoformat(), "why": reason})
    c.set_model_version_tag(ref.name, ref.version, f"decision.{stamp:%Y%m%dT%H%M%S%fZ}", body[:5000])
    c.set_model_version_tag(ref.name, ref.version, "last_decision", body[:5000])
    readable = {"gate.decision": action, "gate.reason": reason[:5000], "gate.decided_at": stamp.isoformat(),
                "gate.decided_by": ml.decided_by}  # plain tags: columns in the MLflow UI's version and run lists
    for key, value in readable.items():
        c.set_model_version_tag(ref.name, ref.version, key, value)
        c.set_tag(ref.run_id, key, value)


def describe(ml: MlflowSettings, ref: ModelRef, target_key: str) -> None:
    """What the MLflow UI shows for a new version: the registered model's description, the version's (what it
    was trained and evaluated on) and a readable run name (model, version, evaluation cutoff)."""
    from training.targets import target

    t = target(target_key)
    c = client(ml)
    c.update_registered_model(ref.name, description=(
        f"Persona {t.key} model: {t.description}. The '{ml.champion_alias}' alias is what the service uses; "
        f"'{ml.challenger_alias}' waits for the promotion gate (mlflow.yaml); gate.* tags on each version say why."))
    c.set_registered_model_tag(ref.name, "persona.target", t.key)
    tags = c.get_run(ref.run_id).data.tags
    c.update_model_version(ref.name, ref.version, description=(
        f"{t.key} v{ref.version}: LightGBM on {tags.get('persona.feature_service', '?')}, trained on the cutoffs "
        f"{tags.get('persona.train_cutoffs', '?')}, evaluated on {tags.get('persona.eval_cutoff', '?')} "
        f"(horizon {tags.get('persona.horizon_days', '?')} days)."))
    c.set_tag(ref.run_id, "mlflow.runName", f"{ref.name} v{ref.version} (eval {tags.get('persona.eval_cutoff', '?')})")


def versions(ml: MlflowSettings, target: str) -> list[Any]:
    """Every registered version of a target's model, newest first (empty when none)."""
    name = ml.model_name(target)
    found = client(ml).search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda mv: -int(mv.version))
