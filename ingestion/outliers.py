"""The configurable outlier rule on amounts: caps per event type and/or a robust z-score per event type."""

from __future__ import annotations

import numpy as np
import pandas as pd

from base.config import OutlierConfig

MAD_SCALE = 0.6745
"""Makes the median absolute deviation comparable to a standard deviation for normal data."""


def outlier_reasons(events: pd.DataFrame, cfg: OutlierConfig) -> pd.Series:
    """Per row, why its amount is an outlier ("" when it is not). Vectorised over the batch."""
    reasons = pd.Series("", index=events.index, dtype=object)
    if events.empty or "amount" not in events:
        return reasons
    amount = pd.to_numeric(events["amount"], errors="coerce")
    kind = events["event_type"].astype(object)
    if cfg.caps:
        cap = kind.map(cfg.caps).astype("float64")
        over = (amount > cap).fillna(False).astype(bool)
        if over.any():
            reasons[over] = "amount " + amount[over].astype(str) + " above cap " + cap[over].astype(str) + " for " + kind[over]
    if cfg.robust_z is not None:
        z = robust_z(amount, kind, cfg.min_rows)
        far = (z.abs() > cfg.robust_z).fillna(False).astype(bool) & (reasons == "")
        if far.any():
            reasons[far] = "amount " + amount[far].astype(str) + " has robust z-score " + z[far].round(1).astype(str)
    return reasons


def robust_z(amount: pd.Series, groups: pd.Series, min_rows: int) -> pd.Series:
    """``0.6745 (x - median) / MAD`` within each group; NaN for groups smaller than ``min_rows`` or with MAD 0."""
    frame = pd.DataFrame({"x": amount, "g": groups}).dropna()
    if frame.empty:
        return pd.Series(np.nan, index=amount.index)
    by = frame.groupby("g")["x"]
    median = by.transform("median")
    mad = (frame["x"] - median).abs().groupby(frame["g"]).transform("median")
    size = by.transform("size")
    z = MAD_SCALE * (frame["x"] - median) / mad.where(mad > 0)
    z = z.where(size >= min_rows)
    return z.reindex(amount.index)
