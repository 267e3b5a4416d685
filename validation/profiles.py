"""Batch-level checks as data: one row of vectorised statistics per batch (or per raw file).

A Great Expectations suite validates such a profile table row by row, so one checkpoint decides the
batch-level checks of every batch in a commit group, and a failing row names the failing batch.
Each profile column stands for one batch-level expectation; :class:`ProfileCheck` keeps the name of
that expectation so that quarantine records and messages read as they would for a per-batch suite
(``expect_table_columns_to_match_set: missing columns ['channel'], ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from base.schema import CANONICAL_COLUMNS

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

MAX_AMOUNT = 100_000.0
PURCHASE_MEDIAN_RANGE = (0.5, 5_000.0)


@dataclass(frozen=True)
class ProfileCheck:
    """One profile column, the range it must lie in, and the batch-level expectation it stands for."""

    field: str
    low: float | None
    high: float | None
    expectation: str
    column: Callable[[pd.Series], str]
    detail: Callable[[pd.Series], str]
    condition: str = ""

    def describe(self, row: pd.Series) -> str:
        """``expectation(column): detail`` for a failing profile row."""
        column = self.column(row)
        where = f" where {self.condition}" if self.condition else ""
        label = f"{self.expectation}({column}{where})" if column or where else self.expectation
        return f"{label}: {self.detail(row)}"


def fixed(name: str) -> Callable[[pd.Series], str]:
    """A column name that does not depend on the profile row."""
    return lambda _row: name


def _columns_detail(row: pd.Series) -> str:
    return f"missing columns {row['missing']}, unexpected columns {row['unexpected']}"


BATCH_CHECKS: tuple[ProfileCheck, ...] = (
    ProfileCheck("missing_columns", 0, 0, "expect_table_columns_to_match_set", fixed(""), _columns_detail),
    ProfileCheck("unexpected_columns", 0, 0, "expect_table_columns_to_match_set", fixed(""), _columns_detail),
    ProfileCheck("rows", 1, None, "expect_table_row_count_to_be_between", fixed(""),
                 lambda r: "batch is empty (0 rows)" if r["rows"] == 0 else f"{r['rows']} rows"),
    ProfileCheck("duplicate_event_ids", 0, 0, "expect_column_values_to_be_unique", fixed("event_id"),
                 lambda r: f"{int(r['duplicate_event_ids'])} rows"),
    ProfileCheck("purchase_median", *PURCHASE_MEDIAN_RANGE, "expect_column_median_to_be_between", fixed("amount"),
                 lambda r: f"observed {r['purchase_median']:g}", condition="purchase with an amount in [0, 100000]"),
)
"""The canonical batch-level checks (a batch without valid purchases has no median: the check is skipped)."""


def batch_profile(events: pd.DataFrame | pa.Table, rows: np.ndarray | None = None,
                  id_hashes: np.ndarray | None = None) -> dict[str, Any]:
    """The statistics :data:`BATCH_CHECKS` validate, for one batch of canonical events (pandas, or
    Arrow with an optional boolean mask ``rows`` of the rows that make up the batch). ``id_hashes``
    (64-bit hashes of every row's event id) lets duplicates be counted without hashing the text again."""
    if isinstance(events, pa.Table):
        return _arrow_profile(events, rows, id_hashes)
    present = set(events.columns)
    duplicates = _duplicates(events["event_id"] if "event_id" in present else [])
    median = np.nan
    if {"event_type", "amount"} <= present and len(events):
        amount = pd.to_numeric(events["amount"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        median = _purchase_median(events["event_type"].to_numpy(dtype=object) == "purchase", amount)
    return _profile(len(events), list(events.columns), duplicates, median)


def _arrow_profile(events: pa.Table, rows: np.ndarray | None, id_hashes: np.ndarray | None) -> dict[str, Any]:
    """:func:`batch_profile` of an Arrow table: only the checked columns are filtered by ``rows``."""
    names = events.column_names
    mask = pa.array(rows) if rows is not None else None

    def column(name: str) -> pa.ChunkedArray:
        return events[name].filter(mask) if mask is not None else events[name]

    n = int(rows.sum()) if rows is not None else events.num_rows
    if id_hashes is not None:
        duplicates = _duplicates(id_hashes if rows is None else id_hashes[rows])
    else:
        duplicates = _duplicates(column("event_id").to_numpy() if "event_id" in names else [])
    median = np.nan
    if {"event_type", "amount"} <= set(names) and n:
        kinds = np.asarray(pc.fill_null(pc.equal(column("event_type"), "purchase"), False), dtype=bool)
        median = _purchase_median(kinds, pc.fill_null(pc.cast(column("amount"), pa.float64()), np.nan).to_numpy())
    return _profile(n, names, duplicates, median)


def _duplicates(ids: Any) -> int:
    """Rows whose event id (or its hash) an earlier row already has."""
    return int(pd.Series(ids).duplicated().sum())


def _purchase_median(purchase: np.ndarray, amount: np.ndarray) -> float:
    """Median amount of the purchases with a plausible amount (NaN when there are none)."""
    valid = purchase & (amount >= 0.0) & (amount <= MAX_AMOUNT)
    return float(np.median(amount[valid])) if valid.any() else np.nan


def _profile(rows: int, names: list[str], duplicates: int, median: float) -> dict[str, Any]:
    missing = [c for c in CANONICAL_COLUMNS if c not in set(names)]
    extra = [c for c in names if c not in CANONICAL_COLUMNS]
    return {"rows": rows, "missing_columns": len(missing), "unexpected_columns": len(extra),
            "duplicate_event_ids": duplicates, "purchase_median": median, "missing": str(missing),
            "unexpected": str(extra)}


def profile_expectations(checks: tuple[ProfileCheck, ...]) -> list[Expectation]:
    """One ``expect_column_values_to_be_between`` per profile column (a failing row is a failing batch)."""
    import great_expectations as gx

    return [gx.expectations.ExpectColumnValuesToBeBetween(
        column=c.field, min_value=c.low, max_value=c.high,
        meta={"level": "row", "stands_for": c.expectation, "condition": c.condition}) for c in checks]


def profile_frame(profiles: list[dict[str, Any]], checks: tuple[ProfileCheck, ...]) -> pd.DataFrame:
    """The profile table GX validates: checked columns as float64 (NaN = check does not apply)."""
    frame = pd.DataFrame(profiles, index=pd.RangeIndex(len(profiles)))
    for c in checks:
        frame[c.field] = pd.to_numeric(frame[c.field], errors="coerce").astype("float64")
    return frame
