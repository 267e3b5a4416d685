"""Map a channel's raw rows onto the canonical event schema (UTC times, one currency, hashed PII).

The work is done on Arrow arrays (:func:`canonicalise_table`): blanks through a look at each value's
first byte, event types and currencies through dictionary lookups, plain numbers through Arrow's
cast, fixed-width date-times by reading their digits straight out of the string buffer. Only what
those fast paths leave (numbers such as ``1e3`` or with blanks around, fractional seconds, other
ISO-8601 spellings, garbage) goes through pandas with the same calls as before, for those rows only;
so do local times (the zone and its DST rules are pandas'), the failing rows' messages and hashed
natural keys.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.schema import CANONICAL_SCHEMA, EVENT_TYPES, MAPPABLE_FIELDS
from persona.config import ChannelConfig, Settings, TimestampSpec


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


def required_fields(cfg: ChannelConfig) -> set[str]:
    """Canonical fields whose source column must be present in every file of the channel."""
    return {"timestamp", "event_id", "event_type", "amount", "user_id"} & set(cfg.columns)


# --------------------------------------------------------------------------------------------- text


def _text_array(values: pd.Series) -> pa.StringArray:
    """A pandas column as Arrow text; values that are not text are spelled as ``astype("string")`` does."""
    try:
        return pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values.astype("string").to_numpy(dtype=object, na_value=None), type=pa.string())


def _text_column(raw: pa.Table, name: str) -> pa.StringArray:
    """One column of ``raw`` as a single string array."""
    col = raw.column(name)
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


_SPACE_LEAD = np.zeros(256, dtype=bool)
"""First bytes of the UTF-8 whitespace characters (ASCII blanks, U+0085/U+00A0, U+1680, U+2000.., U+3000)."""
_SPACE_LEAD[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0xC2, 0xE1, 0xE2, 0xE3]] = True


def _blank_to_null(arr: pa.StringArray) -> pa.StringArray:
    """Null for empty values and values of only whitespace (Arrow's whitespace is Python's).

    Only values that are empty or start with a byte a whitespace character can start with are checked.
    """
    b = _Bytes.of(arr)
    rows = np.flatnonzero(b.valid & ((b.sizes == 0) | _SPACE_LEAD[b.first_bytes()]))
    if not len(rows):
        return arr
    blank = np.zeros(len(arr), dtype=bool)
    blank[rows] = (b.sizes[rows] == 0) | pc.fill_null(pc.utf8_is_space(arr.take(rows)), False).to_numpy(
        zero_copy_only=False)
    if not blank.any():
        return arr
    return pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), arr)


def _clip(values: pa.Array) -> pa.Array:
    """Values as the first 40 characters of their text (``None`` for null), for messages."""
    return pc.utf8_slice_codeunits(pc.fill_null(values, "None"), 0, 40)


def _message(prefix: str, values: pa.Array, suffix: str = "") -> pa.Array:
    """``prefix + clipped value + suffix`` for each value."""
    return pc.binary_join_element_wise(prefix, _clip(values), suffix, "")


def _distinct(arr: pa.Array) -> tuple[list[str], np.ndarray]:
    """The distinct non-null values and each row's position among them (``len(values)`` for null)."""
    encoded = arr.dictionary_encode()
    values = encoded.dictionary.to_pylist()
    codes = pc.fill_null(encoded.indices, len(values)).to_numpy(zero_copy_only=False)
    return values, codes


def _python_values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as a NumPy array of Python values (text as ``str``/``None``)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_numpy(zero_copy_only=False)
    return col.to_pandas().to_numpy()


# ------------------------------------------------------------------------------------ byte access


@dataclass(frozen=True)
class _Bytes:
    """Zero-copy view of a string array's bytes: value ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray
    data: np.ndarray
    sizes: np.ndarray
    valid: np.ndarray

    @classmethod
    def of(cls, arr: pa.StringArray) -> "_Bytes":
        n = len(arr)
        buffers = arr.buffers()
        if n == 0 or buffers[1] is None:
            offsets = np.zeros(n + 1, dtype=np.int32)
        else:
            offsets = np.frombuffer(buffers[1], dtype=np.int32)[arr.offset:arr.offset + n + 1]
        data = np.frombuffer(buffers[2], dtype=np.uint8) if n and buffers[2] is not None else np.zeros(0, np.uint8)
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, dtype=bool)
        return cls(offsets, data, np.diff(offsets), valid)

    def first_bytes(self) -> np.ndarray:
        """The first byte of each value (any byte for an empty value: check ``sizes``)."""
        if not len(self.data):
            return np.zeros(len(self.sizes), dtype=np.uint8)
        return np.take(self.data, self.offsets[:-1], mode="clip")

    def block(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Bytes ``start:stop`` of each of ``rows`` (all at least ``stop`` long) as a ``len(rows) × width`` matrix.

        When every row is wanted and all have the same size this is a view of the buffer, no copy.
        """
        n = len(self.sizes)
        if len(rows) == n and n and self.sizes.min() == self.sizes.max():
            size = int(self.sizes[0])
            first = int(self.offsets[0])
            return self.data[first:first + n * size].reshape(n, size)[:, start:stop]
        return self.data[self.offsets[rows].astype(np.int64)[:, None] + np.arange(start, stop)]


_PAIRS = np.full(1 << 16, 255, dtype=np.uint8)
"""Two bytes read as one uint16 → the number their two ASCII digits spell, 255 when they are not digits."""
_PAIRS[np.frombuffer(b"".join(b"%02d" % i for i in range(100)), dtype=np.uint16)] = np.arange(100)


def _number(block: np.ndarray, start: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(the number written by ``width`` (even) ASCII digits at ``start`` of each row, the bytes are digits)."""
    value = np.zeros(len(block), dtype=np.int32)
    ok = np.ones(len(block), dtype=bool)
    for k in range(start, start + width, 2):
        pair = _PAIRS[block[:, k:k + 2].view(np.uint16)[:, 0]]
        ok &= pair <= 99
        value = value * 100 + pair
    return value, ok


def _is_byte(column: np.ndarray, allowed: bytes) -> np.ndarray:
    """Rows whose byte in ``column`` is one of ``allowed``."""
    hit = column == allowed[0]
    for extra in allowed[1:]:
        hit |= column == extra
    return hit


# ----------------------------------------------------------------------------------------- numbers

_NUMBER_CLASS = np.full(256, 1 << 15, dtype=np.int32)
"""Per byte, for a plain decimal: digits count 1, '.' 1 << 5, a sign 1 << 10, anything else 1 << 15."""
_NUMBER_CLASS[ord("0"):ord("9") + 1] = 1
_NUMBER_CLASS[ord(".")] = 1 << 5
_NUMBER_CLASS[[ord("+"), ord("-")]] = 1 << 10

_PLAIN_MAX = 16
"""Plain decimals up to this many bytes parse exactly alike in Arrow's cast and pandas (pandas' parser
is exact while the digits fit a double; longer spellings go through pandas itself)."""


def _plain_decimals(b: _Bytes, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` (1 to 16 bytes each) are plain decimals: ``[+-]?`` digits with at most one '.'."""
    at = np.arange(_PLAIN_MAX)
    starts = b.offsets[rows].astype(np.int64)
    inside = at < b.sizes[rows][:, None]
    block = b.data[np.minimum(starts[:, None] + at, len(b.data) - 1)]
    counts = np.where(inside, _NUMBER_CLASS[block], 0).sum(axis=1)
    digits, dots = counts & 31, (counts >> 5) & 31
    signs, other = (counts >> 10) & 31, counts >> 15
    leading_sign = _is_byte(block[:, 0], b"+-")
    return (digits > 0) & (dots <= 1) & (other == 0) & ((signs == 0) | ((signs == 1) & leading_sign))


def _to_float(arr: pa.StringArray) -> np.ndarray:
    """``pd.to_numeric(values, errors="coerce")`` as float64 (NaN: null or not a number).

    Short plain decimals go through Arrow's cast; every other spelling (exponents, blanks around,
    ``inf``, long digit runs, garbage) through pandas, row subset only.
    """
    n = len(arr)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    b = _Bytes.of(arr)
    short = b.valid & (b.sizes >= 1) & (b.sizes <= _PLAIN_MAX)
    plain = short & pc.fill_null(pc.ascii_is_decimal(arr), False).to_numpy(zero_copy_only=False)
    others = np.flatnonzero(short & ~plain)
    if len(others):
        plain[others] = _plain_decimals(b, others)
    rows = np.flatnonzero(plain)
    if len(rows):
        try:
            out[rows] = pc.cast(arr if len(rows) == n else arr.take(rows), pa.float64()).to_numpy()
        except pa.ArrowInvalid:  # not expected; pandas decides then
            plain[:] = False
    rest = np.flatnonzero(b.valid & ~plain)
    if len(rest):
        text = pd.Series(arr.take(rest).to_numpy(zero_copy_only=False), dtype=object)
        out[rest] = pd.to_numeric(text, errors="coerce").astype("float64").to_numpy()
    return out


# -------------------------------------------------------------------------------------- timestamps

_EPOCH_LIMIT_S = 9e9
"""Epoch seconds beyond this (year 2255) are unparseable: nanoseconds would overflow int64."""
_NAT = np.iinfo(np.int64).min
_NS = 1_000_000_000
_HAS_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"
_FIRST_YEAR, _LAST_YEAR = 1678, 2261
"""Fast-path years: pandas' nanosecond range is 1677-09-21 .. 2262-04-11; other years go through pandas."""
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@dataclass(frozen=True)
class _Layout:
    """A fixed-width date-time spelling: the first byte of each field and the bytes allowed between them."""

    width: int
    fields: dict[str, int]
    literals: tuple[tuple[int, bytes], ...]


_FIELD_WIDTH = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}
_ISO_LAYOUT = _Layout(19, {"Y": 0, "m": 5, "d": 8, "H": 11, "M": 14, "S": 17},
                      ((4, b"-"), (7, b"-"), (10, b"T "), (13, b":"), (16, b":")))
"""``YYYY-MM-DDTHH:MM:SS`` (or a blank for the ``T``), optionally followed by ``Z`` or ``±HH:MM``."""


def _layout_of(fmt: str | None) -> _Layout | None:
    """The fixed-width layout of a strptime format made of %Y %m %d %H %M %S and ASCII literals, else None."""
    if not fmt:
        return None
    fields: dict[str, int] = {}
    literals: list[tuple[int, bytes]] = []
    pos = i = 0
    while i < len(fmt):
        char = fmt[i]
        if char == "%":
            code = fmt[i + 1:i + 2]
            if code in _FIELD_WIDTH and code not in fields:
                fields[code] = pos
                pos += _FIELD_WIDTH[code]
                i += 2
                continue
            if code != "%":
                return None
            i += 1
        if not char.isascii():
            return None
        literals.append((pos, char.encode()))
        pos += 1
        i += 1
    return _Layout(pos, fields, tuple(literals)) if {"Y", "m", "d"} <= set(fields) else None


def _layout_seconds(block: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """(seconds since 1970 of the wall time, row is a valid date-time) for rows spelled per ``layout``."""
    ok = np.ones(len(block), dtype=bool)
    for pos, allowed in layout.literals:
        ok &= _is_byte(block[:, pos], allowed)
    f = {}
    for code, pos in layout.fields.items():
        f[code], digits = _number(block, pos, _FIELD_WIDTH[code])
        ok &= digits
    zero = np.zeros(len(block), dtype=np.int32)
    year, month, day = f["Y"], f["m"], f["d"]
    hour, minute, second = f.get("H", zero), f.get("M", zero), f.get("S", zero)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    last_day = _DAYS_IN_MONTH[np.where(month_ok, month - 1, 0)] + ((month == 2) & leap)
    ok &= (year >= _FIRST_YEAR) & (year <= _LAST_YEAR) & month_ok & (day >= 1) & (day <= last_day)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # days from the civil date (H. Hinnant's algorithm; years here are positive)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days.astype(np.int64) * 86400 + (hour * 3600 + minute * 60 + second), ok


def _localize(naive: pd.Series, timezone: str, ambiguous: str, nonexistent: str) -> pd.Series:
    """Naive local times → UTC under the DST policy (a time DST makes ambiguous or skips may become NaT)."""
    if ambiguous == "quarantine":
        flags: str | np.ndarray = "NaT"
    else:
        flags = np.full(len(naive), ambiguous == "earliest")  # True = the DST (first, earlier) instant
    local = naive.dt.tz_localize(timezone, ambiguous=flags,
                                 nonexistent="NaT" if nonexistent == "quarantine" else "shift_forward")
    return local.dt.tz_convert("UTC")


def _utc_ns(times: pd.Series) -> np.ndarray:
    """UTC-aware pandas times as int64 nanoseconds (NaT as ``_NAT``)."""
    utc = times.astype("datetime64[ns, UTC]").dt.tz_localize(None)
    return utc.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _localize_ns(naive_ns: np.ndarray, spec: TimestampSpec) -> np.ndarray:
    """Naive local nanoseconds → UTC nanoseconds under the channel's DST policy (pandas does the zone)."""
    if spec.timezone == "UTC" or not len(naive_ns):
        return naive_ns
    naive = pd.Series(naive_ns.view("datetime64[ns]"))
    return _utc_ns(_localize(naive, spec.timezone, spec.ambiguous, spec.nonexistent))


def _epoch_ns(arr: pa.StringArray, unit: str) -> np.ndarray:
    """Epoch numbers in ``unit`` → nanoseconds; unparseable or beyond year 2255 → NaT."""
    numbers = _to_float(arr)
    out = np.full(len(numbers), _NAT, dtype=np.int64)
    valid = np.abs(numbers) < _EPOCH_LIMIT_S * {"s": 1, "ms": 1e3, "us": 1e6}[unit]  # NaN: False
    factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}[unit]
    x = numbers[valid]
    whole = np.floor(x)
    out[valid] = whole.astype("int64") * factor + np.rint((x - whole) * factor).astype("int64")
    return out


def _format_ns(arr: pa.StringArray, spec: TimestampSpec) -> np.ndarray:
    """Local times per ``spec.format`` → UTC nanoseconds; fixed-width spellings read from the bytes."""
    out = np.full(len(arr), _NAT, dtype=np.int64)
    b = _Bytes.of(arr)
    layout = _layout_of(spec.format)
    done = np.zeros(len(arr), dtype=bool)
    if layout is not None:
        rows = np.flatnonzero(b.valid & (b.sizes == layout.width))
        seconds, ok = _layout_seconds(b.block(rows, 0, layout.width), layout)
        rows, seconds = rows[ok], seconds[ok]
        out[rows] = _localize_ns(seconds * _NS, spec)
        done[rows] = True
    rest = np.flatnonzero(b.valid & ~done)
    if len(rest):
        text = pd.Series(arr.take(rest).to_numpy(zero_copy_only=False), dtype=object)
        local = pd.to_datetime(text, format=spec.format, errors="coerce")
        out[rest] = _utc_ns(_localize(local, spec.timezone, spec.ambiguous, spec.nonexistent))
    return out


def _iso_fast(b: _Bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows spelled ``YYYY-MM-DD[T ]HH:MM:SS[Z|±HH:MM]`` with a valid date-time: (rows, seconds, has offset).

    Seconds are UTC for rows with an offset, wall time for the others.
    """
    rows = np.flatnonzero(b.valid & np.isin(b.sizes, (19, 20, 25)))
    seconds, ok = _layout_seconds(b.block(rows, 0, 19), _ISO_LAYOUT)
    sizes = b.sizes[rows]
    zulu = np.flatnonzero(sizes == 20)
    ok[zulu] &= b.data[b.offsets[rows[zulu]].astype(np.int64) + 19] == ord("Z")
    shifted = np.flatnonzero(sizes == 25)
    if len(shifted):
        tail = b.block(rows[shifted], 19, 25)
        sign = np.where(tail[:, 0] == ord("-"), -1, 1)
        (hours, hours_ok), (minutes, minutes_ok) = _number(tail, 1, 2), _number(tail, 4, 2)
        ok[shifted] &= (_is_byte(tail[:, 0], b"+-") & hours_ok & minutes_ok & (tail[:, 3] == ord(":"))
                        & (hours <= 23) & (minutes <= 59))
        seconds[shifted] -= sign * (hours * 3600 + minutes * 60)
    return rows[ok], seconds[ok], sizes[ok] > 19


def _iso_slow(arr: pa.StringArray, spec: TimestampSpec) -> np.ndarray:
    """ISO-8601 through pandas (any spelling it knows, blanks around it ignored): with an offset → UTC,
    without → local time."""
    arr = pc.utf8_trim_whitespace(arr)
    text = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object).astype("string")
    has_offset = pc.fill_null(pc.match_substring_regex(arr, _HAS_OFFSET), False).to_numpy(zero_copy_only=False)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        out[has_offset] = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="ISO8601")
    if (~has_offset).any():
        out[~has_offset] = _naive_iso(text[~has_offset], spec)
    return _utc_ns(out)


def _naive_iso(text: pd.Series, spec: TimestampSpec) -> pd.Series:
    """Times the offset pattern did not match → UTC. When pandas finds an offset after all (``+02``,
    ``…[Europe/Berlin]``) or refuses the mix, each value is parsed on its own, so one odd spelling
    cannot shift or fail the others: a value with an offset keeps its instant, garbage becomes NaT."""
    try:
        naive = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if naive.dt.tz is None:
            return _localize(naive, spec.timezone, spec.ambiguous, spec.nonexistent)
    except (TypeError, ValueError, OverflowError):
        pass
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    local = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for i, value in text.items():  # only the few values of the slow path that mix spellings
        try:
            ts = pd.Timestamp(value)
            if ts is pd.NaT:
                continue
            ts = ts.as_unit("ns")  # beyond 1677–2262: OutOfBoundsDatetime, a ValueError
        except (TypeError, ValueError, OverflowError):
            continue
        if ts.tzinfo is None:
            local[i] = ts
        else:
            out[i] = ts.tz_convert("UTC")
    is_local = local.notna()
    if is_local.any():
        out[is_local] = _localize(local[is_local], spec.timezone, spec.ambiguous, spec.nonexistent)
    return out


def _iso_ns(arr: pa.StringArray, spec: TimestampSpec) -> np.ndarray:
    """ISO-8601 → UTC nanoseconds: whole-second spellings read from the bytes, the rest through pandas."""
    out = np.full(len(arr), _NAT, dtype=np.int64)
    b = _Bytes.of(arr)
    rows, seconds, aware = _iso_fast(b)
    out[rows[aware]] = seconds[aware] * _NS
    out[rows[~aware]] = _localize_ns(seconds[~aware] * _NS, spec)
    done = np.zeros(len(arr), dtype=bool)
    done[rows] = True
    rest = np.flatnonzero(b.valid & ~done)
    if len(rest):
        out[rest] = _iso_slow(arr.take(rest), spec)
    return out


def _parse_ns(arr: pa.StringArray, spec: TimestampSpec) -> np.ndarray:
    """Parse per the channel's timestamp spec into UTC int64 nanoseconds; unparseable → ``_NAT``."""
    if spec.unit in ("s", "ms", "us"):
        return _epoch_ns(arr, spec.unit)
    if spec.unit == "format":
        return _format_ns(arr, spec)
    return _iso_ns(arr, spec)


def parse_timestamps(values: pd.Series, unit: str, fmt: str | None, timezone: str, *,
                     ambiguous: str = "quarantine", nonexistent: str = "shift_forward") -> pd.Series:
    """Parse per the channel's timestamp spec into UTC; unparseable values become NaT.

    Local times without an offset follow the DST policy: ``ambiguous`` (``earliest``, ``latest`` or
    ``quarantine`` = NaT) for a time that occurs twice, ``nonexistent`` (``shift_forward`` or
    ``quarantine``) for a time the clock skips.
    """
    spec = TimestampSpec.model_validate({"unit": unit, "format": fmt, "timezone": timezone, "ambiguous": ambiguous,
                                         "nonexistent": nonexistent})
    ns = _parse_ns(_text_array(values), spec)
    return pd.Series(ns.view("datetime64[ns]"), index=values.index).dt.tz_localize("UTC")


def _timestamp_reasons(values: pa.StringArray, spec: TimestampSpec) -> pa.Array:
    """Why timestamps failed to parse: a local time DST makes ambiguous or skips (under a ``quarantine``
    policy), or an unparseable value. Only called for the failing rows."""
    unparseable = _message("cannot parse timestamp ", values)
    if spec.unit in ("s", "ms", "us"):
        return unparseable
    lenient = spec.model_copy(update={"ambiguous": "earliest", "nonexistent": "shift_forward"})
    dst = pa.array(_parse_ns(values, lenient) != _NAT)
    return pc.if_else(dst, _message("local time ", values, f" is ambiguous or does not exist in {spec.timezone} "
                                    "(DST change; see timestamp.ambiguous / timestamp.nonexistent)"), unparseable)


# ------------------------------------------------------------------------------------ identifiers


def hash_pii(values: pd.Series, salt: str, kind: str) -> pd.Series:
    """Salted SHA-256 of normalised emails/phones; null stays null. Hashes each distinct value once."""
    hashed = _hash_pii(_text_array(values), salt, kind)
    return pd.Series(hashed.to_numpy(zero_copy_only=False), index=values.index, dtype=object)


_NOT_PHONE = re.compile(r"[^0-9+]")


def _pii_key(value: str, kind: str) -> str | None:
    """The normalised email/phone (trimmed, lower case; a phone keeps only digits and '+'), None when empty."""
    text = value.strip().lower()
    if kind == "phone":
        text = _NOT_PHONE.sub("", text)
    return text or None


def _hash_pii(arr: pa.StringArray, salt: str, kind: str) -> pa.StringArray:
    """Salted SHA-256 digests of ``arr``'s normalised values (normalised and hashed once per distinct value)."""
    values, codes = _distinct(arr)
    digests: dict[str | None, str | None] = {None: None}
    out = []
    for value in values:
        key = _pii_key(value, kind)
        if key not in digests:
            digests[key] = hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()
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
        out = pd.DataFrame({name: _python_values(col) for name, col in zip(taken.column_names, taken.columns)})
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
    missing_required = [c for c, src in cfg.columns.items() if src in missing and c in required_fields(cfg)]
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
    values, codes = _distinct(source)
    mapped = [cfg.event_types.get(v) for v in values] if cfg.event_types else values
    known = np.array([m in EVENT_TYPES for m in mapped] + [False])
    rejects.add(~known[codes], "event_type", lambda rows: _message("unknown event type ", source.take(rows)))
    return pa.array(mapped + [None], type=pa.string()).take(codes)


def _numbers(values: pa.StringArray | None, field: str, n: int, rejects: _Rejects) -> np.ndarray:
    """A numeric field as float64 (NaN when absent); a value that is not a number → reject."""
    if values is None:
        return np.full(n, np.nan)
    out = _to_float(values)
    failing = np.isnan(out) & pc.is_valid(values).to_numpy(zero_copy_only=False)
    rejects.add(failing, field, lambda rows: _message(f"{field} is not a number: ", values.take(rows)))
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
        values, codes = _distinct(given)
        rate = np.array([settings.fx_rates.get(v, np.nan) for v in values] + [np.nan], dtype=np.float64)[codes]
        unknown = has_amount & np.isnan(rate)
    rejects.add(unknown, "currency", lambda rows: _message("unknown currency ", given.take(rows)))
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


def _event_ids(mapped: _Mapped, channel: str, cfg: ChannelConfig, rejects: _Rejects) -> pa.StringArray:
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
    if "timestamp" in fields:
        ts = keyed["timestamp"]
        # integer nanoseconds (nullable, so one unparseable time cannot turn every key into a float)
        keyed["timestamp"] = pd.Series(ts.astype("int64"), index=ts.index, dtype="Int64").where(ts.notna(), pd.NA)
    hashed = natural_key_ids(keyed, fields)
    return pc.binary_join_element_wise(f"{channel}:h", pa.array(hashed.to_numpy(dtype=object), type=pa.string()), "")


def canonicalise_table(raw: pa.Table, channel: str, cfg: ChannelConfig, settings: Settings,
                       source_file: str) -> CanonicalTable:
    """Map ``raw`` (text columns + ``source_row``) onto canonical events; unmappable rows become rejects.

    Checks run in this order and a row's first failure is its reason: event type, timestamp, amount,
    quantity, currency, event id.
    """
    _check_mapping(raw.column_names, channel, cfg, source_file)
    n = raw.num_rows
    text = {field: _blank_to_null(_text_column(raw, src)) if src in raw.column_names else pa.nulls(n, pa.string())
            for field, src in cfg.columns.items()}
    rejects = _Rejects(n)
    text["event_type"] = _event_types(text.get("event_type"), cfg, n, rejects)
    spec = cfg.timestamp
    source_times = text.pop("timestamp")
    ns = _parse_ns(source_times, spec)
    rejects.add(ns == _NAT, "timestamp", lambda rows: _timestamp_reasons(source_times.take(rows), spec))
    numbers = {f: _numbers(text.pop(f, None), f, n, rejects) for f in ("amount", "quantity")}
    numbers["amount"], text["currency"] = _base_amounts(numbers["amount"], text.get("currency"), cfg, settings,
                                                        rejects)
    mapped = _Mapped(text, ns, numbers)
    text["event_id"] = _event_ids(mapped, channel, cfg, rejects)
    for pii_col, kind in cfg.pii.items():
        if pii_col in raw.column_names:
            text[f"{kind}_hash"] = _hash_pii(_text_column(raw, pii_col), settings.hash_salt, kind)
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
    columns = {name: pa.array(raw[name].to_numpy(dtype="int64")) if name == "source_row" else _text_array(raw[name])
               for name in raw.columns}
    return pa.table(columns)


def canonicalise(raw: pd.DataFrame, channel: str, cfg: ChannelConfig, settings: Settings, source_file: str) -> Canonicalised:
    """Map ``raw`` (strings + ``source_row``) to canonical events as pandas (see :func:`canonicalise_table`)."""
    mapped = canonicalise_table(_arrow_input(raw), channel, cfg, settings, source_file)
    events = mapped.events.to_pandas(coerce_temporal_nanoseconds=True)  # nanosecond times, as before
    if events.empty:  # an all-null column of no rows would come out bool
        events = events.astype({"is_outlier": object})
    return Canonicalised(events=events, rejects=mapped.rejects)
