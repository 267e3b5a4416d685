"""The Persona BentoML service: personas from Feast online features and the champion models.

Run it with ``bentoml serve serving.service:PersonaService`` (``persona serve`` sets it up).
Configuration comes from ``$PERSONA_CONFIG`` (default ``./persona.yaml``).
"""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
from pydantic import Field

from serving.schemas import PersonaResponse

log = logging.getLogger("persona.serving")

UserIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=128)]],
    Field(min_length=1, max_length=1000, description="1 to 1,000 user ids"),
]


@bentoml.service(name="persona", traffic={"timeout": 30})
class PersonaService:
    """Answers applications with each user's persona (BentoML also serves /healthz, /readyz, /metrics)."""

    def __init__(self) -> None:
        from features.store import open_store
        from persona.config import load_mlflow_settings, load_settings
        from serving.models import load_champions
        from serving.online import OnlineFeatures
        from serving.scoring import PersonaScorer

        from features.store import feature_refs

        self.settings = load_settings()
        models = load_champions(load_mlflow_settings(self.settings))
        store = open_store(self.settings)
        self.online = OnlineFeatures(store)
        self.scorer = PersonaScorer(models, self.settings)
        missing = sorted(set(self.scorer.features) - set(feature_refs(store)))
        if missing:  # a model trained on features the online feature service does not serve
            raise RuntimeError(f"champion models need features that persona_v1 does not serve: {missing}")
        log.info("persona service ready: models %s", self.scorer.versions.model_dump())

    @bentoml.api(route="/persona")
    def persona(self, user_ids: UserIds) -> PersonaResponse:
        """Personas for the given users, in request order; unknown users come back as cold starts."""
        values, times = self.online.read(user_ids)
        return PersonaResponse(personas=self.scorer.score(user_ids, values, times))
