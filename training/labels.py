"""Labels from the window after each cutoff, and the rolling-origin cutoffs (time split, no leakage)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.compute import is_known_user
from base.config import TrainingConfig
from training.identity_pit import NAT_NS, STITCHED_AT, epoch_ns


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


@dataclass(frozen=True)
class KnownEvents:
    """The events of known users (not visitors) as arrays, read once for every cutoff: each user as an
    integer code (codes follow the sorted ids, so sorting codes sorts ids), times in epoch nanoseconds."""

    ids: np.ndarray
    """Distinct known user ids, sorted; a code is a position in it."""
    rows: np.ndarray
    """Positions of the known events in the frame they came from (events without a time left out)."""
    code: np.ndarray
    ts: np.ndarray
    late: np.ndarray
    """When a later link attributed the event (:data:`STITCHED_AT`); the smallest int64 for NaT or no
    column, so ``late < cutoff`` (the event counts at the cutoff, :func:`counted_at`) holds at any cutoff."""

    @classmethod
    def of(cls, events: pd.DataFrame) -> "KnownEvents":
        """The known users' events of ``events`` (user ids as ``is_known_user`` tells them apart)."""
        ts = epoch_ns(events["timestamp"])
        every, distinct = pd.factorize(events["user_id"].to_numpy())  # missing ids: -1
        known = is_known_user(pd.Series(distinct, dtype=object)).to_numpy(dtype=bool)  # each id tested once
        rows = np.flatnonzero((every >= 0) & (ts != NAT_NS))
        rows = rows[known[every[rows]]]
        ids = np.asarray(distinct, dtype=object)[known]
        order = np.argsort(ids, kind="stable")  # codes in sorted-id order
        rank = np.full(len(distinct), -1, dtype=np.int64)
        rank[np.flatnonzero(known)[order]] = np.arange(len(ids), dtype=np.int64)
        late = epoch_ns(events[STITCHED_AT])[rows] if STITCHED_AT in events else np.full(len(rows), NAT_NS)
        return cls(ids=ids[order], rows=rows, code=rank[every[rows]], ts=ts[rows], late=late)


def _ns(stamp: pd.Timestamp) -> int:
    """A time as int64 epoch nanoseconds."""
    return int(pd.Timestamp(stamp).as_unit("ns").value)


def make_labels(events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int,
                categories: list[str] | None = None, known: KnownEvents | None = None) -> pd.DataFrame:
    """One row per (known user seen before the cutoff, cutoff): spend, churn and top category in the horizon.

    Only events in ``[cutoff, cutoff + horizon)`` make a label; features come from before the cutoff.
    With a ``stitched_at`` column (:func:`training.identity_pit.with_stitch_times`) each cutoff sees the
    identities as they stood then: events attributed by a later link do not count, users known only
    through such links are not known yet, and users whose history before the cutoff includes such
    events are left out at that cutoff (see :func:`identity_exclusions`).

    Users are integer codes (:class:`KnownEvents`), so each cutoff costs a few passes over integer
    arrays; the rows, their order and every value are those of a per-cutoff pandas selection of the
    events (tests/unit/test_labels_coded.py keeps that reference).
    """
    known = KnownEvents.of(events)
    n = len(known.ids)
    bought = (events["event_type"] == "purchase").to_numpy(dtype=bool)[known.rows]
    p_code, p_ts, p_late = known.code[bought], known.ts[bought], known.late[bought]
    p_rows = known.rows[bought]
    p_amount = events["amount"].to_numpy()[p_rows]
    categories = categories or []
    lookup: dict[object, int] = {}
    for i, c in enumerate(categories):  # a repeated category counts as its first place (as a reindex does)
        lookup.setdefault(c, i)
    if "category" in events and categories:
        p_cat = pd.Series(events["category"].to_numpy()[p_rows], dtype=object).map(lookup)
        p_cat = p_cat.fillna(-1).to_numpy(dtype=np.int64)
    else:
        p_cat = np.full(len(p_rows), -1, dtype=np.int64)
    frames = []
    horizon = pd.Timedelta(days=horizon_days)
    for cutoff in cutoffs:
        c, end = _ns(cutoff), _ns(pd.Timestamp(cutoff) + horizon)
        users = _users_at(known, c)
        win = (p_ts >= c) & (p_ts < end) & (p_late < c)  # counted at the cutoff
        spend = np.zeros(n)
        if win.any():
            sums = pd.Series(p_amount[win]).groupby(p_code[win]).sum()  # pandas' sum, as per user id before
            spend[sums.index.to_numpy()] = sums.to_numpy(dtype=float)
        count = np.bincount(p_code[win], minlength=n)
        frames.append(pd.DataFrame({
            "user_id": known.ids[users],
            "event_timestamp": cutoff,
            "label_spend": spend[users].round(2),
            "label_churn": (count[users] == 0).astype(np.int64),
            "label_category": _top_category(p_code[win], p_cat[win], users, n, len(categories)),
        }))
    return pd.concat(frames, ignore_index=True)


def _top_category(code: np.ndarray, cat: np.ndarray, users: np.ndarray, n: int, k: int) -> np.ndarray:
    """Index (in the categories) of each user's most purchased category among the window's purchases
    (``code``, ``cat``: -1 for none of them); the first on a tie, -1 when the user bought none."""
    if k == 0:
        return np.full(len(users), -1, dtype=np.int64)
    ok = cat >= 0
    counts = np.bincount(code[ok] * k + cat[ok], minlength=n * k).reshape(n, k)[users]
    return np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1).astype(np.int64)


def _users_at(known: KnownEvents, cutoff: int) -> np.ndarray:
    """Codes (sorted) of known users with history before ``cutoff`` that was attributable then, minus the
    late-linked ones (history before the cutoff that only a link at or after it attributed)."""
    n = len(known.ids)
    before = known.ts < cutoff
    counted = known.late < cutoff
    has = np.bincount(known.code[before & counted], minlength=n) > 0
    late = np.bincount(known.code[before & ~counted], minlength=n) > 0
    return np.flatnonzero(has & ~late)


def identity_exclusions(events: pd.DataFrame, cutoffs: list[pd.Timestamp],
                        known: KnownEvents | None = None) -> pd.DataFrame:
    """Rows ``make_labels`` leaves out for point-in-time identity, with the reason:
    ``not_linked_yet`` (all history before the cutoff was linked later: unknown then) and
    ``history_linked_later`` (known, but the snapshot includes history linked after the cutoff).
    Rows and order as pandas' index operations on the ids give them (``not_linked_yet`` sorted unless no
    user was attributable yet; ``history_linked_later`` in order of first attributable event)."""
    out = []
    if STITCHED_AT not in events:
        return pd.DataFrame(columns=["user_id", "event_timestamp", "reason"])
    known = KnownEvents.of(events) if known is None else known
    n = len(known.ids)
    for cutoff in cutoffs:
        c = _ns(cutoff)
        before = known.ts < c
        b_code, b_counted = known.code[before], known.late[before] < c
        seen = pd.unique(b_code)  # order of first appearance
        counted = pd.unique(b_code[b_counted])
        in_counted = np.zeros(n, dtype=bool)
        in_counted[counted] = True
        late = np.zeros(n, dtype=bool)
        late[b_code[~b_counted]] = True
        not_yet = seen[~in_counted[seen]]
        if len(counted):  # Index.difference sorts, except against an empty index
            not_yet = np.sort(not_yet)
        for reason, users in (("not_linked_yet", not_yet), ("history_linked_later", counted[late[counted]])):
            out.append(pd.DataFrame({"user_id": known.ids[users], "event_timestamp": cutoff, "reason": reason}))
    return pd.concat(out, ignore_index=True)


def exclusion_tags(excluded: pd.DataFrame) -> dict[str, str]:
    """Lineage tags for the rows left out by :func:`identity_exclusions` (count per reason)."""
    counts = excluded["reason"].value_counts().sort_index() if len(excluded) else pd.Series(dtype=int)
    return {"identity_excluded_rows": str(int(counts.sum())),
            "identity_excluded": ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"}
