"""The raw-shape suite of a channel, derived from its configuration: required source columns present,
not mostly empty, timestamps and numbers plausible for the declared unit.

Every expectation is batch-level: a file that fails one (wrong schema, a column that drifted, epoch
seconds where milliseconds were declared) is quarantined whole before it is mapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingestion.canonical import required_fields
from persona.config import ChannelConfig

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation

MOSTLY = 0.9
"""Share of rows that must pass a raw check; the rest is left to the row-level checks downstream."""

TIMESTAMP_PATTERNS: dict[str, str] = {
    "s": r"^\s*\d{9,10}(?:\.\d+)?\s*$",
    "ms": r"^\s*\d{12,13}(?:\.\d+)?\s*$",
    "us": r"^\s*\d{15,16}\s*$",
    "iso8601": r"^\s*\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?",
}
"""What a plausible timestamp looks like per unit (epochs between 2001 and 2286)."""

NUMBER = r"^\s*-?\d+(?:[.,]\d+)?\s*$"

SAMPLE_ROWS = 50_000
"""Rows of a file the raw suite looks at: its checks are shares (``mostly``) and column presence, so an
evenly spaced sample decides them as the whole file would; every row is checked after mapping."""


def raw_expectations(cfg: ChannelConfig) -> list[Expectation]:
    """The expectations for one channel's raw files (all batch-level)."""
    import great_expectations as gx

    e = gx.expectations
    batch = {"level": "batch"}
    required = sorted(required_fields(cfg))
    sources = [cfg.columns[f] for f in required]
    out: list[Expectation] = [
        e.ExpectTableRowCountToBeBetween(min_value=1, meta=batch),
        e.ExpectTableColumnsToMatchSet(column_set=sources, exact_match=False, meta=batch),
    ]
    for field in required:
        if field in ("timestamp", "event_id", "event_type"):
            out.append(e.ExpectColumnValuesToNotBeNull(column=cfg.columns[field], mostly=MOSTLY,
                                                       meta={**batch, "note": f"source of {field}"}))
    pattern = TIMESTAMP_PATTERNS.get(cfg.timestamp.unit)
    if pattern:
        out.append(e.ExpectColumnValuesToMatchRegex(
            column=cfg.columns["timestamp"], regex=pattern, mostly=MOSTLY,
            meta={**batch, "note": f"timestamps look like unit {cfg.timestamp.unit}"}))
    if "amount" in required:
        out.append(e.ExpectColumnValuesToMatchRegex(column=cfg.columns["amount"], regex=NUMBER, mostly=MOSTLY,
                                                    meta={**batch, "note": "amount is a number"}))
    return out


def shape_sample(rows: "pd.DataFrame", limit: int = SAMPLE_ROWS) -> "pd.DataFrame":
    """Every k-th row so that at most ``limit`` rows remain (all rows of a small file)."""
    step = max(1, -(-len(rows) // limit))
    return rows.iloc[::step]


def checked_columns(cfg: ChannelConfig) -> list[str]:
    """Source columns the raw suite looks at (only these need to reach GX)."""
    return sorted({cfg.columns[f] for f in required_fields(cfg)})
