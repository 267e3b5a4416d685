"""Labels from the window after each cutoff, and the rolling-origin cutoffs (time split, no leakage)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.compute import is_known_user
from persona.config import TrainingConfig


@dataclass(frozen=True)
class Split:
    """Training cutoffs and the single evaluation cutoff (the latest with a full label window)."""

    train: list[pd.Timestamp]
    evaluation: pd.Timestamp

    @property
    def all(self) -> list[pd.Timestamp]:
        """Every cutoff, oldest first."""
        return [*self.train, self.evaluation]


def rolling_cutoffs(history_end: pd.Timestamp, history_start: pd.Timestamp, cfg: TrainingConfig,
                    min_history_days: int = 14) -> Split:
    """Evaluation at ``history_end - horizon``; training cutoffs end a full horizon before it."""
    horizon = pd.Timedelta(days=cfg.horizon_days)
    evaluation = (history_end - horizon).floor("D")
    last_train = evaluation - horizon
    earliest = history_start.floor("D") + pd.Timedelta(days=min_history_days)
    train = [last_train - pd.Timedelta(days=cfg.cutoff_step_days * i) for i in range(cfg.train_cutoffs)]
    train = sorted(c for c in train if c >= earliest)
    if not train:
        span = (history_end - history_start).days
        raise ValueError(
            f"history of {span} days is too short for a {cfg.horizon_days}-day horizon: need at least "
            f"{2 * cfg.horizon_days + min_history_days} days"
        )
    return Split(train=train, evaluation=evaluation)


def _top_category(window: pd.DataFrame, users: pd.Index, categories: list[str]) -> np.ndarray:
    """Index (in ``categories``) of each user's most purchased category in the window; -1 when none."""
    known = window.loc[window["category"].isin(categories)] if "category" in window else window.iloc[:0]
    if known.empty:
        return np.full(len(users), -1, dtype=np.int64)
    counts = known.groupby(["user_id", "category"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=categories, fill_value=0).reindex(users, fill_value=0)
    top = counts.to_numpy().argmax(axis=1)
    return np.where(counts.to_numpy().sum(axis=1) > 0, top, -1).astype(np.int64)


def make_labels(events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int,
                categories: list[str] | None = None) -> pd.DataFrame:
    """One row per (known user seen before the cutoff, cutoff): spend, churn and top category in the horizon.

    Only events in ``[cutoff, cutoff + horizon)`` make a label; features come from before the cutoff.
    """
    cols = [c for c in ("user_id", "timestamp", "event_type", "amount", "category") if c in events]
    known = events.loc[is_known_user(events["user_id"]), cols]
    first_seen = known.groupby("user_id")["timestamp"].min()
    purchases = known.loc[known["event_type"] == "purchase"]
    frames = []
    horizon = pd.Timedelta(days=horizon_days)
    for cutoff in cutoffs:
        users = first_seen.index[first_seen < cutoff]
        window = purchases.loc[(purchases["timestamp"] >= cutoff) & (purchases["timestamp"] < cutoff + horizon)]
        spend = window.groupby("user_id")["amount"].sum().reindex(users, fill_value=0.0)
        count = window.groupby("user_id").size().reindex(users, fill_value=0)
        frames.append(pd.DataFrame({
            "user_id": users.to_numpy(),
            "event_timestamp": cutoff,
            "label_spend": spend.to_numpy(dtype=float).round(2),
            "label_churn": (count.to_numpy() == 0).astype(np.int64),
            "label_category": _top_category(window, users, categories or []),
        }))
    return pd.concat(frames, ignore_index=True)
