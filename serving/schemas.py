"""Request and response bodies of the persona API (pydantic models with field descriptions)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from scoring.records import PersonaRecord


EventType = Literal["page_view", "product_view", "search", "add_to_cart", "purchase", "refund", "like", "share",
                    "comment", "support_ticket", "identify"]
"""The canonical event types (base/schema.py ``EVENT_TYPES``; a test keeps them equal)."""


class PersonaResponse(BaseModel):
    """Personas for the requested users, in request order."""

    personas: list[PersonaRecord]


class EventIn(BaseModel):
    """One behaviour event in the canonical shape (amounts in ``currency``; converted to the base currency)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event_id: str | None = Field(None, min_length=1, max_length=128,
                                 description="Stable id; re-sending the same id is harmless (default: a hash of the event)")
    user_id: str | None = Field(None, min_length=1, max_length=128, description="Known customer id")
    anonymous_id: str | None = Field(None, min_length=1, max_length=128, description="Web visitor id")
    device_id: str | None = Field(None, min_length=1, max_length=128, description="App device id")
    event_type: EventType = Field(..., description="Canonical event type")
    timestamp: AwareDatetime = Field(..., description="When it happened, with a UTC offset")
    amount: float | None = Field(None, ge=0, allow_inf_nan=False, description="Order or refund amount")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the amount")
    quantity: float | None = Field(None, ge=0, le=100_000, allow_inf_nan=False)
    category: str | None = Field(None, min_length=1, max_length=64)
    product_id: str | None = Field(None, min_length=1, max_length=128)
    device: str | None = Field(None, min_length=1, max_length=32, description="e.g. desktop, mobile, ios, android")
    session_id: str | None = Field(None, min_length=1, max_length=128)
    properties: dict[str, str | int | float | bool | None] | None = Field(
        None, max_length=32, description="Anything else (kept as JSON)")

    @model_validator(mode="after")
    def _identity_and_amount(self) -> "EventIn":
        if not (self.user_id or self.anonymous_id or self.device_id):
            raise ValueError("needs one of user_id, anonymous_id or device_id")
        if self.event_type in ("purchase", "refund") and self.amount is None:
            raise ValueError(f"a {self.event_type} needs an amount")
        if self.amount is not None and self.currency is None:
            raise ValueError("an amount needs a currency")
        return self


class RejectedEvent(BaseModel):
    """An event of the batch that was not accepted, and why."""

    index: int = Field(..., description="Position of the event in the request")
    event_id: str | None = Field(None, description="Its event_id, when it had one")
    field: str | None = Field(None, description="The field at fault (null when the event as a whole is)")
    reason: str


class EventsResponse(BaseModel):
    """What happened to a batch of events, with the updated personas of the users they touched."""

    accepted: int = Field(..., description="Events written to the durable log and pushed online")
    duplicates: int = Field(0, description="Events whose event_id this service already took (not counted twice)")
    rejected: list[RejectedEvent] = Field(default_factory=list)
    personas: list[PersonaRecord] = Field(default_factory=list, description="Updated personas of the affected users")


class ReloadResponse(BaseModel):
    """Outcome of a champion check (``POST /admin/reload-models``)."""

    outcome: Literal["unchanged", "swapped", "failed"]
    versions: dict[str, str] = Field(..., description="Target → model version now in use")
    error: str = Field("", description="Why the last load failed (the old models keep serving); empty when none")
