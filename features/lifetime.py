"""Lifetime purchase features: everything a user bought before a snapshot, and the BTYD summary.

A snapshot at ``t`` (midnight after day ``s``) sees purchases strictly before ``t``, like every other
snapshot column. Stored columns are additive or first/last values, so they are maintained three ways
that give the same numbers (tests/data/test_lifetime_features.py):

* a full build (:func:`lifetime_columns`, from the per-day cumulative sums the snapshot build keeps);
* an incremental build (:func:`carry_lifetime`: the previous snapshot plus the purchases since);
* the real-time path (:func:`fold_lifetime`: stored online values plus the posted purchases, written
  online inside the atomic fold of every POST /events, features/online_fold.py; ``features.live_behaviour.update_lifetime_online`` does it alone, for tools and tests).

The buy-till-you-die summary follows Fader, Hardie & Lee on purchase *days*: frequency = purchase days
- 1, recency = days from the first to the last purchase day, age T = days from the first purchase day
to the snapshot, monetary value = mean spend of the repeat purchase days. Derived columns
(:data:`DERIVED`) are recomputed from the stored ones wherever those change. The columns that depend on
the time they are read at (the age T and the rates over it) are not stored: features/time_features.py
computes them at read time. Money is not rounded, so the three paths agree to the cent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

LIFETIME_VIEW = "user_lifetime"
DAY_S = 86400.0
STORED = ("lifetime_purchases", "lifetime_spend", "lifetime_purchase_days", "first_purchase_ts",
          "first_purchase_day_spend")
"""Columns that are carried forward (sums, and the first purchase day's time and spend)."""
DERIVED = ("btyd_frequency", "btyd_recency_days", "avg_order_value", "btyd_monetary")
"""Columns recomputed from the stored ones and the last purchase time (they change only with purchases)."""
COLUMNS = STORED + DERIVED
INTEGER_COLUMNS = frozenset({"lifetime_purchases", "lifetime_purchase_days", "btyd_frequency"})


def _day_index(cum: np.ndarray) -> np.ndarray:
    """Per user, the index of the first day whose cumulative sum turns positive (-1 when never)."""
    pos = cum[:, 1:] > 0
    first = np.argmax(pos, axis=1)
    return np.where(pos.any(axis=1), first, -1)


def daily_first_purchase(events: pd.DataFrame, codes: np.ndarray, day: np.ndarray, n_users: int,
                         n_days: int) -> np.ndarray:
    """Per user and day, the unix time of the day's first purchase (NaN when none), shape (users, days)."""
    buy = (events["event_type"] == "purchase").to_numpy()
    secs = (events["timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    first = pd.Series(secs[buy]).groupby(codes[buy] * n_days + day[buy]).min()
    mat = np.full(n_users * n_days, np.nan)
    mat[first.index.to_numpy()] = first.to_numpy()
    return mat.reshape(n_users, n_days)


def lifetime_columns(purchases: np.ndarray, spend: np.ndarray, ui: np.ndarray, si: np.ndarray,
                     first_ts: np.ndarray, last_purchase_ts: np.ndarray) -> pd.DataFrame:
    """Lifetime columns for the (user row ``ui``, snapshot day ``si``) pairs of one chunk.

    ``purchases``/``spend``: cumulative per-user sums over days, shape (users, days + 1), column 0 = 0
    (as features/compute.py keeps them); ``first_ts``: :func:`daily_first_purchase` of the chunk; ``last_purchase_ts``: each pair's last purchase.
    """
    daily = np.diff(purchases, axis=1) > 0
    days_cum = np.concatenate([np.zeros((len(daily), 1)), np.cumsum(daily, axis=1)], axis=1)
    first = _day_index(purchases)
    has = (first[ui] >= 0) & (first[ui] <= si)
    fd = np.maximum(first[ui], 0)
    frame = pd.DataFrame({
        "lifetime_purchases": purchases[ui, si + 1],
        "lifetime_spend": spend[ui, si + 1],
        "lifetime_purchase_days": days_cum[ui, si + 1],
        "first_purchase_ts": np.where(has, first_ts[ui, fd], np.nan),
        "first_purchase_day_spend": np.where(has, spend[ui, fd + 1] - spend[ui, fd], np.nan),
    })
    return finish(derive(frame, last_purchase_ts))


def derive(frame: pd.DataFrame, last_purchase_ts: np.ndarray) -> pd.DataFrame:
    """Fill the :data:`DERIVED` columns from the stored ones (NaN/0 for users who never bought)."""
    n = frame["lifetime_purchases"].to_numpy(dtype=float)
    spend = frame["lifetime_spend"].to_numpy(dtype=float)
    days = frame["lifetime_purchase_days"].to_numpy(dtype=float)
    first = frame["first_purchase_ts"].to_numpy(dtype=float)
    first_day = np.floor(first / DAY_S)
    last_day = np.floor(np.asarray(last_purchase_ts, dtype=float) / DAY_S)
    bought = days > 0
    x = np.where(bought, days - 1, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["btyd_frequency"] = x
        frame["btyd_recency_days"] = np.where(bought, last_day - first_day, np.nan)
        frame["avg_order_value"] = np.where(n > 0, spend / np.where(n > 0, n, 1), np.nan)
        repeat = spend - np.nan_to_num(frame["first_purchase_day_spend"].to_numpy(dtype=float))
        frame["btyd_monetary"] = np.where(x > 0, repeat / np.where(x > 0, x, 1), 0.0)
    return frame


def finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Column types as stored (integers as int64)."""
    for c in INTEGER_COLUMNS:
        frame[c] = np.rint(frame[c].to_numpy(dtype=float)).astype("int64")
    return frame


def carry_lifetime(out: pd.DataFrame, previous: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Lifetime columns of an incremental build: ``out`` holds snapshots computed from a recent window
    of events only (their lifetime sums start with that window), ``base`` the same window's values at
    the time of ``previous`` (each user's newest stored row before the rebuild, which saw all history
before it; one row per user). Each sum is
    the previous value plus what the window added since; first-purchase values are the previous ones
    when there were any."""
    users = out["user_id"]
    prev = previous.set_index("user_id").reindex(users)
    zero = base.set_index("user_id").reindex(users)
    for c in ("lifetime_purchases", "lifetime_spend", "lifetime_purchase_days"):
        now = pd.to_numeric(out[c], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        since = now - zero[c].fillna(0.0).to_numpy(dtype=float)
        out[c] = prev[c].fillna(0.0).to_numpy(dtype=float) + since
    had = prev["first_purchase_ts"].notna().to_numpy()
    for c in ("first_purchase_ts", "first_purchase_day_spend"):
        out[c] = np.where(had, prev[c].to_numpy(dtype=float), pd.to_numeric(out[c], errors="coerce").to_numpy(dtype=float))
    last = pd.to_numeric(out["last_purchase_ts"], errors="coerce").to_numpy(dtype=float)
    return finish(derive(out, last))


def fold_lifetime(current: Mapping[str, float | None], events: pd.DataFrame,
                  last_purchase_ts: float | None) -> dict[str, float | None]:
    """One user's online lifetime values after ``events`` (canonical rows, amounts in the base currency);
    ``last_purchase_ts``: the stored last purchase before these events (None when none)."""
    def num(name: str) -> float:
        v = current.get(name)
        return 0.0 if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    out: dict[str, float | None] = {c: current.get(c) for c in COLUMNS}
    buys = events.loc[events["event_type"] == "purchase"].sort_values("timestamp")
    last = last_purchase_ts if last_purchase_ts is not None and np.isfinite(last_purchase_ts) else None
    if not buys.empty:
        secs = (buys["timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
        amount = pd.to_numeric(buys["amount"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        day = np.floor(secs / DAY_S)
        known_days = {np.floor(last / DAY_S)} if last is not None else set()
        new_days = set(day.tolist()) - known_days
        out["lifetime_purchases"] = num("lifetime_purchases") + len(buys)
        out["lifetime_spend"] = num("lifetime_spend") + float(amount.sum())
        out["lifetime_purchase_days"] = num("lifetime_purchase_days") + len(new_days)
        stored_first = current.get("first_purchase_ts")
        if stored_first is None or not np.isfinite(float(stored_first)):
            out["first_purchase_ts"] = float(secs[0])
            out["first_purchase_day_spend"] = float(amount[day == day[0]].sum())
        elif np.floor(num("first_purchase_ts") / DAY_S) in set(day.tolist()):  # more on the first day
            first_day = np.floor(num("first_purchase_ts") / DAY_S)
            out["first_purchase_day_spend"] = num("first_purchase_day_spend") + float(amount[day == first_day].sum())
        last = max(last or 0.0, float(secs.max()))
    frame = pd.DataFrame({c: [np.nan if out[c] is None else out[c]] for c in STORED})
    frame = derive(frame, np.array([np.nan if last is None else last]))
    return {c: (None if pd.isna(frame[c].iloc[0]) else float(frame[c].iloc[0])) for c in COLUMNS}
