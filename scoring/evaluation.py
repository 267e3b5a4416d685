"""How well the segments recover the sample generator's hidden personas, and how fast a persona switch shows.

Only meaningful on generated sample data (``<data_dir>/sample/ground_truth.csv``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from base.segments import smooth
from scoring.scorer import PersonaScorer
from training.targets import target


def true_persona_at(truth: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    """Each user's hidden persona on a date (the end persona once its switch day has passed)."""
    switch = pd.to_datetime(truth["switch_day"].replace("", None), utc=True)
    switched = switch.notna() & (switch <= when)
    return pd.Series(np.where(switched, truth["persona"], truth["persona_start"]), index=truth["user_id"])


def score_frame(scorer: PersonaScorer, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Finished predictions of the targets that segment rules may name, by target key, for feature rows."""
    keys = [t.key for t in scorer.targets if t.segment_input]
    raw = scorer.predict(scorer.frame_matrix(frame), keys)
    return {k: target(k).finish(v) for k, v in raw.items()}


def segment_frame(scorer: PersonaScorer, frame: pd.DataFrame, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Segments from features and (possibly smoothed) predictions by target key."""
    return scorer.segments(scorer.frame_matrix(frame), outputs)


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


def switch_pickup(scorer: PersonaScorer, snapshots: pd.DataFrame, truth: pd.DataFrame, alpha: float,
                  max_days: int = 45) -> Pickup:
    """Replay daily snapshots after each switch with smoothed traits; days until the segment names the new persona."""
    names = {r.name for r in scorer.rules}
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
        traits = score_frame(scorer, after)
        prev = score_frame(scorer, before) if len(before) else {k: np.array([np.nan]) for k in traits}
        smoothed = {k: np.empty(len(after)) for k in traits}
        for k in traits:
            p = prev[k][-1:]
            for i, goal in enumerate(traits[k]):
                p = smooth(p, np.array([goal]), alpha)
                smoothed[k][i] = p[0]
        seg = segment_frame(scorer, after, smoothed)
        hit = np.flatnonzero(seg == sw.at[user, "persona"])
        if hit.size:
            days.append(float((after["event_timestamp"].iloc[hit[0]] - start).total_seconds() / 86400))
    arr = np.array(days) if days else np.array([np.nan])
    return Pickup(switched_users=len(sw), picked_up=len(days), median_days=float(np.nanmedian(arr)),
                  p75_days=float(np.nanpercentile(arr, 75)) if days else float("nan"))
