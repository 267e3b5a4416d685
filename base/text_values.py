"""Arrow text columns and what is read from their strings: blanks, numbers, the raw bytes.

Blanks are found through a look at each value's first byte and plain numbers go through Arrow's cast;
only what those fast paths leave (numbers such as ``1e3`` or with blanks around, long digit runs,
garbage) goes through pandas with the same calls as before, for those rows only. :class:`StringBytes`
reads a string array's bytes without a copy, for spellings read straight out of the string buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


# --------------------------------------------------------------------------------------------- text


def text_array(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """A column as Arrow text; values that are not text are spelled as ``astype("string")`` does."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    try:
        return pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values.astype("string").to_numpy(dtype=object, na_value=None), type=pa.string())


def text_column(raw: pa.Table, name: str) -> pa.StringArray:
    """One column of ``raw`` as a single string array."""
    col = raw.column(name)
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


_SPACE_LEAD = np.zeros(256, dtype=bool)
"""First bytes of the UTF-8 whitespace characters (ASCII blanks, U+0085/U+00A0, U+1680, U+2000.., U+3000)."""
_SPACE_LEAD[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0xC2, 0xE1, 0xE2, 0xE3]] = True


def blank_to_null(arr: pa.StringArray) -> pa.StringArray:
    """Null for empty values and values of only whitespace (Arrow's whitespace is Python's).

    Only values that are empty or start with a byte a whitespace character can start with are checked.
    """
    b = StringBytes.of(arr)
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


def message(prefix: str, values: pa.Array, suffix: str = "") -> pa.Array:
    """``prefix + clipped value + suffix`` for each value."""
    return pc.binary_join_element_wise(prefix, _clip(values), suffix, "")


def distinct(arr: pa.Array) -> tuple[list[str], np.ndarray]:
    """The distinct non-null values and each row's position among them (``len(values)`` for null)."""
    encoded = arr.dictionary_encode()
    values = encoded.dictionary.to_pylist()
    codes = pc.fill_null(encoded.indices, len(values)).to_numpy(zero_copy_only=False)
    return values, codes


def python_values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as a NumPy array of Python values (text as ``str``/``None``)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_numpy(zero_copy_only=False)
    return col.to_pandas().to_numpy()


# ------------------------------------------------------------------------------------ byte access


@dataclass(frozen=True)
class StringBytes:
    """Zero-copy view of a string array's bytes: value ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray
    data: np.ndarray
    sizes: np.ndarray
    valid: np.ndarray

    @classmethod
    def of(cls, arr: pa.StringArray) -> "StringBytes":
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


def ascii_number(block: np.ndarray, start: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(the number written by ``width`` (even) ASCII digits at ``start`` of each row, the bytes are digits)."""
    value = np.zeros(len(block), dtype=np.int32)
    ok = np.ones(len(block), dtype=bool)
    for k in range(start, start + width, 2):
        pair = _PAIRS[block[:, k:k + 2].view(np.uint16)[:, 0]]
        ok &= pair <= 99
        value = value * 100 + pair
    return value, ok


def is_byte(column: np.ndarray, allowed: bytes) -> np.ndarray:
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


def _plain_decimals(b: StringBytes, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` (1 to 16 bytes each) are plain decimals: ``[+-]?`` digits with at most one '.'."""
    at = np.arange(_PLAIN_MAX)
    starts = b.offsets[rows].astype(np.int64)
    inside = at < b.sizes[rows][:, None]
    block = b.data[np.minimum(starts[:, None] + at, len(b.data) - 1)]
    counts = np.where(inside, _NUMBER_CLASS[block], 0).sum(axis=1)
    digits, dots = counts & 31, (counts >> 5) & 31
    signs, other = (counts >> 10) & 31, counts >> 15
    leading_sign = is_byte(block[:, 0], b"+-")
    return (digits > 0) & (dots <= 1) & (other == 0) & ((signs == 0) | ((signs == 1) & leading_sign))


def to_float(arr: pa.StringArray) -> np.ndarray:
    """``pd.to_numeric(values, errors="coerce")`` as float64 (NaN: null or not a number).

    Short plain decimals go through Arrow's cast; every other spelling (exponents, blanks around,
    ``inf``, long digit runs, garbage) through pandas, row subset only.
    """
    n = len(arr)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    b = StringBytes.of(arr)
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
