"""Fold real-time events into a user's online behaviour features, until the next batch snapshot.

The batch path computes ``user_behaviour`` snapshots at midnight; between two snapshots, events
posted to the service move the online values at once so the persona reacts immediately. Counts and
sums over the 7/30/90-day windows grow by the new events, the last-event times move (recency and tenure
are computed from them at read time, features/time_features.py), the ratios derived
from them (average order value, cart conversion, trends, device/channel shares) are recomputed.
Category affinities and session counts are left as they are (neither their 90-day denominator nor
the sessions already seen are kept online), and the windows do not slide between snapshots (an
event that leaves the 7-day window today still counts until the next snapshot). The next materialized
snapshot, computed from the clean store that the same events reach through the ``api`` channel,
replaces these values with exact ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.compute import _COUNTED, MOBILE_DEVICES

if TYPE_CHECKING:
    from feast import FeatureStore

_COUNTS_30D = {"page_views_30d": ("page_view",), "product_views_30d": ("product_view",),
               "searches_30d": ("search",), "add_to_cart_30d": ("add_to_cart",),
               "social_30d": ("like", "share", "comment")}
DAY_S = 86400.0


def _num(values: Mapping[str, float | None], name: str) -> float:
    v = values.get(name)
    return 0.0 if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def fold_user(current: Mapping[str, float | None], events: pd.DataFrame, now_s: float) -> dict[str, float | None]:
    """One user's behaviour values after ``events`` (canonical rows, amounts in the base currency)."""
    out: dict[str, float | None] = dict(current)
    secs = (events["timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    age_days = (now_s - secs) / DAY_S
    et = events["event_type"].to_numpy()
    amount = pd.to_numeric(events["amount"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    counted = np.isin(et, _COUNTED)
    purchase = et == "purchase"
    old_events_30d = _num(current, "events_30d")
    for days in (7, 30, 90):
        inside = age_days < days
        out[f"purchases_{days}d"] = _num(current, f"purchases_{days}d") + float((purchase & inside).sum())
        out[f"spend_{days}d"] = round(_num(current, f"spend_{days}d") + float(amount[purchase & inside].sum()), 2)
    for days in (7, 30):
        out[f"events_{days}d"] = _num(current, f"events_{days}d") + float((counted & (age_days < days)).sum())
    in30 = age_days < 30
    for name, types in _COUNTS_30D.items():
        out[name] = _num(current, name) + float((np.isin(et, types) & in30).sum())
    refund = et == "refund"
    out["refunds_90d"] = _num(current, "refunds_90d") + float(refund.sum())
    out["refund_amount_90d"] = round(_num(current, "refund_amount_90d") + float(amount[refund].sum()), 2)
    out["support_tickets_90d"] = _num(current, "support_tickets_90d") + float((et == "support_ticket").sum())
    out["aov_90d"] = _ratio(out["spend_90d"], out["purchases_90d"])  # type: ignore[arg-type]
    out["cart_conversion_30d"] = _ratio(out["purchases_30d"], out["add_to_cart_30d"])  # type: ignore[arg-type]
    out["spend_trend"] = _ratio(out["spend_30d"], out["spend_90d"] / 3.0)  # type: ignore[operator]
    out["events_trend"] = _ratio(out["events_7d"], out["events_30d"] / (30 / 7))  # type: ignore[operator]
    new_30 = float((counted & in30).sum())
    total_30 = old_events_30d + new_30
    mobile = float((counted & in30 & events["device"].isin(MOBILE_DEVICES).to_numpy()).sum())
    for share, extra in (("share_mobile_30d", mobile), ("share_app_30d", 0.0), ("share_web_30d", 0.0)):
        out[share] = (_num(current, share) * old_events_30d + extra) / total_30 if total_30 > 0 else 0.0
    last_event = _num(current, "last_event_ts")
    if counted.any():
        newest = float(secs[counted].max())
        if newest // DAY_S > last_event // DAY_S:
            out["active_days_30d"] = _num(current, "active_days_30d") + 1.0
        out["last_event_ts"] = max(last_event, newest)
    if purchase.any():
        out["last_purchase_ts"] = max(_num(current, "last_purchase_ts"), float(secs[purchase].max()))
    if current.get("first_event_ts") is None and len(secs):  # a user new to the online store
        out["first_event_ts"] = float(secs.min())
    return out


def folded_rows(events: pd.DataFrame, current: Mapping[str, Mapping[str, float | None]],
                stored_ts: Mapping[str, float | None], fields: list[str], now_s: float) -> pd.DataFrame:
    """New behaviour rows of the known users among ``events``: each user's ``current`` values (by
    user; missing users start empty) folded with their events, stamped with the newer of their newest
    event and their stored row time (``stored_ts``, epoch seconds)."""
    from features.compute import is_known_user

    events = events.loc[is_known_user(events["user_id"])]
    rows = []
    for user, group in events.groupby("user_id", sort=True):
        folded = fold_user(current.get(user, {}), group, now_s)
        newest = group["timestamp"].max()
        stored = stored_ts.get(user)
        stamp = max(newest, pd.Timestamp(stored, unit="s", tz="UTC")) if stored else newest
        rows.append({"user_id": user, "event_timestamp": stamp, **{f: folded.get(f) for f in fields}})
    return pd.DataFrame(rows, columns=["user_id", "event_timestamp", *fields])


def last_purchase_times(store: "FeatureStore", events: pd.DataFrame) -> dict[str, float | None]:
    """The online ``last_purchase_ts`` of the buyers in ``events`` (read before the behaviour fold moves it)."""
    from features.compute import is_known_user

    buys = events.loc[is_known_user(events["user_id"]) & (events["event_type"] == "purchase")]
    users = sorted(buys["user_id"].unique())
    if not users:
        return {}
    resp = store.get_online_features(features=["user_behaviour:last_purchase_ts"],
                                     entity_rows=[{"user_id": u} for u in users]).to_dict()
    return dict(zip(users, resp["last_purchase_ts"]))


def update_lifetime_online(store: "FeatureStore", events: pd.DataFrame, now_s: float,
                           last_purchase: dict[str, float | None] | None = None) -> list[str]:
    """Fold the purchases of known users into their online ``user_lifetime`` values; returns the users
    updated (ages and rates over them are computed at read time, features/time_features.py).
    ``last_purchase``: each buyer's ``last_purchase_ts`` before the behaviour fold (read now when not given)."""
    from features.compute import is_known_user
    from features.lifetime import COLUMNS, INTEGER_COLUMNS, LIFETIME_VIEW, fold_lifetime

    buys = events.loc[is_known_user(events["user_id"]) & (events["event_type"] == "purchase")]
    if buys.empty:
        return []
    users = sorted(buys["user_id"].unique())
    fields = list(COLUMNS)
    resp = store.get_online_features(
        features=[f"{LIFETIME_VIEW}:{f}" for f in fields],
        entity_rows=[{"user_id": u} for u in users]).to_dict()
    if last_purchase is None:
        last_purchase = last_purchase_times(store, buys)
    rows = []
    for i, (user, group) in enumerate(buys.groupby("user_id", sort=True)):
        current = {f: resp[f][i] for f in fields}
        folded = fold_lifetime(current, group, last_purchase.get(user))
        rows.append({"user_id": user, "event_timestamp": group["timestamp"].max(), **folded})
    frame = pd.DataFrame(rows)
    frame["created"] = frame["event_timestamp"]
    for f in fields:
        frame[f] = pd.to_numeric(frame[f], errors="coerce").astype("Int64" if f in INTEGER_COLUMNS else float)
    store.write_to_online_store(LIFETIME_VIEW, frame)
    return users
