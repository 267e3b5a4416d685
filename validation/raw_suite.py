"""The raw-shape checks of a channel, derived from its configuration: required source columns present,
mostly filled, timestamps and numbers plausible for the declared unit.

Every check is batch-level: a file that fails one (wrong schema, a column that drifted, epoch seconds
where milliseconds were declared) is quarantined whole before it is mapped. The statistics are computed
per file (vectorised, through Arrow) and validated by Great Expectations as a profile table, one row per
file, so one checkpoint decides every file of a commit group (:mod:`validation.profiles`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from base.text_values import text_array
from base.config import ChannelConfig
from validation.profiles import ProfileCheck, fixed

MOSTLY = 0.9
"""Share of a raw file's rows that must pass a raw check; the rest is left to the row-level checks."""
SAMPLE_ROWS = 50_000
"""Rows of a file the shape statistics look at: they are shares and column presence, so an evenly spaced
sample decides them as the whole file would; every row is checked after mapping."""

TIMESTAMP_PATTERNS: dict[str, str] = {
    "s": r"^\s*\d{9,10}(?:\.\d+)?\s*$",
    "ms": r"^\s*\d{12,13}(?:\.\d+)?\s*$",
    "us": r"^\s*\d{15,16}\s*$",
    "iso8601": r"^\s*\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?",
}
"""What a plausible timestamp looks like per unit (epochs between 2001 and 2286)."""

NUMBER = r"^\s*-?\d+(?:[.,]\d+)?\s*$"


RAW_FIELDS = ("timestamp", "event_id", "event_type")
"""Canonical fields whose source column must be mostly filled in a raw file."""


def _present(field: str) -> ProfileCheck:
    return ProfileCheck(f"present_{field}", MOSTLY, None, "expect_column_values_to_not_be_null",
                        lambda r: str(r[f"source_{field}"]),
                        lambda r: f"{r[f'present_{field}']:.0%} of rows have a value (source of {field}; "
                                  f"at least {MOSTLY:.0%} must)")


def _format(field: str) -> ProfileCheck:
    return ProfileCheck(f"format_{field}", MOSTLY, None, "expect_column_values_to_match_regex",
                        lambda r: str(r[f"source_{field}"]),
                        lambda r: f"{r[f'format_{field}']:.0%} of values look like {r[f'expected_{field}']} "
                                  f"(at least {MOSTLY:.0%} must)")


RAW_CHECKS: tuple[ProfileCheck, ...] = (
    ProfileCheck("rows", 1, None, "expect_table_row_count_to_be_between", fixed(""), lambda r: "the file has no rows"),
    ProfileCheck("missing_columns", 0, 0, "expect_table_columns_to_match_set", fixed(""),
                 lambda r: f"missing columns {r['missing']}"),
    *(_present(f) for f in RAW_FIELDS),
    _format("timestamp"),
    _format("amount"),
)
"""A channel's raw-shape checks: required source columns present, mostly filled, plausible for the unit."""


def _match_share(values: pa.Array | pa.ChunkedArray, pattern: str) -> float:
    """Share of non-null values matching ``pattern`` (1.0 when all are null, as GX's ``mostly`` has it)."""
    arr = pc.drop_null(values)
    if len(arr) == 0:
        return 1.0
    return pc.sum(pc.match_substring_regex(arr, pattern)).as_py() / len(arr)


def raw_profile(rows: pd.DataFrame | pa.Table, cfg: ChannelConfig, limit: int = SAMPLE_ROWS) -> dict[str, Any]:
    """Shape statistics of one raw file (on an evenly spaced sample of at most ``limit`` rows)."""
    sources = {f: cfg.columns[f] for f in sorted(cfg.required_fields())}
    names = rows.column_names if isinstance(rows, pa.Table) else list(rows.columns)
    missing = [src for src in sources.values() if src not in names]
    checked = list(dict.fromkeys(src for src in sources.values() if src in names))
    picked = rows.select(checked) if isinstance(rows, pa.Table) else rows.loc[:, checked]
    taken = shape_sample(picked, limit)
    columns = zip(taken.column_names, taken.columns) if isinstance(taken, pa.Table) else taken.items()
    sample = {src: text_array(col) for src, col in columns}
    size = len(next(iter(sample.values()))) if sample else 0
    out: dict[str, Any] = {"rows": len(rows), "missing_columns": len(missing), "missing": str(missing)}
    for field in RAW_FIELDS:
        src = sources.get(field)
        out[f"source_{field}"] = src or ""
        filled = src is not None and src in sample and size
        out[f"present_{field}"] = 1.0 - sample[src].null_count / size if filled else np.nan
    patterns = {"timestamp": TIMESTAMP_PATTERNS.get(cfg.timestamp.unit), "amount": NUMBER}
    for field, pattern in patterns.items():
        src = sources.get(field)
        out[f"source_{field}"] = src or ""
        out[f"expected_{field}"] = f"unit {cfg.timestamp.unit}" if field == "timestamp" else "a number"
        usable = pattern is not None and src is not None and src in sample and size
        out[f"format_{field}"] = _match_share(sample[src], pattern) if usable else np.nan
    return out


def shape_sample(rows: pd.DataFrame | pa.Table, limit: int = SAMPLE_ROWS) -> pd.DataFrame | pa.Table:
    """Every k-th row so that at most ``limit`` rows remain (all rows of a small file)."""
    step = max(1, -(-len(rows) // limit))
    if isinstance(rows, pa.Table):
        return rows.take(pa.array(np.arange(0, len(rows), step)))
    return rows.iloc[::step]
