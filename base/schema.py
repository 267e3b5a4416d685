"""The canonical event schema: one row per behaviour event, whatever channel it came from."""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "purchase",
    "refund",
    "like",
    "share",
    "comment",
    "support_ticket",
    "identify",
)
"""Canonical event types; ``identify`` links an anonymous or device id to a known user."""

MONETARY_EVENTS: tuple[str, ...] = ("purchase", "refund")

CANONICAL_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("device_id", pa.string()),
        pa.field("email_hash", pa.string()),
        pa.field("phone_hash", pa.string()),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("amount", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("quantity", pa.float64()),
        pa.field("category", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("device", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("properties", pa.string()),
        pa.field("is_outlier", pa.bool_()),
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
    ]
)
"""Arrow schema of the clean event store. ``amount`` is in the base currency; ``is_outlier`` marks
rows the configured outlier rule flagged (kept, not quarantined)."""

CANONICAL_COLUMNS: tuple[str, ...] = tuple(CANONICAL_SCHEMA.names)
STRING_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in CANONICAL_SCHEMA if pa.types.is_string(f.type)
)
MAPPABLE_FIELDS: frozenset[str] = frozenset(CANONICAL_COLUMNS) - {
    "channel",
    "source_file",
    "source_row",
    "email_hash",
    "phone_hash",
    "is_outlier",
}
"""Canonical fields a channel's ``columns`` mapping may fill."""
