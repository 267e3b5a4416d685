"""``/studio``: the persona studio mounted on the service, answering with the service's own settings,
personas (drivers included) and the fields its models serve."""

from __future__ import annotations

from typing import Any

from studio.app import build_app
from studio.context import Hooks


def _service() -> Any:
    import bentoml

    return bentoml.get_current_service()


def _personas(user_ids: list[str]) -> list[Any]:
    from serving.schemas import PersonaResponse

    return PersonaResponse.model_validate_json(_service()._answer(user_ids)).personas  # as POST /persona answers


def _known_fields() -> set[str]:
    from training.targets import segment_inputs

    return set(_service().models.current.scorer.features) | set(segment_inputs())


def _settings() -> Any:
    from serving.auth import service_settings

    return service_settings()


studio_app = build_app(Hooks(settings=_settings, personas=_personas, known_fields=_known_fields))
"""Built without touching any file; the handlers reach the running service instance."""
