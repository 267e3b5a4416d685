"""Map a channel's raw rows onto the canonical event schema (UTC times, one currency, hashed PII)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.frames import renumber
from ingestion.schema import CANONICAL_COLUMNS, EVENT_TYPES, MAPPABLE_FIELDS
from persona.config import ChannelConfig, Settings


@dataclass
class Canonicalised:
    """Canonical rows plus the rows that could not be mapped, with a reason each."""

    events: pd.DataFrame
    rejects: pd.DataFrame
    """Raw rows (with ``source_row``) and columns ``check``, ``column``, ``reason``."""


def hash_pii(values: pd.Series, salt: str, kind: str) -> pd.Series:
    """Salted SHA-256 of normalised emails/phones; null stays null. Hashes each distinct value once."""
    text = values.astype("string").str.strip().str.lower()
    if kind == "phone":
        text = text.str.replace(r"[^0-9+]", "", regex=True)
    text = text.where(text.notna() & (text != ""), None)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    digests = np.asarray([hashlib.sha256(f"{salt}:{u}".encode()).hexdigest() for u in uniques] + [None], dtype=object)
    return pd.Series(digests[codes], index=values.index, dtype=object)


def natural_key_ids(frame: pd.DataFrame, fields: list[str]) -> pd.Series:
    """A stable id per row from the values of ``fields`` (64-bit hash, vectorised; same values, same id)."""
    keys = pd.DataFrame({f: frame[f].astype("string").fillna("\x00") for f in fields}, index=frame.index)
    hashed = pd.util.hash_pandas_object(keys, index=False, categorize=True)
    return hashed.astype("uint64").astype(str)


_EPOCH_LIMIT_S = 9e9
"""Epoch seconds beyond this (year 2255) are unparseable: nanoseconds would overflow int64."""


def _localize(naive: pd.Series, timezone: str, ambiguous: str, nonexistent: str) -> pd.Series:
    """Naive local times → UTC under the DST policy (a time DST makes ambiguous or skips may become NaT)."""
    if ambiguous == "quarantine":
        flags: str | np.ndarray = "NaT"
    else:
        flags = np.full(len(naive), ambiguous == "earliest")  # True = the DST (first, earlier) instant
    local = naive.dt.tz_localize(timezone, ambiguous=flags,
                                 nonexistent="NaT" if nonexistent == "quarantine" else "shift_forward")
    return local.dt.tz_convert("UTC")


def parse_timestamps(values: pd.Series, unit: str, fmt: str | None, timezone: str, *,
                     ambiguous: str = "quarantine", nonexistent: str = "shift_forward") -> pd.Series:
    """Parse per the channel's timestamp spec into UTC; unparseable values become NaT.

    Local times without an offset follow the DST policy: ``ambiguous`` (``earliest``, ``latest`` or
    ``quarantine`` = NaT) for a time that occurs twice, ``nonexistent`` (``shift_forward`` or
    ``quarantine``) for a time the clock skips.
    """
    if unit in ("s", "ms", "us"):
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        limit = _EPOCH_LIMIT_S * {"s": 1, "ms": 1e3, "us": 1e6}[unit]
        valid = (numbers.abs() < limit).to_numpy()  # beyond 2255: unparseable, not an overflow; NaN too
        factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}[unit]
        x = numbers.to_numpy()[valid]
        whole = np.floor(x)
        nanos = whole.astype("int64") * factor + np.rint((x - whole) * factor).astype("int64")
        out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
        # only finite, in-range values reach pandas (its float path can raise on NaN slots)
        out[valid] = pd.to_datetime(nanos, unit="ns", utc=True)
        return out
    if unit == "format":
        local = pd.to_datetime(values, format=fmt, errors="coerce")
        return _localize(local, timezone, ambiguous, nonexistent)
    text = values.astype("string")
    arr = _arrow_text(values)
    if arr is None:
        has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
    else:
        matched = pc.fill_null(pc.match_substring_regex(arr, r"(?:Z|[+-]\d\d:?\d\d)$"), False)
        has_offset = pd.Series(matched.to_numpy(zero_copy_only=False), index=values.index)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        out[has_offset] = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="ISO8601")
    if (~has_offset).any():
        naive = pd.to_datetime(text[~has_offset], errors="coerce", format="ISO8601")
        out[~has_offset] = _localize(naive, timezone, ambiguous, nonexistent)
    return out


def _timestamp_reasons(values: pd.Series, cfg: ChannelConfig) -> pd.Series:
    """Why timestamps failed to parse: a local time DST makes ambiguous or skips (under a ``quarantine``
    policy), or an unparseable value. Only called for the failing rows."""
    spec = cfg.timestamp
    text = values.astype(str).str.slice(0, 40)
    reasons = "cannot parse timestamp " + text
    if spec.unit in ("s", "ms", "us"):
        return reasons
    strict = parse_timestamps(values, spec.unit, spec.format, spec.timezone, ambiguous="earliest",
                              nonexistent="shift_forward")
    dst = strict.notna()
    return reasons.where(~dst, "local time " + text + f" is ambiguous or does not exist in {spec.timezone} "
                         "(DST change; see timestamp.ambiguous / timestamp.nonexistent)")


def _arrow_text(series: pd.Series) -> pa.Array | None:
    """The column as an Arrow string array (None when it holds non-text values)."""
    try:
        return pa.array(series.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _blank(series: pd.Series) -> pd.Series:
    """Null or only blanks (vectorised through Arrow)."""
    arr = _arrow_text(series)
    if arr is None:
        text = series.astype("string")
        return (text.isna() | (text.str.strip() == "")).fillna(True).astype(bool)
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(arr)), 0), True)
    return pd.Series(empty.to_numpy(zero_copy_only=False), index=series.index)


def canonicalise(raw: pd.DataFrame, channel: str, cfg: ChannelConfig, settings: Settings, source_file: str) -> Canonicalised:
    """Map ``raw`` (strings + ``source_row``) to canonical events; unmappable rows become rejects."""
    missing = [src for src in cfg.columns.values() if src not in raw.columns]
    missing_required = [c for c, src in cfg.columns.items() if src in missing and c in required_fields(cfg)]
    if missing_required:
        cols = ", ".join(f"{cfg.columns[c]!r} (for {c})" for c in missing_required)
        raise MissingColumns(f"{source_file}: missing required column(s) {cols}")
    if not cfg.event_type and "event_type" not in cfg.columns:
        raise MissingColumns(f"{source_file}: channel {channel} maps no event type and sets no fixed event_type")
    out = pd.DataFrame(index=raw.index)
    for field, src in cfg.columns.items():
        if field not in MAPPABLE_FIELDS:
            raise ValueError(f"channel {channel}: cannot map onto canonical field {field!r}")
        col = raw[src] if src in raw.columns else pd.Series(None, index=raw.index, dtype=object)
        out[field] = col.where(~_blank(col), None).astype(object)
    reasons = pd.Series("", index=raw.index, dtype=object)
    columns = pd.Series("", index=raw.index, dtype=object)

    def reject(mask: pd.Series, column: str, why: Callable[[pd.Series], pd.Series] | str) -> None:
        """Record the first reason for each newly failing row (messages built for those rows only)."""
        fresh = mask & (reasons == "")
        if not fresh.any():
            return
        reasons.loc[fresh] = why if isinstance(why, str) else why(fresh)
        columns.loc[fresh] = column

    def text(values: pd.Series, prefix: str) -> Callable[[pd.Series], pd.Series]:
        return lambda rows: prefix + values[rows].astype(str).str.slice(0, 40)

    # event type
    if cfg.event_type:
        out["event_type"] = cfg.event_type
    else:
        source_types = out["event_type"]
        mapped = source_types.map(cfg.event_types) if cfg.event_types else source_types
        unknown = mapped.isna() | ~mapped.isin(EVENT_TYPES)
        reject(unknown, "event_type", text(source_types, "unknown event type "))
        out["event_type"] = mapped
    # timestamp
    ts_src = out["timestamp"]
    spec = cfg.timestamp
    ts = parse_timestamps(ts_src, spec.unit, spec.format, spec.timezone, ambiguous=spec.ambiguous,
                          nonexistent=spec.nonexistent)
    reject(ts.isna(), "timestamp", lambda rows: _timestamp_reasons(ts_src[rows], cfg))
    out["timestamp"] = ts
    # numbers
    for field in ("amount", "quantity"):
        if field in out:
            num = pd.to_numeric(out[field], errors="coerce")
            reject(num.isna() & out[field].notna(), field, text(out[field], f"{field} is not a number: "))
            out[field] = num.astype("float64")
        else:
            out[field] = np.nan
    # currency → base currency
    if "currency" not in out:
        out["currency"] = cfg.currency if "amount" in cfg.columns else None
    cur = out["currency"].where(out["currency"].notna(), cfg.currency)
    rate = cur.map(settings.fx_rates)
    has_amount = out["amount"].notna()
    reject(has_amount & rate.isna(), "currency", text(cur, "unknown currency "))
    out["amount"] = (out["amount"] * rate).round(2)
    out["currency"] = np.where(has_amount, settings.base_currency, None)
    # identifiers: the source id (plus other natural-key fields), or a hash of the natural key
    if "event_id" in cfg.columns:
        ids = out["event_id"]
        reject(ids.isna(), "event_id", "missing event id")
        event_id = channel + ":" + ids.astype(str)
        for key_field in cfg.natural_key:
            if key_field != "event_id":
                event_id = event_id + "|" + out[key_field].astype(str)
    else:
        fields = cfg.natural_key or sorted(f for f in cfg.columns if f != "event_id")
        keyed = out.assign(timestamp=ts.astype("int64").where(ts.notna(), None)) if "timestamp" in fields else out
        event_id = channel + ":h" + natural_key_ids(keyed, fields)
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
    events = renumber(out.loc[~bad, list(CANONICAL_COLUMNS)] if bad.any() else out.loc[:, list(CANONICAL_COLUMNS)])
    return Canonicalised(events=events, rejects=renumber(rejects))


def required_fields(cfg: ChannelConfig) -> set[str]:
    """Canonical fields whose source column must be present in every file of the channel."""
    return {"timestamp", "event_id", "event_type", "amount", "user_id"} & set(cfg.columns)


class MissingColumns(ValueError):
    """A file lacks a column its channel mapping requires (the whole batch is rejected)."""
