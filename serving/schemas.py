"""Request and response bodies of the persona API (pydantic models with field descriptions)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Driver(BaseModel):
    """One feature's contribution to a prediction (LightGBM ``pred_contrib``)."""

    feature: str = Field(..., description="Feature name")
    value: float | None = Field(None, description="The user's feature value (null when missing)")
    contribution: float = Field(..., description="Contribution to the raw model score")


class CategoryAffinity(BaseModel):
    """How strongly a user leans to a category."""

    category: str
    score: float = Field(..., ge=0, le=1, description="Share of recent category interactions")


class ModelVersions(BaseModel):
    """Registered model versions that produced the persona."""

    spend: str = Field(..., description="Version of the spend model (persona-spend)")
    churn: str = Field(..., description="Version of the churn model (persona-churn)")


class PersonaRecord(BaseModel):
    """What applications receive for one user: one call, one feature snapshot, consistent outputs."""

    model_config = ConfigDict(protected_namespaces=())

    user_id: str
    cold_start: bool = Field(..., description="True when the user is unknown: answered from population priors")
    segment: str = Field(..., description="Named persona from the segment rules")
    predicted_spend: float = Field(..., ge=0, description="Predicted spend over the horizon (base currency)")
    churn_risk: float = Field(..., ge=0, le=1, description="Probability of no purchase over the horizon")
    horizon_days: int = Field(..., description="Prediction horizon in days")
    top_categories: list[CategoryAffinity] = Field(default_factory=list)
    drivers: dict[str, list[Driver]] = Field(default_factory=dict, description="Top drivers per model")
    model_versions: ModelVersions
    feature_timestamp: datetime | None = Field(None, description="Time of the feature snapshot used")
    feature_age_seconds: float | None = Field(None, description="Age of that snapshot when served")


class PersonaResponse(BaseModel):
    """Personas for the requested users, in request order."""

    personas: list[PersonaRecord]
