"""Frame helpers for the hot path: renumber frames and series without copying their data."""

from __future__ import annotations

import pandas as pd


def renumber(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` on a fresh ``RangeIndex`` without copying its data (``reset_index(drop=True)`` copies)."""
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        return frame
    out = frame.copy(deep=False)
    out.index = pd.RangeIndex(len(frame))
    return out


def renumber_series(values: pd.Series) -> pd.Series:
    """``values`` on a fresh ``RangeIndex`` (no data copy)."""
    return pd.Series(values.array, index=pd.RangeIndex(len(values)), copy=False)
