"""The persona record: what applications receive for one user, and what the scorer produces.

Its prediction fields and its model versions follow the target registry (``training/targets.py``): a
target adds its ``record_field`` here (a number, or the top classes for a ``classes`` target) and its key
to :class:`ModelVersions`; nothing else lists them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from training.targets import TARGETS, Target


class Driver(BaseModel):
    """One feature's contribution to a prediction (LightGBM ``pred_contrib``)."""

    feature: str = Field(..., description="Feature name")
    value: float | None = Field(None, description="The user's feature value (null when missing)")
    contribution: float = Field(..., description="Contribution to the raw model score")


class CategoryAffinity(BaseModel):
    """How strongly a user leans to a category."""

    category: str
    score: float = Field(..., ge=0, le=1, description="Probability of the category (or share of recent "
                                                      "category interactions when there is no category model)")


def _prediction_field(t: Target) -> tuple[Any, Any]:
    if t.output == "classes":
        return list[CategoryAffinity], Field(default_factory=list, description=t.record_description)
    bounds = {"ge": 0, "le": 1} if t.output == "probability" else {"ge": 0}
    return float, Field(..., description=t.record_description, **bounds)


def _version_field(t: Target) -> tuple[Any, Any]:
    if t.required:
        return str, Field(..., description=f"Version of the {t.key} model (persona-{t.key} by default)")
    return str | None, Field(None, description=f"Version of the {t.key} model, when it has a champion")


ModelVersions = create_model(  # type: ignore[call-overload]
    "ModelVersions", __doc__="Registered model versions that produced the persona.",
    **{t.key: _version_field(t) for t in TARGETS})

PersonaRecord = create_model(  # type: ignore[call-overload]
    "PersonaRecord",
    __config__=ConfigDict(protected_namespaces=()),
    __doc__="What applications receive for one user: one call, one feature snapshot, consistent outputs.",
    user_id=(str, ...),
    cold_start=(bool, Field(..., description="True when the user is unknown: answered from population priors")),
    segment=(str, Field(..., description="Named persona from the segment rules")),
    **{t.record_field: _prediction_field(t) for t in TARGETS},
    horizon_days=(int, Field(..., description="Prediction horizon in days")),
    drivers=(dict[str, list[Driver]], Field(default_factory=dict, description="Top drivers per model")),
    model_versions=(ModelVersions, ...),
    feature_timestamp=(datetime | None, Field(None, description="Time of the feature snapshot used")),
    feature_age_seconds=(float | None, Field(None, description="Age of that snapshot when served")),
)


# -- stored records (score on write): the record's JSON, finished with its age when served --------

AGE_FIELD = b',"feature_age_seconds":'


def versions_key(versions: dict[str, str | None]) -> str:
    """One text for a set of model versions (``category=3,churn=2,spend=5``; targets without a model left out)."""
    return ",".join(f"{k}={v}" for k, v in sorted(versions.items()) if v is not None)


def record_body(record: Any) -> bytes:
    """A record's JSON without its age (added when served) and without the closing brace."""
    return record.model_dump_json(exclude={"feature_age_seconds"})[:-1].encode()


def served_json(body: bytes, feature_ts: float, now: float) -> bytes:
    """The stored body finished with the feature age as of ``now`` (null for a cold start)."""
    age = b"null" if not feature_ts else repr(round(now - feature_ts, 3)).encode()
    return body + AGE_FIELD + age + b"}"
