"""Classic baselines on the same split as the models: last-window spend, historical spend rate, BG/NBD + Gamma-Gamma.

Their inputs come only from events before each cutoff (``history_summary``), so they cannot leak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from training.labels import KnownEvents

HISTORY_COLUMNS = ("hist_x", "hist_t_x", "hist_T", "hist_mean_value", "hist_last_window_spend",
                   "hist_last_window_purchases", "hist_spend_total", "hist_purchase_days", "hist_tenure_days")


def history_summary(events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int,
                    known: KnownEvents | None = None) -> pd.DataFrame:
    """Per (user, cutoff), from events strictly before the cutoff: RFM inputs of BG/NBD and window totals.
    Users are grouped by integer code (:class:`training.labels.KnownEvents`: codes in sorted-id order),
    with the same pandas operations in the same row order as by id, so every value is the same
    (tests/unit/test_labels_coded.py keeps the by-id version as the reference)."""
    from training.labels import KnownEvents

    known = KnownEvents.of(events) if known is None else known
    ts = events["timestamp"].iloc[known.rows].reset_index(drop=True)  # the events' own time unit
    first_seen = ts.groupby(known.code).min()
    bought = (events["event_type"] == "purchase").to_numpy(dtype=bool)[known.rows]
    buys = pd.DataFrame({"user_id": known.code[bought], "timestamp": ts.loc[bought].reset_index(drop=True),
                         "amount": events["amount"].to_numpy()[known.rows[bought]]})
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
            "user_id": known.ids[users.to_numpy()],
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


def spend_baselines(train: pd.DataFrame, evaluation: pd.DataFrame, horizon_days: int) -> dict[str, np.ndarray]:
    """Spend over the horizon: last window repeated, lifetime spend rate, BG/NBD × Gamma-Gamma."""
    from training.btyd import fit_bgnbd, fit_gamma_gamma

    e = evaluation
    out = {
        "last_window": e["hist_last_window_spend"].to_numpy(dtype=float),
        "historical_rate": (e["hist_spend_total"] / e["hist_tenure_days"] * horizon_days).to_numpy(dtype=float),
    }
    x, t_x, T = (e[c].to_numpy(dtype=float) for c in ("hist_x", "hist_t_x", "hist_T"))
    bg = fit_bgnbd(x, t_x, T)
    gg = fit_gamma_gamma(x, e["hist_mean_value"].to_numpy(dtype=float))
    out["bgnbd_gamma_gamma"] = bg.expected_purchases(horizon_days, x, t_x, T) * gg.expected_value(
        x, e["hist_mean_value"].to_numpy(dtype=float))
    return out


def churn_baselines(train: pd.DataFrame, evaluation: pd.DataFrame, horizon_days: int) -> dict[str, np.ndarray]:
    """P(no purchase in the horizon): last-window activity (rates from training cutoffs), Poisson rate, BG/NBD."""
    from training.btyd import fit_bgnbd

    bought = train["hist_last_window_purchases"] > 0
    p_if = train.loc[bought, "label_churn"].mean() if bought.any() else 0.5
    p_ifnot = train.loc[~bought, "label_churn"].mean() if (~bought).any() else 0.5
    e = evaluation
    rate = e["hist_purchase_days"] / e["hist_tenure_days"]
    x, t_x, T = (e[c].to_numpy(dtype=float) for c in ("hist_x", "hist_t_x", "hist_T"))
    return {
        "last_window": np.where(e["hist_last_window_purchases"] > 0, p_if, p_ifnot).astype(float),
        "historical_rate": np.exp(-rate * horizon_days).to_numpy(dtype=float),
        "bgnbd": fit_bgnbd(x, t_x, T).prob_no_purchase(horizon_days, x, t_x, T),
    }


def category_baselines(train: pd.DataFrame, evaluation: pd.DataFrame, categories: list[str]) -> dict[str, np.ndarray]:
    """Class probabilities: the user's own historical affinity, and the population's popularity."""
    labels = train["label_category"].to_numpy()
    counts = np.bincount(labels[labels >= 0], minlength=len(categories)).astype(float) + 1.0
    popularity = np.tile(counts / counts.sum(), (len(evaluation), 1))
    aff = evaluation[[f"affinity_{c}" for c in categories]].to_numpy(dtype=float)
    aff = np.nan_to_num(aff) + 0.05 * popularity  # smoothed so unseen categories keep a little mass
    return {"historical_affinity": aff / aff.sum(axis=1, keepdims=True), "popularity": popularity}
