"""The coded labels (training/labels.py: users as integer codes, times as epoch nanoseconds) and history
summary (training/baselines.py: grouped by code) against the straightforward per-id pandas code they
replaced (kept here verbatim as the reference): the same rows, in the same order, with the same values,
cell for cell, for labels, identity exclusions and the baselines' history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.compute import is_known_user
from training.identity_pit import STITCHED_AT, counted_at, late_linked_users
from training.baselines import history_summary
from training.labels import identity_exclusions, make_labels

T0 = pd.Timestamp("2026-03-01", tz="UTC")
CATEGORIES = ["home", "sports", "beauty", "home"]  # a repeated name counts as its first place


# ---- the reference: make_labels and identity_exclusions before they were coded ----

def _ref_top_category(window: pd.DataFrame, users: pd.Index, categories: list[str]) -> np.ndarray:
    """Index (in ``categories``) of each user's most purchased category in the window; -1 when none."""
    known = window.loc[window["category"].isin(categories)] if "category" in window else window.iloc[:0]
    if known.empty:
        return np.full(len(users), -1, dtype=np.int64)
    counts = known.groupby(["user_id", "category"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=categories, fill_value=0).reindex(users, fill_value=0)
    top = counts.to_numpy().argmax(axis=1)
    return np.where(counts.to_numpy().sum(axis=1) > 0, top, -1).astype(np.int64)


def ref_make_labels(events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int,
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
        users = _ref_users_at(known, stitched, cutoff)
        window = purchases.loc[(purchases["timestamp"] >= cutoff) & (purchases["timestamp"] < cutoff + horizon)]
        window = window.loc[counted_at(window, cutoff)]
        spend = window.groupby("user_id")["amount"].sum().reindex(users, fill_value=0.0)
        count = window.groupby("user_id").size().reindex(users, fill_value=0)
        frames.append(pd.DataFrame({
            "user_id": users.to_numpy(),
            "event_timestamp": cutoff,
            "label_spend": spend.to_numpy(dtype=float).round(2),
            "label_churn": (count.to_numpy() == 0).astype(np.int64),
            "label_category": _ref_top_category(window, users, categories or []),
        }))
    return pd.concat(frames, ignore_index=True)


def _ref_users_at(known: pd.DataFrame, stitched: pd.DataFrame, cutoff: pd.Timestamp) -> pd.Index:
    """Known users with history before ``cutoff`` that was attributable then, minus late-linked ones."""
    before = known.loc[known["timestamp"] < cutoff, [c for c in ("user_id", STITCHED_AT) if c in known]]
    users = pd.Index(before.loc[counted_at(before, cutoff), "user_id"].unique()).sort_values()
    return users.difference(late_linked_users(stitched, cutoff), sort=False) if len(stitched) else users


def ref_identity_exclusions(events: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
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


def ref_history_summary(events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
    """Per (user, cutoff), from events strictly before the cutoff: RFM inputs of BG/NBD and window totals."""
    known = events.loc[is_known_user(events["user_id"]), ["user_id", "timestamp", "event_type", "amount"]]
    first_seen = known.groupby("user_id")["timestamp"].min()
    buys = known.loc[known["event_type"] == "purchase"].copy()
    buys["day"] = buys["timestamp"].dt.floor("D")
    daily = buys.groupby(["user_id", "day"], as_index=False)["amount"].sum()
    horizon = pd.Timedelta(days=horizon_days)
    frames = []
    for cutoff in cutoffs:
        users = first_seen.index[first_seen < cutoff]
        past = daily.loc[daily["day"] < cutoff.floor("D")]
        g = past.groupby("user_id")
        first, last, n = g["day"].min(), g["day"].max(), g.size()
        total = g["amount"].sum()
        first_value = past.sort_values("day").groupby("user_id")["amount"].first()
        repeat_mean = ((total - first_value) / (n - 1).where(n > 1)).fillna(0.0)
        recent = buys.loc[(buys["timestamp"] >= cutoff - horizon) & (buys["timestamp"] < cutoff)].groupby("user_id")
        age_from = first.reindex(users).fillna(first_seen.reindex(users).dt.floor("D"))
        frame = pd.DataFrame({
            "user_id": users.to_numpy(),
            "event_timestamp": cutoff,
            "hist_x": (n.reindex(users, fill_value=1) - 1).clip(lower=0).to_numpy(dtype=float),
            "hist_t_x": ((last - first).dt.days.reindex(users, fill_value=0)).to_numpy(dtype=float),
            "hist_T": ((cutoff.floor("D") - age_from).dt.days.clip(lower=1)).to_numpy(dtype=float),
            "hist_mean_value": repeat_mean.reindex(users, fill_value=0.0).to_numpy(dtype=float),
            "hist_last_window_spend": recent["amount"].sum().reindex(users, fill_value=0.0).to_numpy(dtype=float),
            "hist_last_window_purchases": recent.size().reindex(users, fill_value=0).to_numpy(dtype=float),
            "hist_spend_total": total.reindex(users, fill_value=0.0).to_numpy(dtype=float),
            "hist_purchase_days": n.reindex(users, fill_value=0).to_numpy(dtype=float),
            "hist_tenure_days": ((cutoff - first_seen.reindex(users)).dt.total_seconds() / 86400).clip(lower=1).to_numpy(),
        })
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ---- the comparison ----

def _events(seed: int, n: int = 6000, users: int = 400, stitched: bool = True) -> pd.DataFrame:
    """Known users, visitors and missing ids; purchases with and without amounts and categories (some
    outside the list); stitch times before, between and after the cutoffs, or none."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"u{i:04d}" for i in rng.permutation(users)] + ["anon:a1", "device:d1", None], dtype=object)
    ts = T0 + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s")
    frame = pd.DataFrame({
        "user_id": ids[rng.integers(0, len(ids), n)],
        "timestamp": ts.as_unit("us"),
        "event_type": rng.choice(["purchase", "page_view", "add_to_cart"], n, p=[0.4, 0.4, 0.2]),
        "amount": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2.0, 17.3, n).round(2)),
        "category": rng.choice(np.array(["home", "sports", "beauty", "toys", None], dtype=object), n),
    })
    if stitched:
        late = ts + pd.to_timedelta(rng.integers(1, 40 * 86400, n), unit="s")
        frame[STITCHED_AT] = pd.Series(late, dtype="datetime64[ns, UTC]").where(rng.random(n) < 0.03)
    return frame


CUTOFFS = [T0 + pd.Timedelta(days=d) for d in (14, 21, 30, 45, 60)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coded_labels_are_the_per_cutoff_selection_cell_for_cell(seed: int) -> None:
    events = _events(seed)
    got = make_labels(events, CUTOFFS, 30, CATEGORIES)
    want = ref_make_labels(events, CUTOFFS, 30, CATEGORIES)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["label_category"].ge(0).any() and got["label_churn"].nunique() == 2 and len(got) > 600


def test_without_stitch_times_categories_or_a_category_column_too() -> None:
    events = _events(3, stitched=False)
    for cats in (None, [], CATEGORIES):
        pd.testing.assert_frame_equal(make_labels(events, CUTOFFS, 7, cats), ref_make_labels(events, CUTOFFS, 7, cats),
                                      check_exact=True)
    plain = events.drop(columns=["category"])
    pd.testing.assert_frame_equal(make_labels(plain, CUTOFFS, 30, CATEGORIES),
                                  ref_make_labels(plain, CUTOFFS, 30, CATEGORIES), check_exact=True)


def test_a_cutoff_before_any_event_gives_no_rows_there() -> None:
    events = _events(4)
    early = [T0 - pd.Timedelta(days=1), *CUTOFFS[:2]]
    got = make_labels(events, early, 30, CATEGORIES)
    pd.testing.assert_frame_equal(got, ref_make_labels(events, early, 30, CATEGORIES), check_exact=True)
    assert not (got["event_timestamp"] == early[0]).any()


@pytest.mark.parametrize("seed", [0, 5])
def test_coded_identity_exclusions_are_the_index_operations_row_for_row(seed: int) -> None:
    events = _events(seed)
    got = identity_exclusions(events, CUTOFFS)
    want = ref_identity_exclusions(events, CUTOFFS)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert set(got["reason"]) == {"not_linked_yet", "history_linked_later"}


def test_exclusions_where_nobody_was_attributable_yet_keep_the_order_of_appearance() -> None:
    events = _events(6)
    events[STITCHED_AT] = events["timestamp"].astype("datetime64[ns, UTC]") + pd.Timedelta(days=200)  # all late
    got = identity_exclusions(events, CUTOFFS[:2])
    pd.testing.assert_frame_equal(got, ref_identity_exclusions(events, CUTOFFS[:2]), check_exact=True)
    first = got.loc[got["event_timestamp"] == CUTOFFS[0], "user_id"]
    assert len(first) > 5 and not first.is_monotonic_increasing  # order of first appearance, not sorted
    assert identity_exclusions(events.drop(columns=[STITCHED_AT]), CUTOFFS).empty


@pytest.mark.parametrize("seed", [0, 7])
def test_history_by_code_is_the_history_by_id_cell_for_cell(seed: int) -> None:
    events = _events(seed)
    events.loc[events.index[:5], "timestamp"] = pd.NaT  # a time missing: no history from it
    for horizon in (30, 7):
        got = history_summary(events, [T0 - pd.Timedelta(days=1), *CUTOFFS], horizon)
        want = ref_history_summary(events, [T0 - pd.Timedelta(days=1), *CUTOFFS], horizon)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["hist_x"].gt(0).any() and got["hist_mean_value"].gt(0).any() and len(got) > 1000
