"""Map a channel's raw rows onto the canonical event schema (UTC times, one currency, hashed PII).

The work is done on Arrow arrays (:func:`canonicalise_table`): blanks and numbers are read from the
text by :mod:`base.text_values`, times by :mod:`ingestion.timestamps`, event types and currencies
through dictionary lookups, PII hashed once per distinct value. The failing rows' messages are built
for those rows only; hashed natural keys go through pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from base.pseudonym import pseudonym
from base.schema import CANONICAL_SCHEMA, EVENT_TYPES, MAPPABLE_FIELDS
from base.text_values import blank_to_null, distinct, message, python_values, text_array, text_column, to_float
from ingestion.timestamps import NAT, parse_ns, parse_timestamps, timestamp_reasons
from base.config import ChannelConfig, Settings

__all__ = ["Canonicalised", "CanonicalTable", "MissingColumns", "canonicalise", "canonicalise_table", "hash_pii",
           "natural_key_ids", "parse_timestamps"]


@dataclass
class Canonicalised:
    """Canonical rows plus the rows that could not be mapped, with a reason each."""

    events: pd.DataFrame
    rejects: pd.DataFrame
    """Raw rows (with ``source_row``) and columns ``check``, ``column``, ``reason``."""


@dataclass
class CanonicalTable:
    """Canonical events as Arrow (exactly ``CANONICAL_SCHEMA``) plus the rows that could not be mapped."""

    events: pa.Table
    rejects: pd.DataFrame
    """Raw rows as text (with ``source_row``) and columns ``check``, ``column``, ``reason``."""


class MissingColumns(ValueError):
    """A file lacks a column its channel mapping requires (the whole batch is rejected)."""


# ------------------------------------------------------------------------------------ identifiers


def hash_pii(values: pd.Series, salt: str, kind: str) -> pd.Series:
    """Keyed pseudonyms (HMAC-SHA256) of normalised emails/phones; null stays null. Hashes each distinct value once."""
    hashed = _hash_pii(text_array(values), salt, kind)
    return pd.Series(hashed.to_numpy(zero_copy_only=False), index=values.index, dtype=object)


_NOT_PHONE = re.compile(r"[^0-9+]")


def _pii_key(value: str, kind: str) -> str | None:
    """The normalised email/phone (trimmed, lower case; a phone keeps only digits and '+'), None when empty."""
    text = value.strip().lower()
    if kind == "phone":
        text = _NOT_PHONE.sub("", text)
    return text or None


def _hash_pii(arr: pa.StringArray, salt: str, kind: str) -> pa.StringArray:
    """Keyed pseudonyms (HMAC-SHA256) of ``arr``'s normalised values (normalised and hashed once per distinct value)."""
    values, codes = distinct(arr)
    digests: dict[str | None, str | None] = {None: None}
    out = []
    for value in values:
        key = _pii_key(value, kind)
        if key not in digests:
            digests[key] = pseudonym(value, salt, kind)  # keyed HMAC-SHA256 (base/pseudonym.py)
        out.append(digests[key])
    return pa.array(out + [None], type=pa.string()).take(codes)


def natural_key_ids(frame: pd.DataFrame, fields: list[str]) -> pd.Series:
    """A stable id per row from the values of ``fields`` (64-bit hash, vectorised; same values, same id)."""
    keys = pd.DataFrame({f: frame[f].astype("string").fillna("\x00") for f in fields}, index=frame.index)
    hashed = pd.util.hash_pandas_object(keys, index=False, categorize=True)
    return hashed.astype("uint64").astype(str)


# --------------------------------------------------------------------------------------- mapping


class _Rejects:
    """The first failing check of each row, in the order the checks run; messages built for those rows only."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self._parts: list[tuple[np.ndarray, str, pa.Array]] = []

    def add(self, failing: np.ndarray, column: str, why: str | Callable[[np.ndarray], pa.Array]) -> None:
        """Record ``column`` and a reason for each failing row that has none yet."""
        rows = np.flatnonzero(failing & ~self.bad)
        if not len(rows):
            return
        self.bad[rows] = True
        self._parts.append((rows, column, pa.repeat(why, len(rows)) if isinstance(why, str) else why(rows)))

    def frame(self, raw: pa.Table) -> pd.DataFrame:
        """The raw rows that failed (in input order) with ``check``, ``column`` and ``reason``."""
        rows = np.concatenate([p[0] for p in self._parts]) if self._parts else np.zeros(0, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        taken = raw.take(rows[order])
        out = pd.DataFrame({name: python_values(col) for name, col in zip(taken.column_names, taken.columns)})
        if "source_row" in out:
            out["source_row"] = out["source_row"].astype("int64")
        columns = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in self._parts] or [np.zeros(0, object)])
        reasons = np.concatenate([p[2].to_numpy(zero_copy_only=False) for p in self._parts] or [np.zeros(0, object)])
        out["check"] = "canonical_mapping"
        out["column"] = columns[order]
        out["reason"] = reasons[order]
        return out


def _check_mapping(columns: list[str], channel: str, cfg: ChannelConfig, source_file: str) -> None:
    """Raise for a file that lacks a required column or a mapping onto an unknown field."""
    missing = [src for src in cfg.columns.values() if src not in columns]
    missing_required = [c for c, src in cfg.columns.items() if src in missing and c in cfg.required_fields()]
    if missing_required:
        cols = ", ".join(f"{cfg.columns[c]!r} (for {c})" for c in missing_required)
        raise MissingColumns(f"{source_file}: missing required column(s) {cols}")
    if not cfg.event_type and "event_type" not in cfg.columns:
        raise MissingColumns(f"{source_file}: channel {channel} maps no event type and sets no fixed event_type")
    for field in cfg.columns:
        if field not in MAPPABLE_FIELDS:
            raise ValueError(f"channel {channel}: cannot map onto canonical field {field!r}")


def _event_types(source: pa.StringArray | None, cfg: ChannelConfig, n: int, rejects: _Rejects) -> pa.StringArray:
    """The fixed event type, or the source values mapped through ``cfg.event_types`` (unknown → reject)."""
    if cfg.event_type:
        return pa.repeat(pa.scalar(cfg.event_type, pa.string()), n)
    assert source is not None
    values, codes = distinct(source)
    mapped = [cfg.event_types.get(v) for v in values] if cfg.event_types else values
    known = np.array([m in EVENT_TYPES for m in mapped] + [False])
    rejects.add(~known[codes], "event_type", lambda rows: message("unknown event type ", source.take(rows)))
    return pa.array(mapped + [None], type=pa.string()).take(codes)


def _numbers(values: pa.StringArray | None, field: str, n: int, rejects: _Rejects) -> np.ndarray:
    """A numeric field as float64 (NaN when absent); a value that is not a number → reject."""
    if values is None:
        return np.full(n, np.nan)
    out = to_float(values)
    failing = np.isnan(out) & pc.is_valid(values).to_numpy(zero_copy_only=False)
    rejects.add(failing, field, lambda rows: message(f"{field} is not a number: ", values.take(rows)))
    return out


def _base_amounts(amount: np.ndarray, currency: pa.StringArray | None, cfg: ChannelConfig, settings: Settings,
                  rejects: _Rejects) -> tuple[np.ndarray, pa.StringArray]:
    """Amounts converted to the base currency (rounded to cents) and the currency column (base where an amount)."""
    has_amount = ~np.isnan(amount)
    if currency is None:  # the channel's currency for every row
        given: pa.Array = pa.repeat(pa.scalar(cfg.currency, pa.string()), len(amount))
        rate: np.ndarray | float = settings.fx_rates.get(cfg.currency, np.nan) if cfg.currency else np.nan
        unknown = has_amount & bool(np.isnan(rate))
    else:
        given = pc.fill_null(currency, cfg.currency) if cfg.currency else currency
        values, codes = distinct(given)
        rate = np.array([settings.fx_rates.get(v, np.nan) for v in values] + [np.nan], dtype=np.float64)[codes]
        unknown = has_amount & np.isnan(rate)
    rejects.add(unknown, "currency", lambda rows: message("unknown currency ", given.take(rows)))
    base = pc.if_else(pa.array(has_amount), pa.scalar(settings.base_currency), pa.scalar(None, pa.string()))
    return np.round(amount * rate, 2), base


@dataclass
class _Mapped:
    """The canonical fields of every row (rejected ones included) as the checks left them."""

    text: dict[str, pa.StringArray]
    """Text fields: mapped source values (blanks → null), ``event_type`` and ``currency`` as mapped."""
    timestamp_ns: np.ndarray
    numbers: dict[str, np.ndarray]

    def series(self, field: str) -> pd.Series:
        """One field as today's pandas column (the spelling natural keys are built from)."""
        if field == "timestamp":
            return pd.Series(self.timestamp_ns.view("datetime64[ns]")).dt.tz_localize("UTC")
        if field in self.numbers:
            return pd.Series(self.numbers[field])
        return pd.Series(self.text[field].to_numpy(zero_copy_only=False), dtype=object)


def _event_ids(mapped: _Mapped, channel: str, cfg: ChannelConfig, rejects: _Rejects,
               line: tuple[str, np.ndarray] | None = None) -> pa.StringArray:
    """``channel:id`` (plus ``|`` and the other natural-key fields), or ``channel:h`` + a hash of the natural key."""
    if "event_id" in cfg.columns:
        ids = mapped.text["event_id"]
        rejects.add(~pc.is_valid(ids).to_numpy(zero_copy_only=False), "event_id", "missing event id")
        keys = [f for f in cfg.natural_key if f != "event_id"]
        if not keys:  # a prefix insert is much cheaper than a join
            return pc.binary_replace_slice(ids, start=0, stop=0, replacement=f"{channel}:")
        parts: list[pa.Array | str] = [f"{channel}:", ids]
        for field in keys:
            if field in mapped.text:
                text = pc.fill_null(mapped.text[field], "None")
            else:  # times and numbers spelled as pandas does
                text = pa.array(mapped.series(field).astype(str).to_numpy(dtype=object), type=pa.string())
            parts += ["|", text]
        return pc.binary_join_element_wise(*parts, "")
    fields = cfg.natural_key or sorted(f for f in cfg.columns if f != "event_id")
    keyed = pd.DataFrame({f: mapped.series(f) for f in fields})
    if cfg.key_on_line and line is not None:  # the line's place: file content + row (not the file's name)
        keyed["@file"], keyed["@row"] = line[0], line[1]
        fields = [*fields, "@file", "@row"]
    if "timestamp" in fields:
        ts = keyed["timestamp"]
        # integer nanoseconds (nullable, so one unparseable time cannot turn every key into a float)
        keyed["timestamp"] = pd.Series(ts.astype("int64"), index=ts.index, dtype="Int64").where(ts.notna(), pd.NA)
    hashed = natural_key_ids(keyed, fields)
    return pc.binary_join_element_wise(f"{channel}:h", pa.array(hashed.to_numpy(dtype=object), type=pa.string()), "")


def canonicalise_table(raw: pa.Table, channel: str, cfg: ChannelConfig, settings: Settings,
                       source_file: str, file_digest: str = "") -> CanonicalTable:
    """Map ``raw`` (text columns + ``source_row``) onto canonical events; unmappable rows become rejects.
    ``file_digest`` (the file's content hash) keys ids on the line for channels with ``key_on_line``.

    Checks run in this order and a row's first failure is its reason: event type, timestamp, amount,
    quantity, currency, event id.
    """
    _check_mapping(raw.column_names, channel, cfg, source_file)
    n = raw.num_rows
    text = {field: blank_to_null(text_column(raw, src)) if src in raw.column_names else pa.nulls(n, pa.string())
            for field, src in cfg.columns.items()}
    rejects = _Rejects(n)
    text["event_type"] = _event_types(text.get("event_type"), cfg, n, rejects)
    spec = cfg.timestamp
    source_times = text.pop("timestamp")
    ns = parse_ns(source_times, spec)
    rejects.add(ns == NAT, "timestamp", lambda rows: timestamp_reasons(source_times.take(rows), spec))
    numbers = {f: _numbers(text.pop(f, None), f, n, rejects) for f in ("amount", "quantity")}
    numbers["amount"], text["currency"] = _base_amounts(numbers["amount"], text.get("currency"), cfg, settings,
                                                        rejects)
    mapped = _Mapped(text, ns, numbers)
    line = (file_digest or source_file, raw.column("source_row").to_numpy()) if cfg.key_on_line else None
    text["event_id"] = _event_ids(mapped, channel, cfg, rejects, line)
    for pii_col, kind in cfg.pii.items():
        if pii_col in raw.column_names:
            text[f"{kind}_hash"] = _hash_pii(text_column(raw, pii_col), settings.hash_salt, kind)
    keep = ~rejects.bad
    kept = keep.all()
    m = int(keep.sum())
    mask = None if kept else pa.array(keep)
    columns: dict[str, pa.Array] = {name: arr if kept else arr.filter(mask) for name, arr in text.items()}
    source_row = raw.column("source_row").to_numpy().astype(np.int64, copy=False)
    times = ns if kept else ns[keep]
    columns.update({
        "timestamp": pa.array(times // 1000, type=pa.timestamp("us", tz="UTC")),  # floor to whole µs
        "amount": pa.array(numbers["amount"] if kept else numbers["amount"][keep], from_pandas=True),
        "quantity": pa.array(numbers["quantity"] if kept else numbers["quantity"][keep], from_pandas=True),
        "channel": pa.repeat(pa.scalar(channel, pa.string()), m),
        "source_file": pa.repeat(pa.scalar(source_file, pa.string()), m),
        "source_row": pa.array(source_row if kept else source_row[keep]),
    })
    events = pa.table([columns.get(f.name, pa.nulls(m, f.type)) for f in CANONICAL_SCHEMA], schema=CANONICAL_SCHEMA)
    return CanonicalTable(events=events, rejects=rejects.frame(raw))


def _arrow_input(raw: pd.DataFrame) -> pa.Table:
    """A raw pandas frame as the Arrow input of :func:`canonicalise_table` (text columns + int64 ``source_row``)."""
    columns = {name: pa.array(raw[name].to_numpy(dtype="int64")) if name == "source_row" else text_array(raw[name])
               for name in raw.columns}
    return pa.table(columns)


def canonicalise(raw: pd.DataFrame, channel: str, cfg: ChannelConfig, settings: Settings, source_file: str) -> Canonicalised:
    """Map ``raw`` (strings + ``source_row``) to canonical events as pandas (see :func:`canonicalise_table`)."""
    mapped = canonicalise_table(_arrow_input(raw), channel, cfg, settings, source_file)
    events = mapped.events.to_pandas(coerce_temporal_nanoseconds=True)  # nanosecond times, as before
    if events.empty:  # an all-null column of no rows would come out bool
        events = events.astype({"is_outlier": object})
    return Canonicalised(events=events, rejects=mapped.rejects)
