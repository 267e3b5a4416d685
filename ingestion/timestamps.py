"""Parse timestamps per a channel's :class:`~base.config.TimestampSpec` into UTC nanoseconds.

Epoch numbers, strptime formats and ISO-8601: fixed-width date-times are read by their digits straight
out of the string buffer. Only what that fast path leaves (fractional seconds, other ISO-8601
spellings, garbage) goes through pandas with the same calls as before, for those rows only; so do
local times (the zone and its DST rules are pandas', applied under the channel's ``ambiguous`` /
``nonexistent`` policy). :func:`timestamp_reasons` says why a value failed to parse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from base.text_values import StringBytes, ascii_number, is_byte, message, text_array, to_float
from base.config import TimestampSpec

_EPOCH_LIMIT_S = 9e9
"""Epoch seconds beyond this (year 2255) are unparseable: nanoseconds would overflow int64."""
NAT = np.iinfo(np.int64).min
"""Not-a-time in int64 nanoseconds (``NaT`` of ``datetime64[ns]``): what an unparseable value becomes."""
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
        ok &= is_byte(block[:, pos], allowed)
    f = {}
    for code, pos in layout.fields.items():
        f[code], digits = ascii_number(block, pos, _FIELD_WIDTH[code])
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
    """UTC-aware pandas times as int64 nanoseconds (NaT as ``NAT``)."""
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
    numbers = to_float(arr)
    out = np.full(len(numbers), NAT, dtype=np.int64)
    valid = np.abs(numbers) < _EPOCH_LIMIT_S * {"s": 1, "ms": 1e3, "us": 1e6}[unit]  # NaN: False
    factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}[unit]
    x = numbers[valid]
    whole = np.floor(x)
    out[valid] = whole.astype("int64") * factor + np.rint((x - whole) * factor).astype("int64")
    return out


def _format_ns(arr: pa.StringArray, spec: TimestampSpec) -> np.ndarray:
    """Local times per ``spec.format`` → UTC nanoseconds; fixed-width spellings read from the bytes."""
    out = np.full(len(arr), NAT, dtype=np.int64)
    b = StringBytes.of(arr)
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


def _iso_fast(b: StringBytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        (hours, hours_ok), (minutes, minutes_ok) = ascii_number(tail, 1, 2), ascii_number(tail, 4, 2)
        ok[shifted] &= (is_byte(tail[:, 0], b"+-") & hours_ok & minutes_ok & (tail[:, 3] == ord(":"))
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
        if isinstance(naive.dtype, np.dtype) and naive.dtype.kind == "M":  # zone-less (mixed zones: objects)
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
    out = np.full(len(arr), NAT, dtype=np.int64)
    b = StringBytes.of(arr)
    rows, seconds, aware = _iso_fast(b)
    out[rows[aware]] = seconds[aware] * _NS
    out[rows[~aware]] = _localize_ns(seconds[~aware] * _NS, spec)
    done = np.zeros(len(arr), dtype=bool)
    done[rows] = True
    rest = np.flatnonzero(b.valid & ~done)
    if len(rest):
        out[rest] = _iso_slow(arr.take(rest), spec)
    return out


def parse_ns(arr: pa.StringArray, spec: TimestampSpec) -> np.ndarray:
    """Parse per the channel's timestamp spec into UTC int64 nanoseconds; unparseable → ``NAT``."""
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
    ns = parse_ns(text_array(values), spec)
    return pd.Series(ns.view("datetime64[ns]"), index=values.index).dt.tz_localize("UTC")


def timestamp_reasons(values: pa.StringArray, spec: TimestampSpec) -> pa.Array:
    """Why timestamps failed to parse: a local time DST makes ambiguous or skips (under a ``quarantine``
    policy), or an unparseable value. Only called for the failing rows."""
    unparseable = message("cannot parse timestamp ", values)
    if spec.unit in ("s", "ms", "us"):
        return unparseable
    lenient = spec.model_copy(update={"ambiguous": "earliest", "nonexistent": "shift_forward"})
    dst = pa.array(parse_ns(values, lenient) != NAT)
    return pc.if_else(dst, message("local time ", values, f" is ambiguous or does not exist in {spec.timezone} "
                                    "(DST change; see timestamp.ambiguous / timestamp.nonexistent)"), unparseable)
