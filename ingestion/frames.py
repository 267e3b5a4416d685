"""Frame helpers for the hot path: renumber and stack frames without copying data row by row."""

from __future__ import annotations

from collections.abc import Sequence

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


def stack(frames: Sequence[pd.DataFrame], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of ``frames`` one after the other (``columns`` of each), concatenated column by column.

    ``pd.concat`` of frames whose blocks differ (a column all None here, text there) checks every
    value for missingness; stacking each column on its own is a plain array concatenation.
    """
    if not frames:
        return pd.DataFrame(columns=list(columns or []))
    names = list(columns if columns is not None else frames[0].columns)
    if len(frames) == 1:
        return renumber(frames[0].loc[:, names])
    return pd.DataFrame({c: pd.concat([f[c] for f in frames], ignore_index=True) for c in names})
