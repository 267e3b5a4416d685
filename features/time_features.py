"""Time-dependent features, computed at read time from stored timestamps and the request time.

Snapshot rows are sparse (features/compute.py): a user gets a row only when a stored value changes.
Values that move every day by themselves (recency, tenure, the BTYD age and the rates over it) are
therefore not stored; this one pure function derives them from the stored times for a request time
``R``, giving exactly what a dense daily snapshot gave: the newest snapshot at or before ``R`` is the
one taken at midnight ``M = floor(floor(R / day) / k) * k`` (epoch days, ``k`` =
``snapshot_every_days``; the snapshot grid is anchored on the epoch), i.e. the snapshot of day
``s = M - 1``, which saw every event before ``M``. Used by the Feast on-demand view
(feature_repo/persona_repo.py: training sets with the cutoff, ``get_online_features`` with now), the
online reader (serving, now), the dense reference build and the Spark path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

DAY_S = 86400.0
INPUTS = ("first_event_ts", "last_event_ts", "last_purchase_ts", "first_purchase_ts", "lifetime_purchase_days",
          "lifetime_spend")
"""Stored columns the time features derive from."""
BEHAVIOUR = ("days_since_last_purchase", "days_since_last_event", "tenure_days")
"""Time features of the behaviour view (persona_v1)."""
LIFETIME = ("btyd_age_days", "lifetime_purchase_rate", "lifetime_spend_per_day")
"""Time features of the lifetime view (persona_v2)."""
OUTPUTS = BEHAVIOUR + LIFETIME
REQUEST_TS = "request_ts"
"""The request-time column (epoch seconds): the training cutoff, or now when serving."""


def snapshot_day(request_ts: np.ndarray, every_days: int = 1) -> np.ndarray:
    """Epoch day ``s`` of the newest snapshot at or before each request time (its midnight is ``s + 1``)."""
    day = np.floor(np.asarray(request_ts, dtype=float) / DAY_S)
    return np.floor(day / every_days) * every_days - 1.0


def time_arrays(column: Callable[[str], np.ndarray | None], request_ts: np.ndarray | float, n: int,
                every_days: int = 1) -> dict[str, np.ndarray]:
    """The :data:`OUTPUTS` of ``n`` rows as float arrays (numpy only: the online reader's per-request
    path); ``column(name)`` gives an input as floats (NaN = null), or None when it is absent."""

    def col(name: str) -> np.ndarray:
        got = column(name)
        return np.full(n, np.nan) if got is None else got

    s = snapshot_day(np.broadcast_to(np.asarray(request_ts, dtype=float), (n,)), every_days)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["days_since_last_purchase"] = s - np.floor(col("last_purchase_ts") / DAY_S)
        out["days_since_last_event"] = s - np.floor(col("last_event_ts") / DAY_S)
        out["tenure_days"] = s - np.floor(col("first_event_ts") / DAY_S)
        days, spend = col("lifetime_purchase_days"), col("lifetime_spend")
        bought = days > 0
        age = np.where(bought, (s + 1.0) - np.floor(col("first_purchase_ts") / DAY_S), np.nan)
        known = ~np.isnan(days)
        out["btyd_age_days"] = age
        out["lifetime_purchase_rate"] = np.where(bought, days / np.maximum(age, 1.0), np.where(known, 0.0, np.nan))
        out["lifetime_spend_per_day"] = np.where(bought, spend / np.maximum(age, 1.0), np.where(known, 0.0, np.nan))
    return out


def time_features(inputs: pd.DataFrame, request_ts: np.ndarray | pd.Series | float,
                  every_days: int = 1) -> pd.DataFrame:
    """The :data:`OUTPUTS` for each row of ``inputs`` (the :data:`INPUTS` columns that are present; a
    missing column counts as null) at ``request_ts`` (epoch seconds, one per row or one for all). Rows
    without a stored snapshot (all inputs null) get null everywhere, as no dense snapshot existed."""

    def column(name: str) -> np.ndarray | None:
        if name not in inputs:
            return None
        return pd.to_numeric(inputs[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    out = time_arrays(column, np.asarray(request_ts, dtype=float), len(inputs), every_days)
    return pd.DataFrame(out, index=inputs.index)


def from_feast(inputs: pd.DataFrame, every_days: int) -> pd.DataFrame:
    """:func:`time_features` of a Feast on-demand view's input frame (its columns may carry the source
    view's name as a ``view__`` prefix)."""
    frame = pd.DataFrame(index=inputs.index)
    for column in inputs.columns:
        name = str(column).split("__", 1)[-1]
        if name in INPUTS and name not in frame:
            frame[name] = inputs[column]
    return time_features(frame, inputs[REQUEST_TS].to_numpy(dtype=float), every_days)


def udf_grid(name: str, udf_string: str) -> int | None:
    """The snapshot grid of an on-demand view function made by :func:`feast_udf` (recognised by its exact
    source text), so a reader can compute it with :func:`time_arrays` instead of a pandas frame per
    request; None for any other function."""
    import re

    found = re.fullmatch(r"def \w+\(inputs\):\n    from features\.time_features import from_feast\n"
                         r"    return from_feast\(inputs, (\d+)\)\n", udf_string or "")
    if found is None or feast_udf(name, int(found.group(1)))[1] != udf_string:
        return None
    return int(found.group(1))


def feast_udf(name: str, every_days: int) -> tuple[Callable[[pd.DataFrame], pd.DataFrame], str]:
    """The on-demand view's function and its source text, the grid written into both: Feast rebuilds
    the function from the text (its module's other names are not there)."""
    source = (f"def {name}(inputs):\n"
              f"    from features.time_features import from_feast\n"
              f"    return from_feast(inputs, {int(every_days)})\n")
    namespace: dict[str, object] = {}
    exec(source, namespace)  # noqa: S102 - our own fixed text
    return namespace[name], source  # type: ignore[return-value]
