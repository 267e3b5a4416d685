"""Events posted to the service: validate each one, give it a stable id, turn the batch canonical."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import ValidationError

from base.config import Settings
from base.pseudonym import ID_KINDS, scrub_properties, token
from serving.schemas import EventIn, RejectedEvent

API_CHANNEL = "api"
"""The channel name of events that came in over HTTP (the ``api`` channel in persona.yaml)."""


@dataclass(frozen=True)
class CheckedBatch:
    """The events of one request that passed validation (with their request positions), and the rest."""

    events: list[EventIn]
    positions: list[int]
    rejected: list[RejectedEvent]


def _field(loc: Sequence[Any]) -> str | None:
    return ".".join(str(p) for p in loc) or None


def _reject_reason(exc: ValidationError) -> tuple[str | None, str]:
    """The first error of a failed event: the field it names and a readable reason."""
    err = exc.errors(include_url=False)[0]
    field = _field(err.get("loc", ()))
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    return field, msg.removeprefix("Value error, ")


def default_event_id(event: EventIn) -> str:
    """A stable id for an event sent without one, from its whole content (every field, properties
    included; the time as an instant): the same event re-sent gets the same id, two events that differ
    in anything (a quantity, a device, a property) get different ids."""
    body = event.model_dump(mode="json", exclude={"event_id"})
    body["timestamp"] = event.timestamp.astimezone(UTC).isoformat()
    key = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "api-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def check_events(raw: Sequence[Any], settings: Settings, now: datetime) -> CheckedBatch:
    """Validate every event on its own (schema, then plausibility against the configuration)."""
    cfg = settings.serving
    oldest = now - timedelta(days=cfg.max_event_age_days)
    latest = now + timedelta(seconds=cfg.max_future_seconds)
    events: list[EventIn] = []
    positions: list[int] = []
    rejected: list[RejectedEvent] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            rejected.append(RejectedEvent(index=i, reason="an event must be a JSON object"))
            continue
        event_id = item.get("event_id") if isinstance(item.get("event_id"), str) else None
        try:
            event = EventIn.model_validate(item)
        except ValidationError as exc:
            field, reason = _reject_reason(exc)
            rejected.append(RejectedEvent(index=i, event_id=event_id, field=field, reason=reason))
            continue
        problem = None
        if event.currency is not None and event.currency not in settings.fx_rates:
            problem = ("currency", f"unknown currency {event.currency!r} (known: {', '.join(sorted(settings.fx_rates))})")
        elif event.amount is not None and event.amount > cfg.max_amount:
            problem = ("amount", f"amount {event.amount:g} is above the plausible maximum {cfg.max_amount:g}")
        elif not oldest <= event.timestamp <= latest:
            problem = ("timestamp", f"timestamp {event.timestamp.isoformat()} is outside "
                                    f"[{oldest.isoformat(timespec='seconds')}, {latest.isoformat(timespec='seconds')}]")
        if problem:
            rejected.append(RejectedEvent(index=i, event_id=event_id, field=problem[0], reason=problem[1]))
            continue
        if event.event_id is None:
            event = event.model_copy(update={"event_id": default_event_id(event)})
        if event.properties:  # personal keys hashed or dropped at the door (privacy.personal_properties)
            event = event.model_copy(update={"properties": personal_properties_scrubbed(event.properties, settings)})
        event = pseudonymised_ids(event, settings)
        events.append(event)
        positions.append(i)
    return CheckedBatch(events, positions, rejected)


def pseudonymised_ids(event: EventIn, settings: Settings) -> EventIn:
    """The event with its anonymous, device and session ids replaced by their keyed tokens
    (``privacy.pseudonymised_ids``), as the file door does: the log and the stores never hold them raw."""
    update = {f: token(v, settings.hash_salt, ID_KINDS[f]) for f in settings.privacy.pseudonymised_ids
              if (v := getattr(event, f)) is not None}
    return event.model_copy(update=update) if update else event


def personal_properties_scrubbed(properties: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``properties`` with the configured personal keys hashed or dropped and e-mails/phones tokenised."""
    personal = {k.lower(): v for k, v in settings.privacy.personal_properties.items()}
    return json.loads(scrub_properties(json.dumps(properties), personal, settings.hash_salt) or "{}")


def log_records(events: Sequence[EventIn]) -> list[dict[str, Any]]:
    """The events as JSON objects for the durable log (the ``api`` channel's file format)."""
    out = []
    for e in events:
        row = e.model_dump(mode="json")  # empty fields as null: every file has every column
        if e.properties is not None:
            row["properties"] = json.dumps(e.properties, sort_keys=True)
        out.append(row)
    return out


def canonical_frame(events: Sequence[EventIn], settings: Settings, graph: pd.DataFrame) -> pd.DataFrame:
    """The events in the canonical schema (UTC, base currency), identities resolved through the graph
    plus the links the batch itself carries (an identify event re-keys the visitor's other events).
    When every event names its user (no pointer alias), the graph changes no event's user and the
    stitch, pandas work over the whole graph, is skipped."""
    from ingestion.identity import POINTER_PREFIXES, stitch

    fx = settings.fx_rates
    frame = pd.DataFrame({
        "event_id": [e.event_id for e in events],
        "user_id": pd.Series([e.user_id for e in events], dtype=object),
        "anonymous_id": pd.Series([e.anonymous_id for e in events], dtype=object),
        "device_id": pd.Series([e.device_id for e in events], dtype=object),
        "event_type": [e.event_type for e in events],
        "channel": API_CHANNEL,
        "timestamp": pd.to_datetime([e.timestamp for e in events], utc=True),
        "amount": [None if e.amount is None else e.amount * fx[e.currency or settings.base_currency] for e in events],
        "currency": [settings.base_currency if e.amount is not None else None for e in events],
        "quantity": [e.quantity for e in events],
        "category": [e.category for e in events],
        "product_id": [e.product_id for e in events],
        "device": [e.device for e in events],
        "session_id": [e.session_id for e in events],
    })
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce").astype(float)
    if all(e.user_id and not e.user_id.startswith(POINTER_PREFIXES) for e in events):
        return frame  # what stitch would give: each event's own user id
    resolved, _ = stitch(frame, graph)
    return resolved
