"""Labels from the window after each cutoff, and the rolling-origin cutoffs (time split, no leakage)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.compute import is_known_user
from base.config import TrainingConfig
from training.identity_pit import STITCHED_AT, counted_at, late_linked_users


@dataclass(frozen=True)
class Split:
    """Training cutoffs and the single evaluation cutoff (the latest with a full label window)."""

    train: list[pd.Timestamp]
    evaluation: pd.Timestamp
    refit: list[pd.Timestamp] = field(default_factory=list)
    """Labelled cutoffs after the training ones, up to the evaluation cutoff: the served model's refit
    learns from them too (training/refit.py); the evaluated fit never sees them."""

    @property
    def all(self) -> list[pd.Timestamp]:
        """Every cutoff, oldest first."""
        return sorted({*self.train, *self.refit, self.evaluation})


def rolling_cutoffs(history_end: pd.Timestamp, history_start: pd.Timestamp, cfg: TrainingConfig,
                    min_history_days: int = 14) -> Split:
    """Evaluation at ``history_end - horizon``; training cutoffs end a full horizon before it."""
    horizon = pd.Timedelta(days=cfg.horizon_days)
    evaluation = (history_end - horizon).floor("D")
    last_train = evaluation - horizon
    earliest = history_start.floor("D") + pd.Timedelta(days=min_history_days)
    step = cfg.cutoff_step_days
    if cfg.cutoff_spread == "whole_history":  # the step grows with the history, so cutoffs span all of it
        step = max(step, (last_train - earliest).days // max(1, cfg.train_cutoffs - 1))
    train = [last_train - pd.Timedelta(days=step * i) for i in range(cfg.train_cutoffs)]
    train = sorted(c for c in train if c >= earliest)
    if not train:
        span = (history_end - history_start).days
        raise ValueError(
            f"history of {span} days is too short for a {cfg.horizon_days}-day horizon: need at least "
            f"{2 * cfg.horizon_days + min_history_days} days"
        )
    refit = [evaluation - pd.Timedelta(days=step * i) for i in range(1, max(1, cfg.horizon_days // step) + 1)]
    refit = sorted(c for c in refit if c > last_train and c >= earliest)
    return Split(train=train, evaluation=evaluation, refit=refit if cfg.refit_on_newest else [])


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
    With a ``stitched_at`` column (:func:`training.identity_pit.with_stitch_times`) each cutoff sees the
    identities as they stood then: events attributed by a later link do not count, users known only
    through such links are not known yet, and users whose history before the cutoff includes such
    events are left out at that cutoff (see :func:`identity_exclusions`).
    """
    cols = [c for c in ("user_id", "timestamp", "event_type", "amount", "category", STITCHED_AT) if c in events]
    known = events.loc[is_known_user(events["user_id"]), cols]
    stitched = known.loc[known[STITCHED_AT].notna()] if STITCHED_AT in known else known.iloc[:0]
    purchases = known.loc[known["event_type"] == "purchase"]
    frames = []
    horizon = pd.Timedelta(days=horizon_days)
    for cutoff in cutoffs:
        users = _users_at(known, stitched, cutoff)
        window = purchases.loc[(purchases["timestamp"] >= cutoff) & (purchases["timestamp"] < cutoff + horizon)]
        window = window.loc[counted_at(window, cutoff)]
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


def _users_at(known: pd.DataFrame, stitched: pd.DataFrame, cutoff: pd.Timestamp) -> pd.Index:
    """Known users with history before ``cutoff`` that was attributable then, minus late-linked ones."""
    before = known.loc[known["timestamp"] < cutoff, [c for c in ("user_id", STITCHED_AT) if c in known]]
    users = pd.Index(before.loc[counted_at(before, cutoff), "user_id"].unique()).sort_values()
    return users.difference(late_linked_users(stitched, cutoff), sort=False) if len(stitched) else users


def identity_exclusions(events: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """Rows ``make_labels`` leaves out for point-in-time identity, with the reason:
    ``not_linked_yet`` (all history before the cutoff was linked later: unknown then) and
    ``history_linked_later`` (known, but the snapshot includes history linked after the cutoff)."""
    out = []
    if STITCHED_AT not in events:
        return pd.DataFrame(columns=["user_id", "event_timestamp", "reason"])
    known = events.loc[is_known_user(events["user_id"]), ["user_id", "timestamp", STITCHED_AT]]
    for cutoff in cutoffs:
        before = known.loc[known["timestamp"] < cutoff]
        seen = pd.Index(before["user_id"].unique())
        counted = pd.Index(before.loc[counted_at(before, cutoff), "user_id"].unique())
        late = late_linked_users(before, cutoff)
        for reason, users in (("not_linked_yet", seen.difference(counted)),
                              ("history_linked_later", counted.intersection(late))):
            out.append(pd.DataFrame({"user_id": users.to_numpy(), "event_timestamp": cutoff, "reason": reason}))
    return pd.concat(out, ignore_index=True)


def exclusion_tags(excluded: pd.DataFrame) -> dict[str, str]:
    """Lineage tags for the rows left out by :func:`identity_exclusions` (count per reason)."""
    counts = excluded["reason"].value_counts().sort_index() if len(excluded) else pd.Series(dtype=int)
    return {"identity_excluded_rows": str(int(counts.sum())),
            "identity_excluded": ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"}
