"""The Persona BentoML service: personas from Feast online features and the champion models.

Run it with ``bentoml serve serving.service:PersonaService`` (``persona serve`` sets it up).
Configuration comes from ``$PERSONA_CONFIG`` (default ``./persona.yaml``); the API key from the
environment variable named by ``serving.api_key_env``.

Endpoints: ``POST /persona`` (personas of 1 to 1,000 users), ``POST /events`` (real-time events,
key required), ``POST /admin/reload-models`` (check the champion aliases now, key required),
``GET /report`` (the latest persona report), and BentoML's own ``/healthz``, ``/readyz``, ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Annotated, Any

import bentoml
from pydantic import Field

from serving.auth import ApiKeyMiddleware
from serving.report_app import report_app
from serving.schemas import EventsResponse, PersonaResponse, ReloadResponse

log = logging.getLogger("persona.serving")

MAX_IDS = 1000
MAX_EVENTS = 1000

UserIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=128)]],
    Field(min_length=1, max_length=MAX_IDS, description="1 to 1,000 user ids"),
]
Events = Annotated[
    list[dict[str, Any]],
    Field(min_length=1, max_length=MAX_EVENTS,
          description="1 to 1,000 events, each an EventIn object (see the EventIn schema); each is "
                      "validated on its own"),
]


@bentoml.asgi_app(report_app, path="/report")
@bentoml.service(name="persona", traffic={"timeout": 30})
class PersonaService:
    """Answers applications with each user's persona and takes their new events in real time."""

    def __init__(self) -> None:
        from features.store import feature_refs, open_store
        from persona.config import load_mlflow_settings, load_settings
        from serving.live_events import LiveEvents
        from serving.live_models import ChampionSwitch
        from serving.metrics import ServiceMetrics
        from serving.online import OnlineFeatures

        self.settings = load_settings()
        store = open_store(self.settings)
        self.online = OnlineFeatures(store)
        self.metrics = ServiceMetrics()
        self.models = ChampionSwitch(self.settings, load_mlflow_settings(self.settings), set(feature_refs(store)),
                                     self.metrics)
        self.live = LiveEvents(self.settings, store)
        self._stop = threading.Event()
        cfg = self.settings.serving
        for target, every in ((self.models.watch, cfg.model_poll_seconds), (self.live.flush_every, cfg.offline_push_seconds)):
            threading.Thread(target=target, args=(self._stop, every), daemon=True).start()
        log.info("persona service ready: models %s", self.models.current.versions)

    def _personas(self, user_ids: list[str]) -> PersonaResponse:
        state = self.models.current  # one model state per response, even across a swap
        values, times = self.online.read(user_ids)
        records = state.scorer.score(user_ids, values, times)
        self.metrics.served(records)
        return PersonaResponse(personas=records)

    @bentoml.api(route="/persona")
    def persona(self, user_ids: UserIds) -> PersonaResponse:
        """Personas for the given users, in request order; unknown users come back as cold starts."""
        return self._personas(user_ids)

    @bentoml.api(route="/events")
    def events(self, events: Events, ctx: bentoml.Context, all_or_nothing: bool = False) -> EventsResponse:
        """Take behaviour events: each is validated, logged durably, pushed online, and the users they
        touch are re-scored. Invalid events are rejected with a reason while the rest are taken, or,
        with ``all_or_nothing``, one invalid event refuses the whole batch (400)."""
        from serving.events import check_events

        checked = check_events(events, self.settings, datetime.now(timezone.utc))
        for r in checked.rejected:
            self.metrics.events_rejected.labels(field=r.field or "event").inc()
        if checked.rejected and all_or_nothing:
            ctx.response.status_code = 400
            return EventsResponse(accepted=0, rejected=checked.rejected)
        taken = self.live.take(checked.events)
        self.metrics.events_accepted.inc(taken.accepted)
        personas = self._personas(taken.users).personas if taken.users else []
        return EventsResponse(accepted=taken.accepted, duplicates=taken.duplicates, rejected=checked.rejected,
                              personas=personas)

    @bentoml.api(route="/admin/reload-models")
    def reload_models(self) -> ReloadResponse:
        """Check the registry's champion aliases now and swap in any that moved."""
        outcome = self.models.check()
        return ReloadResponse(outcome=outcome, versions=self.models.current.versions,
                              error=self.models.last_error if outcome == "failed" else None)

    def __is_ready__(self) -> bool:
        """Ready once the models and the feature store are loaded (``__init__`` has finished)."""
        return self.models.current is not None

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop the watchers and push what is queued for the offline store."""
        self._stop.set()
        self.live.flush_offline()


PersonaService.add_asgi_middleware(ApiKeyMiddleware)
