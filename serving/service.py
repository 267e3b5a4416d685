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
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel, ConfigDict, Field

from base.config import REQUEST_CEILING
from serving.auth import ApiKeyMiddleware
from serving.content_type import JsonOnlyMiddleware
from serving.limits import BodyLimitMiddleware
from serving.openapi_fix import OpenApiFixMiddleware
from serving.report_app import report_app
from serving.erasure import erasure_app, refuse_suppressed
from serving.studio_app import studio_app
from serving.schemas import EventsResponse, PersonaResponse, ReloadResponse

if TYPE_CHECKING:
    from serving.live_models import ModelState

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
@bentoml.asgi_app(erasure_app, path="/users")
@bentoml.asgi_app(studio_app, path="/studio")
@bentoml.service(name="persona", traffic={"timeout": 30})
class PersonaService:
    """Answers applications with each user's persona and takes their new events in real time."""

    def __init__(self) -> None:
        from base.config import load_settings
        from features.online_records import RecordStore
        from features.store import feature_refs, open_store
        from base.segments import check_rules
        from training.targets import segment_inputs
        from serving.live_events import LiveEvents
        from serving.live_models import ChampionSwitch
        from serving.metrics import ServiceMetrics
        from serving.online import OnlineFeatures
        from serving.score_on_write import RecordKeeper
        from training.targets import check_target_settings
        from base.paths import DataPaths
        from base.suppression import Suppression

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
        self.records = RecordStore(store)
        self.keeper = RecordKeeper(self.settings, store, self.models, self.online, self.records, self.metrics)
        self.suppression = Suppression(DataPaths(self.settings.data_dir).suppression, self.settings.hash_salt)
        self.live.forgotten = self.suppression.suppressed  # queued rows of people erased meanwhile are dropped
        from studio.rule_versions import RulesWatch  # segment rules saved in the studio apply without a restart

        self.rules = RulesWatch(self.settings.segments_file, self.settings.segments,
                                lambda rules: check_rules(rules, set(self.models.current.scorer.features if self.models.current else []) | set(segment_inputs())))
        self._later: list[Any] = []
        self._later_lock = threading.Lock()
        self._stop = threading.Event()
        cfg = self.settings.serving
        for target, every in ((self.models.watch, cfg.model_poll_seconds), (self.live.flush_every, cfg.offline_push_seconds),
                              (self.keeper.watch, cfg.model_poll_seconds), (self._write_later, 0.5)):
            threading.Thread(target=target, args=(self._stop, every), daemon=True).start()
        state = self.models.current
        log.info("persona service started: models %s", state.versions if state else f"not loaded ({self.models.last_error})")

    def _state(self) -> "ModelState":
        """The models for this request (one state per response, even across a swap); 503 while none loaded."""
        state = self.models.current
        if state is None:
            raise ModelsNotLoaded(self.models.last_error or "the champion models are loading")
        state.scorer.use_rules(self.rules.current(), self.rules.version)  # studio edits apply live
        return state

    def _score(self, state: "ModelState", user_ids: list[str], now: bool = True) -> tuple[list[Any], list[Any]]:
        """Score users from their online features; their records are stored (cold starts are not), at
        once (``now``: the real-time path, whose next read must see them) or by the background writer
        (a request that had no record: the record only saves the next request some work)."""
        from scoring.batch import stored_records

        x, times = self.online.read(user_ids, state.scorer.features)
        records, stored = stored_records(state.scorer, user_ids, x, times)
        keep = [(u, r) for u, r in stored if r.feature_ts]
        if now:
            self.records.write(keep)
        elif keep:
            with self._later_lock:
                self._later.extend(keep)
        return records, stored

    def _write_later(self, stop: threading.Event, every: float) -> None:
        """Store the records scored on requests, in one transaction every ``every`` seconds."""
        while True:
            stopping = stop.wait(every)
            with self._later_lock:
                rows, self._later = self._later, []
            if rows:
                try:
                    self.records.write(rows)
                except Exception:  # noqa: BLE001 - they are scored again on the next request
                    log.exception("storing %d records scored on requests failed", len(rows))
            if stopping:
                return

    def _answer(self, user_ids: list[str]) -> bytes:
        """The response body: each user's stored record when its versions may be served, scored on the
        request otherwise (no record yet, or a record of other models)."""
        from scoring.records import served_json

        state = self._state()
        accepted = self.keeper.accepted(state)
        stored = self.records.read(user_ids) if self.settings.serving.read_records else {}
        misses = [u for u in dict.fromkeys(user_ids) if (r := stored.get(u)) is None or r.versions not in accepted]
        if misses:
            stored.update(self._score(state, misses, now=False)[1])
        now = time.time()
        chosen = [stored[u] for u in user_ids]
        missed = set(misses)
        self.metrics.served([r.segment for r in chosen], [now - r.feature_ts if r.feature_ts else None for r in chosen],
                            sum(1 for u in user_ids if u in missed) if missed else 0)
        return b'{"personas":[' + b",".join(served_json(r.body, r.feature_ts, now) for r in chosen) + b"]}"

    @bentoml.api(route="/persona", input_spec=PersonaRequest)
    def persona(self, user_ids: UserIds) -> PersonaResponse:
        """Personas for the given users, in request order; unknown users come back as cold starts."""
        from starlette.responses import Response

        # serving.max_batch is enforced before parsing (serving/limits.py)
        return Response(self._answer(user_ids), media_type="application/json")  # type: ignore[return-value]

    @bentoml.api(route="/events", input_spec=EventsRequest)
    def events(self, events: Events, all_or_nothing: bool = False) -> EventsResponse:
        """Take behaviour events: each is validated, logged durably, pushed online, and the users they
        touch are re-scored. Invalid events are rejected with a reason while the rest are taken, or,
        with ``all_or_nothing``, one invalid event refuses the whole batch (400)."""
        from serving.events import check_events

        state = self._state()  # 503 before anything is taken while no models are loaded
        checked = refuse_suppressed(check_events(events, self.settings, datetime.now(timezone.utc)), self.suppression)
        for r in checked.rejected:
            self.metrics.events_rejected.labels(field=r.field or "event").inc()
        if checked.rejected and all_or_nothing:  # the documented 400 shape: error + detail
            from starlette.responses import JSONResponse

            return JSONResponse(status_code=400, content={  # type: ignore[return-value]
                "error": f"batch refused: {len(checked.rejected)} of {len(events)} events are invalid (all_or_nothing)",
                "detail": [r.model_dump() for r in checked.rejected]})
        taken = self.live.take(checked.events)
        self.metrics.events_accepted.inc(taken.accepted)
        self.metrics.events_duplicate.inc(taken.duplicates)
        personas = self._score(state, taken.users)[0] if taken.users else []  # their records are stored
        self.live.record(personas)  # the persona history, appended in the background
        return EventsResponse(accepted=taken.accepted, duplicates=taken.duplicates, rejected=checked.rejected,
                              personas=personas)

    @bentoml.api(route="/admin/reload-models", input_spec=EmptyRequest)
    def reload_models(self) -> ReloadResponse:
        """Check the registry's champion aliases now and swap in any that moved."""
        outcome = self.models.check(force=True)
        state = self.models.current
        return ReloadResponse(outcome=outcome, versions=state.versions if state else {},
                              error=(self.models.last_error or "") if outcome == "failed" else "")

    def __is_ready__(self) -> bool:
        """Ready once the champion models are loaded (503 while a failed load is retried)."""
        return self.models.current is not None

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop the watchers and push what is queued for the offline store."""
        self._stop.set()
        self.live.flush_offline()


class ModelsNotLoaded(ServiceUnavailable):
    """No champion models loaded yet (a failed load is being retried): answered 503."""


PersonaService.add_asgi_middleware(ApiKeyMiddleware)
PersonaService.add_asgi_middleware(OpenApiFixMiddleware)
PersonaService.add_asgi_middleware(JsonOnlyMiddleware)
PersonaService.add_asgi_middleware(BodyLimitMiddleware)
