"""How well the segments recover the sample generator's hidden personas, and how fast a persona switch shows.

Only meaningful on generated sample data (``<data_dir>/sample/ground_truth.csv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from persona.config import SegmentRule
from persona.segments import assign_segments, smooth


def true_persona_at(truth: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    """Each user's hidden persona on a date (the end persona once its switch day has passed)."""
    switch = pd.to_datetime(truth["switch_day"].replace("", None), utc=True)
    switched = switch.notna() & (switch <= when)
    return pd.Series(np.where(switched, truth["persona"], truth["persona_start"]), index=truth["user_id"])


def score_frame(models: Mapping[str, Any], frame: pd.DataFrame, features: list[str]) -> dict[str, np.ndarray]:
    """Predicted spend and churn risk for feature rows."""
    x = frame[features].to_numpy(dtype=float)
    return {"predicted_spend": np.asarray(models["spend"].predict(x)), "churn_risk": np.asarray(models["churn"].predict(x))}


def segment_frame(rules: Sequence[SegmentRule], frame: pd.DataFrame, features: list[str],
                  traits: Mapping[str, np.ndarray]) -> np.ndarray:
    """Segments from features and (possibly smoothed) predicted traits."""
    values = {f: frame[f].to_numpy(dtype=float) for f in features}
    values.update(traits)
    return assign_segments(rules, values, len(frame))


def recovery(segments: pd.Series, truth: pd.Series) -> dict[str, float]:
    """Adjusted Rand index and the share of users whose segment has their hidden persona's name."""
    from sklearn.metrics import adjusted_rand_score

    both = segments.index.intersection(truth.index)
    s, t = segments.loc[both].astype(str), truth.loc[both].astype(str)
    return {"ari": float(adjusted_rand_score(t, s)), "same_name": float((s == t).mean()), "users": float(len(both))}


@dataclass(frozen=True)
class Pickup:
    """How long after a persona switch the (smoothed) segment first shows the new persona."""

    switched_users: int
    picked_up: int
    median_days: float
    p75_days: float


def switch_pickup(models: Mapping[str, Any], snapshots: pd.DataFrame, truth: pd.DataFrame,
                  rules: Sequence[SegmentRule], features: list[str], alpha: float, max_days: int = 45) -> Pickup:
    """Replay daily snapshots after each switch with smoothed traits; days until the segment names the new persona."""
    names = {r.name for r in rules}
    sw = truth.loc[(truth["switch_day"] != "") & truth["switch_day"].notna() & truth["persona"].isin(names)]
    sw = sw.assign(switch=pd.to_datetime(sw["switch_day"], utc=True)).set_index("user_id")
    snaps = snapshots.loc[snapshots["user_id"].isin(sw.index)].sort_values(["user_id", "event_timestamp"])
    days: list[float] = []
    for user, rows in snaps.groupby("user_id", sort=False):
        start = sw.at[user, "switch"]
        before = rows.loc[rows["event_timestamp"] < start].tail(1)
        after = rows.loc[(rows["event_timestamp"] >= start)
                         & (rows["event_timestamp"] < start + pd.Timedelta(days=max_days))]
        if after.empty:
            continue
        traits = score_frame(models, after, features)
        prev = score_frame(models, before, features) if len(before) else {k: np.array([np.nan]) for k in traits}
        smoothed = {k: np.empty(len(after)) for k in traits}
        for k in traits:
            p = prev[k][-1:]
            for i, target in enumerate(traits[k]):
                p = smooth(p, np.array([target]), alpha)
                smoothed[k][i] = p[0]
        seg = segment_frame(rules, after, features, smoothed)
        hit = np.flatnonzero(seg == sw.at[user, "persona"])
        if hit.size:
            days.append(float((after["event_timestamp"].iloc[hit[0]] - start).total_seconds() / 86400))
    arr = np.array(days) if days else np.array([np.nan])
    return Pickup(switched_users=len(sw), picked_up=len(days), median_days=float(np.nanmedian(arr)),
                  p75_days=float(np.nanpercentile(arr, 75)) if days else float("nan"))
