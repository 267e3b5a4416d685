"""The framework's own ceiling: a BentoML service with the persona API's shape that returns a constant.

Same request and response models as ``serving.service.PersonaService.persona``, no feature read,
no model: what ``bentoml serve`` itself costs per request on this machine.
"""

from __future__ import annotations

from datetime import datetime, timezone

import bentoml

from scoring.records import CategoryAffinity, Driver, ModelVersions, PersonaRecord
from serving.schemas import PersonaResponse
from serving.service import PersonaRequest, UserIds


def constant_record(user_id: str) -> PersonaRecord:
    """A persona record of the usual size with fixed values."""
    drivers = [Driver(feature=f"feature_{i}", value=1.0, contribution=0.1) for i in range(3)]
    return PersonaRecord(
        user_id=user_id, cold_start=False, segment="loyal", predicted_spend=12.5, churn_risk=0.2,
        horizon_days=30, top_categories=[CategoryAffinity(category="home", score=0.5)],
        drivers={"spend": drivers, "churn": drivers}, model_versions=ModelVersions(spend="1", churn="1"),
        feature_timestamp=datetime(2026, 11, 1, tzinfo=timezone.utc), feature_age_seconds=1.0,
    )


@bentoml.service(name="bare", traffic={"timeout": 30})
class BareService:
    """Answers /persona with constant records."""

    @bentoml.api(route="/persona", input_spec=PersonaRequest)
    def persona(self, user_ids: UserIds) -> PersonaResponse:
        """A constant persona per requested id."""
        return PersonaResponse(personas=[constant_record(u) for u in user_ids])
