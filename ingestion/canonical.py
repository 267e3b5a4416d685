"""Map a channel's raw rows onto the canonical event schema (UTC times, one currency, hashed PII)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingestion.schema import CANONICAL_COLUMNS, EVENT_TYPES, MAPPABLE_FIELDS
from persona.config import ChannelConfig, Settings


@dataclass
class Canonicalised:
    """Canonical rows plus the rows that could not be mapped, with a reason each."""

    events: pd.DataFrame
    rejects: pd.DataFrame
    """Raw rows (with ``source_row``) and columns ``check``, ``column``, ``reason``."""


def hash_pii(values: pd.Series, salt: str, kind: str) -> pd.Series:
    """Salted SHA-256 of normalised emails/phones; null stays null."""
    def norm(v: str) -> str:
        v = v.strip().lower()
        return "".join(ch for ch in v if ch.isdigit() or ch == "+") if kind == "phone" else v

    out = values.map(
        lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) or v == ""
        else hashlib.sha256(f"{salt}:{norm(str(v))}".encode()).hexdigest()
    )
    return out.astype(object)


def parse_timestamps(values: pd.Series, unit: str, fmt: str | None, timezone: str) -> pd.Series:
    """Parse per the channel's timestamp spec into UTC; unparseable values become NaT."""
    if unit in ("s", "ms", "us"):
        numbers = pd.to_numeric(values, errors="coerce")
        return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    if unit == "format":
        local = pd.to_datetime(values, format=fmt, errors="coerce")
        return local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    text = values.astype("string")
    has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        out[has_offset] = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="ISO8601")
    if (~has_offset).any():
        naive = pd.to_datetime(text[~has_offset], errors="coerce", format="ISO8601")
        local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward")
        out[~has_offset] = local.dt.tz_convert("UTC")
    return out


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype(str).str.strip() == "")


def canonicalise(raw: pd.DataFrame, channel: str, cfg: ChannelConfig, settings: Settings, source_file: str) -> Canonicalised:
    """Map ``raw`` (strings + ``source_row``) to canonical events; unmappable rows become rejects."""
    n = len(raw)
    missing = [src for src in cfg.columns.values() if src not in raw.columns]
    required = {"timestamp", "event_id"} | ({"event_type"} if not cfg.event_type else set())
    missing_required = [c for c, src in cfg.columns.items() if src in missing and c in required]
    if missing_required:
        cols = ", ".join(f"{cfg.columns[c]!r} (for {c})" for c in missing_required)
        raise MissingColumns(f"{source_file}: missing required column(s) {cols}")
    out = pd.DataFrame(index=raw.index)
    for field, src in cfg.columns.items():
        if field not in MAPPABLE_FIELDS:
            raise ValueError(f"channel {channel}: cannot map onto canonical field {field!r}")
        col = raw[src] if src in raw.columns else pd.Series(None, index=raw.index, dtype=object)
        out[field] = col.where(~_blank(col), None).astype(object)
    reasons = pd.Series("", index=raw.index, dtype=object)
    columns = pd.Series("", index=raw.index, dtype=object)

    def reject(mask: pd.Series, column: str, why: pd.Series | str) -> None:
        fresh = mask & (reasons == "")
        reasons.loc[fresh] = why if isinstance(why, str) else why[fresh]
        columns.loc[fresh] = column

    # event type
    if cfg.event_type:
        out["event_type"] = cfg.event_type
    else:
        source_types = out["event_type"]
        mapped = source_types.map(cfg.event_types) if cfg.event_types else source_types
        unknown = mapped.isna() | ~mapped.isin(EVENT_TYPES)
        reject(unknown, "event_type", "unknown event type " + source_types.astype(str).str.slice(0, 40))
        out["event_type"] = mapped
    # timestamp
    ts_src = out["timestamp"]
    ts = parse_timestamps(ts_src, cfg.timestamp.unit, cfg.timestamp.format, cfg.timestamp.timezone)
    reject(ts.isna(), "timestamp", "cannot parse timestamp " + ts_src.astype(str).str.slice(0, 40))
    out["timestamp"] = ts
    # numbers
    for field in ("amount", "quantity"):
        if field in out:
            num = pd.to_numeric(out[field], errors="coerce")
            reject(num.isna() & out[field].notna(), field, f"{field} is not a number: " + out[field].astype(str).str.slice(0, 40))
            out[field] = num.astype("float64")
        else:
            out[field] = np.nan
    # currency → base currency
    if "currency" not in out:
        out["currency"] = cfg.currency if "amount" in cfg.columns else None
    cur = out["currency"].where(out["currency"].notna(), cfg.currency)
    rate = cur.map(settings.fx_rates)
    has_amount = out["amount"].notna()
    reject(has_amount & rate.isna(), "currency", "unknown currency " + cur.astype(str))
    out["amount"] = (out["amount"] * rate).round(2)
    out["currency"] = np.where(has_amount, settings.base_currency, None)
    # identifiers
    ids = out["event_id"]
    reject(ids.isna(), "event_id", "missing event id")
    event_id = channel + ":" + ids.astype(str)
    for key_field in cfg.natural_key:
        if key_field != "event_id":
            event_id = event_id + "|" + out[key_field].astype(str)
    out["event_id"] = event_id
    for pii_col, kind in cfg.pii.items():
        if pii_col in raw.columns:
            out[f"{kind}_hash"] = hash_pii(raw[pii_col].where(~_blank(raw[pii_col]), None), settings.hash_salt, kind)
    out["channel"] = channel
    out["source_file"] = source_file
    out["source_row"] = raw["source_row"].astype("int64")
    for col in CANONICAL_COLUMNS:
        if col not in out:
            out[col] = None
    bad = reasons != ""
    rejects = raw.loc[bad].copy()
    rejects["check"] = "canonical_mapping"
    rejects["column"] = columns[bad]
    rejects["reason"] = reasons[bad]
    events = out.loc[~bad, list(CANONICAL_COLUMNS)].reset_index(drop=True)
    if n and events.empty and not bad.any():
        events = out.loc[:, list(CANONICAL_COLUMNS)]
    return Canonicalised(events=events, rejects=rejects.reset_index(drop=True))


class MissingColumns(ValueError):
    """A file lacks a column its channel mapping requires (the whole batch is rejected)."""
