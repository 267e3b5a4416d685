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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from base.config import FeatureConfig
from features.lifetime import lifetime_columns

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
    from ingestion.identity import POINTER_PREFIXES

    ids = user_ids.astype("string")
    return ids.notna() & ~ids.str.startswith(POINTER_PREFIXES).fillna(False)


@dataclass(frozen=True)
class Grid:
    """Users × days layout of the history."""

    users: pd.Index
    day0: pd.Timestamp
    days: int


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


KINDS = {name: i for i, name in enumerate(_COUNTED)}
"""Event type → kind code (the counted types; any other type is -1)."""
_SOCIAL = [KINDS[k] for k in ("like", "share", "comment")]
_CATEGORY_KINDS = [KINDS[k] for k in _CATEGORY_EVENTS]
SNAPSHOT_INPUTS = ("user_id", "timestamp", "event_type", "channel", "amount", "category", "device", "session_id")
"""Event columns the snapshot build reads (``user_id`` resolved)."""


@dataclass
class EventArrays:
    """Known users' events as compact NumPy columns, sorted by user (stably: each user's events keep
    their order, so every per-user sum adds the same numbers in the same order as the event frame).
    Built from an event frame (:meth:`of_frame`) or from Arrow tables read part by part
    (:meth:`of_tables`) without a Python object per value."""

    users: pd.Index
    """Distinct user ids, sorted; ``code`` indexes them."""
    code: np.ndarray
    stamp: np.ndarray
    """Event times as integers in the unit of the timestamp column (``per_second`` per second)."""
    per_second: int
    kind: np.ndarray
    """:data:`KINDS` code of the event type (-1: not counted)."""
    channel: np.ndarray
    """1 app, 2 web, 0 other."""
    mobile: np.ndarray
    category: np.ndarray
    """Index into the configured categories (-1: none of them)."""
    amount: np.ndarray
    """Amounts, missing as 0."""
    session: np.ndarray
    """Session code, the same for the same session id (-1: no session)."""

    def __len__(self) -> int:
        return len(self.code)

    def take(self, order: "np.ndarray | slice") -> "EventArrays":
        """The rows at ``order`` (positions or a slice)."""
        return EventArrays(self.users, *(getattr(self, f)[order] for f in _ROW_FIELDS[:2]), self.per_second,
                           *(getattr(self, f)[order] for f in _ROW_FIELDS[2:]))

    @classmethod
    def of_frame(cls, events: pd.DataFrame, cfg: FeatureConfig, end: pd.Timestamp | None = None
                 ) -> "tuple[EventArrays, pd.Timestamp, pd.Timestamp] | None":
        """The known users' events of a frame before ``end`` (default: midnight after the last event);
        returns (arrays, first midnight, end), None when there are none."""
        events = events.loc[is_known_user(events["user_id"])]
        if events.empty:
            return None
        missing = {c: None for c in OPTIONAL_COLUMNS if c not in events.columns}
        events = events.assign(**missing) if missing else events
        ts = events["timestamp"]
        day0 = ts.min().floor("D")
        end = end if end is not None else ts.max().floor("D") + pd.Timedelta(days=1)
        events = events.loc[ts < end]
        codes, users = pd.factorize(events["user_id"], sort=True)
        ts = events["timestamp"]
        et = events["event_type"]
        cats = {c: i for i, c in enumerate(cfg.categories)}
        arrays = cls(
            users=pd.Index(users), code=codes.astype(np.int64), stamp=_stamps(ts), per_second=_per_second(ts),
            kind=et.map(KINDS).fillna(-1).to_numpy(dtype=np.int8),
            channel=np.where(events["channel"] == "app", 1, np.where(events["channel"] == "web", 2, 0)).astype(np.int8),
            mobile=events["device"].isin(MOBILE_DEVICES).to_numpy(),
            category=events["category"].map(cats).fillna(-1).to_numpy(dtype=np.int16),
            amount=pd.to_numeric(events["amount"], errors="coerce").astype(float).fillna(0.0).to_numpy(dtype=float),
            session=pd.factorize(events["session_id"], use_na_sentinel=True)[0].astype(np.int64))
        return arrays.take(np.argsort(arrays.code, kind="stable")), day0, end

    @classmethod
    def of_tables(cls, tables: "Iterable[pa.Table]", cfg: FeatureConfig, end: pd.Timestamp | None = None
                  ) -> "tuple[EventArrays, pd.Timestamp, pd.Timestamp] | None":
        """:meth:`of_frame` of the concatenation of Arrow tables (the :data:`SNAPSHOT_INPUTS` columns,
        ``user_id`` resolved), each encoded as it comes: only integer codes are kept."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from ingestion.identity import pointer_mask

        parts: dict[str, list[np.ndarray]] = {f: [] for f in _ROW_FIELDS}
        user_dicts, session_dicts = [], []
        per_second = None
        for table in tables:
            user = table["user_id"]
            table = table.filter(pc.and_(pc.is_valid(user), pc.invert(pointer_mask(user))))  # is_known_user
            if not table.num_rows:
                continue
            ts = table["timestamp"].to_pandas()
            per_second = _per_second(ts)
            parts["stamp"].append(_stamps(ts))
            for name, dicts, field in (("user_id", user_dicts, "code"), ("session_id", session_dicts, "session")):
                encoded = pc.dictionary_encode(table[name]).combine_chunks()
                parts[field].append(pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64))
                dicts.append(encoded.dictionary)
            parts["kind"].append(_coded(table["event_type"], KINDS, np.int8))
            parts["channel"].append(_coded(table["channel"], {"app": 1, "web": 2}, np.int8, 0))
            parts["mobile"].append(_coded(table["device"], dict.fromkeys(MOBILE_DEVICES, 1), np.int8, 0).astype(bool))
            parts["category"].append(_coded(table["category"], {c: i for i, c in enumerate(cfg.categories)}, np.int16))
            amount = pc.cast(table["amount"], pa.float64()).to_numpy()
            parts["amount"].append(np.where(np.isnan(amount), 0.0, amount))
        if per_second is None:
            return None
        users = _global_codes(parts["code"], user_dicts)
        _global_codes(parts["session"], session_dicts, ordered=False)
        arrays = cls(users, *(np.concatenate(parts[f]) for f in _ROW_FIELDS[:2]), per_second,
                     *(np.concatenate(parts[f]) for f in _ROW_FIELDS[2:]))
        unit = {1: "s", 1000: "ms", 10**6: "us"}.get(per_second, "ns")
        stamp = lambda ticks: pd.Timestamp(np.datetime64(int(ticks), unit)).tz_localize("UTC")  # noqa: E731
        day0 = stamp(arrays.stamp.min()).floor("D")
        end = end if end is not None else stamp(arrays.stamp.max()).floor("D") + pd.Timedelta(days=1)
        end_int = (end - EPOCH) // pd.Timedelta(1, unit=unit)
        inside = arrays.stamp < end_int
        if not inside.all():
            arrays = arrays.take(np.flatnonzero(inside))
        return arrays.take(np.argsort(arrays.code, kind="stable")), day0, end


_ROW_FIELDS = ("code", "stamp", "kind", "channel", "mobile", "category", "amount", "session")


def _per_second(ts: pd.Series) -> int:
    """Ticks per second of a timestamp column's unit."""
    unit, count = np.datetime_data(ts.dtype.base if hasattr(ts.dtype, "base") else ts.dtype)
    return int(np.timedelta64(1, "s") // np.timedelta64(count, unit))


def _stamps(ts: pd.Series) -> np.ndarray:
    """A timestamp column as integers in its own unit."""
    return ts.array.asi8 if hasattr(ts.array, "asi8") else pd.DatetimeIndex(ts).asi8


def _coded(column: "pa.ChunkedArray", codes: dict[str, int], dtype: type, default: int = -1) -> np.ndarray:
    """Each value's code (``default`` for others and nulls), through the column's distinct values."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column).combine_chunks()
    lookup = np.array([codes.get(v, default) for v in encoded.dictionary.to_pylist()] + [default], dtype=dtype)
    idx = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy()
    return lookup[idx]


def _global_codes(codes: list[np.ndarray], dicts: list["pa.Array"], ordered: bool = True) -> pd.Index:
    """Rewrite per-part dictionary codes (in place) as codes into the distinct values of every part,
    sorted when ``ordered`` (else in order of first appearance: enough for an identity such as a
    session); returns those values. One hash pass over all the parts' dictionaries (looking each part
    up in every distinct value cost a hash table of ten million session ids per part at 1M users)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not dicts:
        return pd.Index([], dtype=object)
    encoded = pc.dictionary_encode(pa.chunked_array(dicts, type=pa.string()).combine_chunks())
    first_seen = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    values = encoded.dictionary
    if ordered:
        order = pc.sort_indices(values).to_numpy()  # UTF-8 byte order: Python's order of the strings
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        first_seen, values = rank[first_seen], values.take(pa.array(order))
    start = 0
    for i, (part, d) in enumerate(zip(codes, dicts)):
        codes[i] = np.append(first_seen[start:start + len(d)], -1)[part]
        start += len(d)
    return pd.Index(values.to_numpy(zero_copy_only=False))


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


def _chunk_metrics(ev: EventArrays, categories: list[str]) -> dict[str, np.ndarray]:
    """Weights summed per user-day, for the events of one chunk (the columns of the event frame's
    ``_metrics``, same values)."""
    kind = ev.kind
    counted = kind >= 0
    purchase = kind == KINDS["purchase"]
    refund = kind == KINDS["refund"]
    f = lambda mask: mask.astype(float)  # noqa: E731
    out = {
        "events": f(counted),
        "purchases": f(purchase),
        "spend": np.where(purchase, ev.amount, 0.0),
        "refunds": f(refund),
        "refund_amount": np.where(refund, ev.amount, 0.0),
        "page_views": f(kind == KINDS["page_view"]),
        "product_views": f(kind == KINDS["product_view"]),
        "searches": f(kind == KINDS["search"]),
        "add_to_cart": f(kind == KINDS["add_to_cart"]),
        "social": f(np.isin(kind, _SOCIAL)),
        "tickets": f(kind == KINDS["support_ticket"]),
        "app": f(counted & (ev.channel == 1)),
        "web": f(counted & (ev.channel == 2)),
        "mobile": f(counted & ev.mobile),
    }
    cat_event = np.isin(kind, _CATEGORY_KINDS)
    for i, cat in enumerate(categories):
        out[f"cat_{cat}"] = f(cat_event & (ev.category == i))
    out["cat_total"] = f(cat_event & (ev.category >= 0))
    return out


def _chunk_sessions(ev: EventArrays, u: np.ndarray, day_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user row, start day, minutes) of each session of one chunk, in order of first appearance."""
    has = ev.session >= 0
    if not has.any():
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    frame = pd.DataFrame({"u": u[has], "s": ev.session[has], "t": ev.stamp[has]})
    g = frame.groupby(["u", "s"], sort=False)["t"].agg(["min", "max"])
    minutes = (g["max"].to_numpy() - g["min"].to_numpy()) / ev.per_second / 60.0
    return g.index.get_level_values("u").to_numpy(), day_of(g["min"].to_numpy()), minutes


def _reduce(key: np.ndarray, values: np.ndarray, size: int, how: str) -> np.ndarray:
    """Per key in ``range(size)``, the max or min of ``values`` (NaN when none)."""
    out = np.full(size, np.nan)
    if len(key):
        s = pd.Series(values).groupby(key)
        r = s.max() if how == "max" else s.min()
        out[r.index.to_numpy()] = r.to_numpy()
    return out


def iter_snapshots(
    events: "pd.DataFrame | tuple[EventArrays, pd.Timestamp, pd.Timestamp] | None",
    cfg: FeatureConfig,
    *,
    end: pd.Timestamp | None = None,
    first_snapshot: pd.Timestamp | None = None,
    chunk_users: int = 5000,
    dense: bool = False,
) -> Iterator[pd.DataFrame]:
    """Snapshots one chunk of users at a time (bounded memory for large histories). ``events``: an event
    frame, or :meth:`EventArrays.of_tables`'s result (``end`` is then already applied)."""
    prepared = EventArrays.of_frame(events, cfg, end) if isinstance(events, pd.DataFrame) else events
    if prepared is None:
        return
    ev, day0, end = prepared
    n_days = int((end - day0) / pd.Timedelta(days=1))
    per_day = 86400 * ev.per_second
    day0_int = int((day0 - EPOCH) // pd.Timedelta(days=1)) * per_day
    day_of = lambda stamps: (stamps - day0_int) // per_day  # noqa: E731
    users = ev.users
    day0_epoch = int((day0 - EPOCH) // pd.Timedelta(days=1))
    every = cfg.snapshot_every_days
    on_grid = np.arange(n_days)
    snap_days = on_grid[(day0_epoch + on_grid + 1) % every == 0]
    min_day = 0
    if first_snapshot is not None:
        min_day = int(np.ceil((first_snapshot - day0) / pd.Timedelta(days=1))) - 1
        snap_days = snap_days[snap_days >= min_day]
    lead = ["user_id", "event_timestamp", "created"]
    bounds = np.searchsorted(ev.code, np.arange(0, len(users) + chunk_users, chunk_users))
    for k, start in enumerate(range(0, len(users), chunk_users)):
        part = ev.take(slice(bounds[k], bounds[k + 1]))  # a chunk's users are contiguous: views, no copy
        n_u = min(chunk_users, len(users) - start)
        u, d = part.code - start, day_of(part.stamp)
        secs = part.stamp / part.per_second
        cs = {name: _cumulative(u, d, w, n_u, n_days) for name, w in _chunk_metrics(part, cfg.categories).items()}
        su, sd, minutes = _chunk_sessions(part, u, day_of)
        cs["sessions"] = _cumulative(su, sd, np.ones(len(su)), n_u, n_days)
        cs["session_minutes"] = _cumulative(su, sd, minutes, n_u, n_days)
        daily_events = np.diff(cs["events"], axis=1) > 0
        daily_any = np.bincount(u * n_days + d, minlength=n_u * n_days).reshape(n_u, n_days) > 0
        cs["active"] = np.concatenate([np.zeros((n_u, 1)), np.cumsum(daily_events, axis=1)], axis=1)
        last_event = _last_day(daily_events)
        last_purchase = _last_day(np.diff(cs["purchases"], axis=1) > 0)
        key = u * n_days + d
        counted, bought = part.kind >= 0, part.kind == KINDS["purchase"]
        last_ts = {"event": _reduce(key[counted], secs[counted], n_u * n_days, "max").reshape(n_u, n_days),
                   "purchase": _reduce(key[bought], secs[bought], n_u * n_days, "max").reshape(n_u, n_days)}
        first_ts = _reduce(u, secs, n_u, "min")
        first_buy = _reduce(key[bought], secs[bought], n_u * n_days, "min").reshape(n_u, n_days)
        if dense:
            first_day = np.argmax(daily_any, axis=1)
            ui, sj = np.nonzero(first_day[:, None] <= snap_days[None, :])
            si = snap_days[sj]
        else:
            ui, si = change_points(*np.nonzero(daily_any), n_days, day0_epoch, every, min_day)
        frame = _snapshot_frame(cs, ui, si, cfg)
        for kind, last in (("event", last_event), ("purchase", last_purchase)):
            ld = last[ui, si]
            values = last_ts[kind][ui, np.maximum(ld, 0)]
            frame[f"last_{kind}_ts"] = np.where(ld >= 0, values, np.nan)
        frame["first_event_ts"] = first_ts[ui]
        life = lifetime_columns(cs["purchases"], cs["spend"], ui, si, first_buy, frame["last_purchase_ts"].to_numpy())
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
    # one writer thread: a part's files are written (Parquet encoding releases the GIL) while the next part
    # is computed; at most one part waits, so memory holds two parts at most
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer") as writer:
        pending: Future[None] | None = None
        for part, frame in enumerate(frames):
            if frame.empty:
                continue
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_part, root, part, frame)
            rows += len(frame)
        if pending is not None:
            pending.result()
    return rows


def _write_part(root: Path, part: int, frame: pd.DataFrame) -> None:
    """One part's snapshots as ``root/date=YYYY-MM-DD/part-N.parquet``, each file written atomically."""
    days = frame["event_timestamp"].dt.floor("D")  # grouped by time, formatted once per day
    for day, chunk in frame.groupby(days, sort=False):
        folder = root / f"date={day:%Y-%m-%d}"
        folder.mkdir(exist_ok=True)
        tmp = folder / f".part-{part}.{uuid.uuid4().hex}.tmp"
        chunk.to_parquet(tmp, index=False)
        os.replace(tmp, folder / f"part-{part}.parquet")


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
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = pa_strings(users) if users is not None else None
    seen: list[pa.Array] = []  # the users taken so far, as Arrow (no Python set of a million ids)
    taken = 0
    frames = []
    for folder in sorted(root.glob("date=*"), reverse=True):
        day = pd.Timestamp(folder.name[5:], tz="UTC")
        if before is not None and day >= before:
            continue
        if (after is not None and day <= after) or (users is not None and taken == len(users)):
            break
        table = pq.read_table(folder, columns=columns, partitioning=None)
        if wanted is not None:
            table = table.filter(pc.is_in(table["user_id"], value_set=wanted))
        if not len(table):
            continue
        if seen:
            done = pa.concat_arrays(seen) if len(seen) > 1 else seen[0]
            seen = [done]
            table = table.filter(pc.invert(pc.is_in(table["user_id"], value_set=done)))
        if not len(table):
            continue
        frame = table.to_pandas().sort_values("event_timestamp", kind="stable").drop_duplicates("user_id", keep="last")
        seen.append(pa.array(frame["user_id"].astype(str).to_numpy(), type=pa.string()))
        taken += len(frame)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pa_strings(values: Iterable[str]) -> "pa.Array":
    """A pyarrow string array of ``values``."""
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())
