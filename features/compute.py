"""Compute user behaviour snapshots from clean events (vectorised, chunked by user).

A snapshot for day ``s`` carries ``event_timestamp`` = midnight after ``s`` and sees only events
strictly before that instant, so Feast's point-in-time join never leaks the future. Snapshots lie on a
grid of midnights every ``snapshot_every_days`` days, anchored on the epoch (midnights whose epoch day
is a multiple of it), so read time can tell which snapshot a dense table would have answered with.

The table is *sparse*: a user gets a row only at the grid snapshots where a stored value changes.
Stored values change only when an event enters a window or leaves one, so for each day ``d`` with an
event of the user the candidates are the snapshots ending days ``d``, ``d + 7``, ``d + 30`` and
``d + 90`` (:data:`CHANGE_OFFSETS`), each mapped to the next grid snapshot: at most four rows per
user-day with an event, whatever the number of days. Time-dependent values (recency, tenure, the BTYD
age) are not stored; features/time_features.py derives them at read time from the stored timestamps.
Feast's point-in-time join over the sparse rows returns exactly the dense table's cells
(tests/data/test_sparse_snapshots.py); ``dense=True`` builds the dense table, the test oracle.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from base.config import FeatureConfig
from features.lifetime import daily_first_purchase, lifetime_columns

if TYPE_CHECKING:
    import pyarrow as pa

DAY = np.timedelta64(1, "D")
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_COUNTED = ("page_view", "product_view", "search", "add_to_cart", "purchase", "refund",
            "like", "share", "comment", "support_ticket")
_CATEGORY_EVENTS = ("product_view", "add_to_cart", "purchase")
MOBILE_DEVICES = ("mobile", "ios", "android")
OPTIONAL_COLUMNS = ("amount", "channel", "category", "session_id", "device")
CHANGE_OFFSETS = (0, 7, 30, 90)
"""Days after an event day at which a stored value can change: it enters the windows, then leaves the
7-, 30- and 90-day ones."""
TIMESTAMP_COLUMNS = ("last_event_ts", "last_purchase_ts", "first_event_ts")
"""Stored event times (epoch seconds) the read-time features derive from."""
COUNT_FEATURES = frozenset({
    "purchases_7d", "purchases_30d", "purchases_90d", "refunds_90d", "events_7d",
    "events_30d", "sessions_30d", "page_views_30d", "product_views_30d", "searches_30d",
    "add_to_cart_30d", "active_days_30d", "social_30d", "support_tickets_90d",
})
"""Integer-valued features (stored as Int64)."""


def is_known_user(user_ids: pd.Series) -> pd.Series:
    """True for stitched customer ids (not ``anon:``/``device:`` visitors)."""
    ids = user_ids.astype("string")
    return ids.notna() & ~ids.str.startswith("anon:") & ~ids.str.startswith("device:")


@dataclass(frozen=True)
class Grid:
    """Users × days layout of the history."""

    users: pd.Index
    day0: pd.Timestamp
    days: int


def _metrics(events: pd.DataFrame, categories: list[str]) -> dict[str, pd.Series]:
    """Boolean/weight columns summed per user-day."""
    et = events["event_type"]
    purchase = et == "purchase"
    amount = pd.to_numeric(events["amount"], errors="coerce").astype(float).fillna(0.0)
    counted = et.isin(_COUNTED)
    out = {
        "events": counted.astype(float),
        "purchases": purchase.astype(float),
        "spend": amount.where(purchase, 0.0),
        "refunds": (et == "refund").astype(float),
        "refund_amount": amount.where(et == "refund", 0.0),
        "page_views": (et == "page_view").astype(float),
        "product_views": (et == "product_view").astype(float),
        "searches": (et == "search").astype(float),
        "add_to_cart": (et == "add_to_cart").astype(float),
        "social": et.isin(["like", "share", "comment"]).astype(float),
        "tickets": (et == "support_ticket").astype(float),
        "app": (counted & (events["channel"] == "app")).astype(float),
        "web": (counted & (events["channel"] == "web")).astype(float),
        "mobile": (counted & events["device"].isin(MOBILE_DEVICES)).astype(float),
    }
    cat_event = et.isin(_CATEGORY_EVENTS)
    for cat in categories:
        out[f"cat_{cat}"] = (cat_event & (events["category"] == cat)).astype(float)
    out["cat_total"] = sum((out[f"cat_{c}"] for c in categories), start=pd.Series(0.0, index=events.index))
    return out


def _cumulative(u: np.ndarray, d: np.ndarray, w: np.ndarray, n_users: int, n_days: int) -> np.ndarray:
    """Cumulative sums per user over days, shape (users, days + 1), column 0 = 0."""
    mat = np.bincount(u * n_days + d, weights=w, minlength=n_users * n_days).reshape(n_users, n_days)
    out = np.zeros((n_users, n_days + 1))
    np.cumsum(mat, axis=1, out=out[:, 1:])
    return out


def _window(cs: np.ndarray, ui: np.ndarray, si: np.ndarray, w: int) -> np.ndarray:
    """Sum over days (s - w, s] for each (user, snapshot day)."""
    return cs[ui, si + 1] - cs[ui, np.maximum(si + 1 - w, 0)]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _last_day(active: np.ndarray) -> np.ndarray:
    """Index of the latest active day up to each day (-1 before the first)."""
    idx = np.where(active, np.arange(active.shape[1])[None, :], -1)
    return np.maximum.accumulate(idx, axis=1)


def session_table(events: pd.DataFrame, codes: np.ndarray, day0: pd.Timestamp) -> pd.DataFrame:
    """One row per (user, session): user code, start day and length in minutes."""
    has = events["session_id"].notna().to_numpy()
    frame = pd.DataFrame({"code": codes[has], "session": events.loc[has, "session_id"],
                          "ts": events.loc[has, "timestamp"]})
    g = frame.groupby(["code", "session"], sort=False)["ts"].agg(["min", "max"])
    return pd.DataFrame({
        "code": g.index.get_level_values("code").to_numpy(),
        "day": ((g["min"] - day0) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64),
        "minutes": ((g["max"] - g["min"]).dt.total_seconds() / 60.0).to_numpy(),
    })


def _daily_last(events: pd.DataFrame, codes: np.ndarray, day: np.ndarray, n_users: int,
                n_days: int) -> dict[str, np.ndarray]:
    """Per user and day, the unix time of the last event and of the last purchase (NaN when none);
    ``first``: per user, the unix time of the first event of any kind."""
    secs = (events["timestamp"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    out = {"first": pd.Series(secs).groupby(codes).min().reindex(range(n_users)).to_numpy(dtype=float)}
    for kind, mask in (("event", events["event_type"].isin(_COUNTED).to_numpy()),
                       ("purchase", (events["event_type"] == "purchase").to_numpy())):
        frame = pd.DataFrame({"k": codes[mask] * n_days + day[mask], "s": secs[mask]})
        last = frame.groupby("k")["s"].max()
        mat = np.full(n_users * n_days, np.nan)
        mat[last.index.to_numpy()] = last.to_numpy()
        out[kind] = mat.reshape(n_users, n_days)
    return out


def compute_snapshots(
    events: pd.DataFrame,
    cfg: FeatureConfig,
    *,
    end: pd.Timestamp | None = None,
    first_snapshot: pd.Timestamp | None = None,
    chunk_users: int = 5000,
    dense: bool = False,
) -> pd.DataFrame:
    """Daily snapshots (every ``cfg.snapshot_every_days``) for each known user from their first day.

    ``end`` is the exclusive end of the history (default: midnight after the last event);
    ``first_snapshot`` limits output to snapshots at or after that instant (for incremental runs);
    ``dense``: every grid snapshot from the user's first, with the time-dependent columns (the oracle).
    """
    chunks = list(iter_snapshots(events, cfg, end=end, first_snapshot=first_snapshot, chunk_users=chunk_users,
                                 dense=dense))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def iter_snapshots(
    events: pd.DataFrame,
    cfg: FeatureConfig,
    *,
    end: pd.Timestamp | None = None,
    first_snapshot: pd.Timestamp | None = None,
    chunk_users: int = 5000,
    dense: bool = False,
) -> Iterator[pd.DataFrame]:
    """Snapshots one chunk of users at a time (bounded memory for large histories)."""
    events = events.loc[is_known_user(events["user_id"])]
    if events.empty:
        return
    missing = {c: None for c in OPTIONAL_COLUMNS if c not in events.columns}
    events = events.assign(**missing) if missing else events
    ts = events["timestamp"]
    day0 = ts.min().floor("D")
    end = end if end is not None else ts.max().floor("D") + pd.Timedelta(days=1)
    n_days = int((end - day0) / pd.Timedelta(days=1))
    events = events.loc[ts < end]
    codes, users = pd.factorize(events["user_id"], sort=True)
    day = ((events["timestamp"] - day0) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)
    metrics = {k: v.to_numpy(dtype=float) for k, v in _metrics(events, cfg.categories).items()}
    sessions = session_table(events, codes, day0)
    last_ts = _daily_last(events, codes, day, len(users), n_days)
    first_buy = daily_first_purchase(events, codes, day, len(users), n_days)
    day0_epoch = int((day0 - EPOCH) // pd.Timedelta(days=1))
    every = cfg.snapshot_every_days
    on_grid = np.arange(n_days)
    snap_days = on_grid[(day0_epoch + on_grid + 1) % every == 0]
    min_day = 0
    if first_snapshot is not None:
        min_day = int(np.ceil((first_snapshot - day0) / pd.Timedelta(days=1))) - 1
        snap_days = snap_days[snap_days >= min_day]
    lead = ["user_id", "event_timestamp", "created"]
    for start in range(0, len(users), chunk_users):
        sel = (codes >= start) & (codes < start + chunk_users)
        n_u = min(chunk_users, len(users) - start)
        u, d = codes[sel] - start, day[sel]
        cs = {k: _cumulative(u, d, w[sel], n_u, n_days) for k, w in metrics.items()}
        s_sel = (sessions["code"] >= start) & (sessions["code"] < start + n_u)
        su = sessions.loc[s_sel, "code"].to_numpy() - start
        sd = sessions.loc[s_sel, "day"].to_numpy()
        cs["sessions"] = _cumulative(su, sd, np.ones(len(su)), n_u, n_days)
        cs["session_minutes"] = _cumulative(su, sd, sessions.loc[s_sel, "minutes"].to_numpy(), n_u, n_days)
        daily_events = np.diff(cs["events"], axis=1) > 0
        daily_any = np.bincount(u * n_days + d, minlength=n_u * n_days).reshape(n_u, n_days) > 0
        cs["active"] = np.concatenate([np.zeros((n_u, 1)), np.cumsum(daily_events, axis=1)], axis=1)
        last_event = _last_day(daily_events)
        last_purchase = _last_day(np.diff(cs["purchases"], axis=1) > 0)
        if dense:
            first_day = np.argmax(daily_any, axis=1)
            ui, sj = np.nonzero(first_day[:, None] <= snap_days[None, :])
            si = snap_days[sj]
        else:
            ui, si = change_points(*np.nonzero(daily_any), n_days, day0_epoch, every, min_day)
        frame = _snapshot_frame(cs, ui, si, cfg)
        for kind, last in (("event", last_event), ("purchase", last_purchase)):
            ld = last[ui, si]
            values = last_ts[kind][start:start + n_u][ui, np.maximum(ld, 0)]
            frame[f"last_{kind}_ts"] = np.where(ld >= 0, values, np.nan)
        frame["first_event_ts"] = last_ts["first"][start:start + n_u][ui]
        life = lifetime_columns(cs["purchases"], cs["spend"], ui, si, first_buy[start:start + n_u],
                                frame["last_purchase_ts"].to_numpy())
        frame = pd.concat([frame, life], axis=1)
        if dense:
            frame = _dense_time_columns(frame, ui, si, last_event, last_purchase, first_day, day0_epoch)
        out = frame.assign(user_id=users[start:start + n_u][ui].to_numpy(),
                           event_timestamp=day0 + pd.to_timedelta(si + 1, unit="D"))
        out["created"] = out["event_timestamp"]
        yield out[lead + [c for c in out.columns if c not in lead]]


def change_points(u: np.ndarray, d: np.ndarray, n_days: int, day0_epoch: int, every: int,
                  min_day: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(user row, snapshot day) of every sparse row, sorted by user then day, from the (user, day) pairs
    with an event: each day plus :data:`CHANGE_OFFSETS`, moved to the next grid snapshot, kept when
    inside ``[min_day, n_days)``."""
    c = (d[:, None] + np.asarray(CHANGE_OFFSETS)[None, :]).ravel()
    midnight = day0_epoch + c + 1  # epoch day of each candidate's snapshot time, up to the next grid one
    g = -(-midnight // every) * every - day0_epoch - 1
    uu = np.repeat(u, len(CHANGE_OFFSETS))
    keep = (g < n_days) & (g >= min_day)
    key = np.unique(uu[keep].astype(np.int64) * n_days + g[keep])
    return key // n_days, key % n_days


def _dense_time_columns(frame: pd.DataFrame, ui: np.ndarray, si: np.ndarray, last_event: np.ndarray,
                        last_purchase: np.ndarray, first_day: np.ndarray, day0_epoch: int) -> pd.DataFrame:
    """The time-dependent columns as the dense build stored them, from each snapshot's own day (the
    oracle for features/time_features.py, computed independently of it)."""
    lp, le = last_purchase[ui, si], last_event[ui, si]
    frame["days_since_last_purchase"] = np.where(lp >= 0, si - lp, np.nan).astype(float)
    frame["days_since_last_event"] = np.where(le >= 0, si - le, np.nan).astype(float)
    frame["tenure_days"] = (si - first_day[ui]).astype(float)
    days = frame["lifetime_purchase_days"].to_numpy(dtype=float)
    bought = days > 0
    snap_day = day0_epoch + si + 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        age = np.where(bought, snap_day - np.floor(frame["first_purchase_ts"].to_numpy(dtype=float) / 86400.0),
                       np.nan)
        spend = frame["lifetime_spend"].to_numpy(dtype=float)
        frame["btyd_age_days"] = age
        frame["lifetime_purchase_rate"] = np.where(bought, days / np.maximum(age, 1.0), 0.0)
        frame["lifetime_spend_per_day"] = np.where(bought, spend / np.maximum(age, 1.0), 0.0)
    return frame


def _snapshot_frame(cs: dict[str, np.ndarray], ui: np.ndarray, si: np.ndarray, cfg: FeatureConfig) -> pd.DataFrame:
    """Feature columns for the (user, snapshot day) pairs of one chunk."""
    w = lambda name, days: _window(cs[name], ui, si, days)  # noqa: E731
    f: dict[str, np.ndarray] = {}
    for days in (7, 30, 90):
        f[f"purchases_{days}d"] = w("purchases", days)
        f[f"spend_{days}d"] = w("spend", days)
    f["aov_90d"] = _ratio(f["spend_90d"], f["purchases_90d"])
    f["refunds_90d"] = w("refunds", 90)
    f["refund_amount_90d"] = w("refund_amount", 90)
    f["events_7d"] = w("events", 7)
    f["events_30d"] = w("events", 30)
    f["sessions_30d"] = w("sessions", 30)
    for name in ("page_views", "product_views", "searches", "add_to_cart"):
        f[f"{name}_30d"] = w(name, 30)
    f["cart_conversion_30d"] = _ratio(f["purchases_30d"], f["add_to_cart_30d"])
    f["active_days_30d"] = w("active", 30)
    f["avg_session_minutes_30d"] = np.round(_ratio(w("session_minutes", 30), f["sessions_30d"]), 2)
    f["share_mobile_30d"] = np.nan_to_num(_ratio(w("mobile", 30), f["events_30d"]))
    f["social_30d"] = w("social", 30)
    f["support_tickets_90d"] = w("tickets", 90)
    f["share_app_30d"] = np.nan_to_num(_ratio(w("app", 30), f["events_30d"]))
    f["share_web_30d"] = np.nan_to_num(_ratio(w("web", 30), f["events_30d"]))
    f["spend_trend"] = _ratio(f["spend_30d"], f["spend_90d"] / 3.0)
    f["events_trend"] = _ratio(f["events_7d"], f["events_30d"] / (30 / 7))
    total = w("cat_total", 90)
    for cat in cfg.categories:
        f[f"affinity_{cat}"] = np.nan_to_num(_ratio(w(f"cat_{cat}", 90), total))
    frame = pd.DataFrame(f)
    counts = [c for c in frame.columns if c in COUNT_FEATURES]
    frame[counts] = np.rint(frame[counts]).astype("int64")
    money = [c for c in frame.columns if c.startswith(("spend_", "refund_amount", "aov_")) and c != "spend_trend"]
    frame[money] = frame[money].round(2)
    return frame


def write_snapshots(snapshots: pd.DataFrame | Iterable[pd.DataFrame], root: Path,
                    replace_from: pd.Timestamp | None = None) -> int:
    """Write snapshots as ``root/date=YYYY-MM-DD/part-N.parquet`` (each file atomically).

    Dates at or after ``replace_from`` (all dates when None) are cleared first, so a rerun after a
    crash rewrites them whole. Returns the number of rows written.
    """
    import shutil

    frames = [snapshots] if isinstance(snapshots, pd.DataFrame) else snapshots
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.glob("date=*"):
        if replace_from is None or pd.Timestamp(folder.name[5:], tz="UTC") >= replace_from.floor("D"):
            shutil.rmtree(folder)
    rows = 0
    for part, frame in enumerate(frames):
        if frame.empty:
            continue
        days = frame["event_timestamp"].dt.strftime("%Y-%m-%d")
        for day, chunk in frame.groupby(days, sort=False):
            folder = root / f"date={day}"
            folder.mkdir(exist_ok=True)
            tmp = folder / f".part-{part}.{uuid.uuid4().hex}.tmp"
            chunk.to_parquet(tmp, index=False)
            os.replace(tmp, folder / f"part-{part}.parquet")
        rows += len(frame)
    return rows


def read_snapshots(root: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """All stored snapshots (the offline feature table)."""
    import pyarrow.dataset as ds

    if not root.exists() or not any(root.rglob("*.parquet")):
        return pd.DataFrame(columns=columns or [])
    dataset = ds.dataset(str(root), format="parquet", partitioning=None)
    return dataset.to_table(columns=columns).to_pandas()


def newest_rows(root: Path, after: pd.Timestamp | None = None, before: pd.Timestamp | None = None,
                users: set[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Each user's newest stored snapshot row (what the online store holds), among the partitions after
    ``after`` and before ``before`` (all when None); only ``users`` and ``columns`` when given. Snapshots
    are sparse: a user's newest row can be in any partition, so the partitions are read newest first and
    each user is taken from the first one that has it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    seen: set[str] = set()
    frames = []
    for folder in sorted(root.glob("date=*"), reverse=True):
        day = pd.Timestamp(folder.name[5:], tz="UTC")
        if before is not None and day >= before:
            continue
        if (after is not None and day <= after) or (users is not None and len(seen) == len(users)):
            break
        table = pq.read_table(folder, columns=columns, partitioning=None)
        if users is not None:
            table = table.filter(pc.is_in(table["user_id"], value_set=pa_strings(users)))
        if not len(table):
            continue
        if seen:
            table = table.filter(pc.invert(pc.is_in(table["user_id"], value_set=pa_strings(seen))))
        frame = table.to_pandas().sort_values("event_timestamp", kind="stable").drop_duplicates("user_id", keep="last")
        seen.update(frame["user_id"].astype(str))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pa_strings(values: Iterable[str]) -> "pa.Array":
    """A pyarrow string array of ``values``."""
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())
