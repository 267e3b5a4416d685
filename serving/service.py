"""The Persona BentoML service: personas from Feast online features and the champion models.

Run it with ``bentoml serve serving.service:PersonaService`` (``persona serve`` sets it up).
Configuration comes from ``$PERSONA_CONFIG`` (default ``./persona.yaml``); the API key from the
environment variable named by ``serving.api_key_env``.

Endpoints: ``POST /persona`` (personas of 1 to 1,000 users), ``POST /events`` (real-time events,
key required), ``POST /admin/reload-models`` (check the champion aliases now, key required),
``GET /report`` (the latest persona report), ``/studio`` (the persona studio), and BentoML's own ``/healthz``, ``/readyz``, ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, ConfigDict, Field

from base.config import REQUEST_CEILING
from serving.auth import ApiKeyMiddleware
from serving.content_type import JsonOnlyMiddleware
from serving.openapi_fix import OpenApiFixMiddleware
from serving.report_app import report_app
from serving.studio_app import studio_app
from serving.schemas import EventsResponse, PersonaResponse, ReloadResponse

log = logging.getLogger("persona.serving")


UserIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=128)]],
    Field(min_length=1, max_length=REQUEST_CEILING, description="1 to 1,000 user ids"),
]
Events = Annotated[
    list[dict[str, Any]],
    Field(min_length=1, max_length=REQUEST_CEILING,
          description="1 to 1,000 events, each an EventIn object (see the EventIn schema); each is "
                      "validated on its own"),
]



class PersonaRequest(BaseModel):
    """Body of ``POST /persona``."""

    model_config = ConfigDict(extra="forbid")
    user_ids: UserIds


class EventsRequest(BaseModel):
    """Body of ``POST /events``."""

    model_config = ConfigDict(extra="forbid")
    events: Events
    all_or_nothing: bool = Field(False, description="refuse the whole batch (400) when any event is invalid")


class EmptyRequest(BaseModel):
    """A body with nothing in it (``{}``)."""

    model_config = ConfigDict(extra="forbid")


@bentoml.asgi_app(report_app, path="/report")
@bentoml.asgi_app(studio_app, path="/studio")
@bentoml.service(name="persona", traffic={"timeout": 30})
class PersonaService:
    """Answers applications with each user's persona and takes their new events in real time."""

    def __init__(self) -> None:
        from features.store import feature_refs, open_store
        from base.config import load_settings
        from base.segments import check_rules
        from training.targets import check_target_settings, segment_inputs
        from serving.live_events import LiveEvents
        from serving.live_models import ChampionSwitch
        from serving.metrics import ServiceMetrics
        from serving.online import OnlineFeatures
        from serving.persona_cache import PersonaCache

        self.settings = load_settings()
        check_target_settings(self.settings)
        store = open_store(self.settings)
        self.online = OnlineFeatures(store)
        self.metrics = ServiceMetrics()
        packaged = None
        if self.settings.model_source == "bento":  # built from bentofile.yaml: the packaged champions
            from serving.bento_models import load_packaged

            packaged = load_packaged()
        self.models = ChampionSwitch(self.settings, self.settings.ml, set(feature_refs(store)),
                                     self.metrics, packaged=packaged)
        self.live = LiveEvents(self.settings, store)
        self.cache = PersonaCache(self.settings.serving.score_cache_size)
        from studio.rule_versions import RulesWatch  # segment rules saved in the studio apply without a restart

        self.rules = RulesWatch(self.settings.segments_file, self.settings.segments,
                                lambda rules: check_rules(rules, set(self.models.current.scorer.features) | set(segment_inputs())))
        self._stop = threading.Event()
        cfg = self.settings.serving
        for target, every in ((self.models.watch, cfg.model_poll_seconds), (self.live.flush_every, cfg.offline_push_seconds)):
            threading.Thread(target=target, args=(self._stop, every), daemon=True).start()
        log.info("persona service ready: models %s", self.models.current.versions)

    def _personas(self, user_ids: list[str]) -> PersonaResponse:
        state = self.models.current  # one model state per response, even across a swap
        state.scorer.rules = self.rules.current()  # as the segments file says now (studio edits apply live)
        x, times = self.online.read(user_ids, state.scorer.features)
        now = datetime.now(timezone.utc)
        versions = (*sorted(state.versions.items()), self.rules.version)
        keys = [(u, t or 0.0, versions) for u, t in zip(user_ids, times)]
        records = [self.cache.get(k, now) for k in keys]
        miss = [i for i, r in enumerate(records) if r is None]
        if miss:
            scored = state.scorer.score([user_ids[i] for i in miss], x[miss], [times[i] for i in miss], now)
            self.cache.put([keys[i] for i in miss], scored)
            for i, record in zip(miss, scored):
                records[i] = record
        self.metrics.served(records)
        return PersonaResponse(personas=records)

    @bentoml.api(route="/persona", input_spec=PersonaRequest)
    def persona(self, user_ids: UserIds) -> PersonaResponse:
        """Personas for the given users, in request order; unknown users come back as cold starts."""
        limit = self.settings.serving.max_batch
        if len(user_ids) > limit:
            return _too_many(len(user_ids), limit, "user ids", "serving.max_batch")  # type: ignore[return-value]
        return self._personas(user_ids)

    @bentoml.api(route="/events", input_spec=EventsRequest)
    def events(self, events: Events, all_or_nothing: bool = False) -> EventsResponse:
        """Take behaviour events: each is validated, logged durably, pushed online, and the users they
        touch are re-scored. Invalid events are rejected with a reason while the rest are taken, or,
        with ``all_or_nothing``, one invalid event refuses the whole batch (400)."""
        from serving.events import check_events

        limit = self.settings.serving.max_events
        if len(events) > limit:
            return _too_many(len(events), limit, "events", "serving.max_events")  # type: ignore[return-value]
        checked = check_events(events, self.settings, datetime.now(timezone.utc))
        for r in checked.rejected:
            self.metrics.events_rejected.labels(field=r.field or "event").inc()
        if checked.rejected and all_or_nothing:  # the documented 400 shape: error + detail
            from starlette.responses import JSONResponse

            return JSONResponse(status_code=400, content={  # type: ignore[return-value]
                "error": f"batch refused: {len(checked.rejected)} of {len(events)} events are invalid (all_or_nothing)",
                "detail": [r.model_dump() for r in checked.rejected]})
        taken = self.live.take(checked.events)
        self.cache.drop(taken.users)
        self.metrics.events_accepted.inc(taken.accepted)
        personas = self._personas(taken.users).personas if taken.users else []
        self.live.record(personas)  # the persona history, appended in the background
        return EventsResponse(accepted=taken.accepted, duplicates=taken.duplicates, rejected=checked.rejected,
                              personas=personas)

    @bentoml.api(route="/admin/reload-models", input_spec=EmptyRequest)
    def reload_models(self) -> ReloadResponse:
        """Check the registry's champion aliases now and swap in any that moved."""
        outcome = self.models.check()
        return ReloadResponse(outcome=outcome, versions=self.models.current.versions,
                              error=(self.models.last_error or "") if outcome == "failed" else "")

    def __is_ready__(self) -> bool:
        """Ready once the models and the feature store are loaded (``__init__`` has finished)."""
        return self.models.current is not None

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop the watchers and push what is queued for the offline store."""
        self._stop.set()
        self.live.flush_offline()


def _too_many(n: int, limit: int, what: str, setting: str) -> Any:
    """The 400 answer for a request over the configured bound (the schema's bound is the ceiling)."""
    from starlette.responses import JSONResponse

    return JSONResponse(status_code=400, content={"error": f"{n} {what} in one request; at most {limit} "
                                                           f"({setting} in persona.yaml)"})


PersonaService.add_asgi_middleware(ApiKeyMiddleware)
PersonaService.add_asgi_middleware(OpenApiFixMiddleware)
PersonaService.add_asgi_middleware(JsonOnlyMiddleware)
