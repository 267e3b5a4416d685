"""The real-time path into Feast: fold new events into the ``user_activity`` push source.

Counters are per UTC day: a push for a user whose stored ``activity_day`` is today adds to the stored
counts; otherwise the day starts again from the new events. ``events_last_hour`` counts the new
events in the hour before the newest one, plus the stored count when the stored newest event is
within that hour (an approximation that never counts an event twice).

The offline copy is append-only: each push adds one Parquet file to the push source's folder
(written under a hidden name, flushed, then renamed), so concurrent writers never lose each other's
rows and a crash mid-write leaves at most a hidden temporary file, never a truncated table.
(Feast's own offline push rewrites the whole table in place.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from feast import FeatureStore

PUSH_SOURCE = "user_activity_push_source"
ACTIVITY_VIEW = "user_activity"
COUNTERS = ("activity_day", "events_today", "purchases_today", "spend_today", "events_last_hour", "last_event_ts")
DAY_S = 86400.0


def _unix(ts: pd.Series) -> np.ndarray:
    return (ts - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()


def summarise(events: pd.DataFrame) -> pd.DataFrame:
    """Per user and UTC day of the new events: counts, spend and newest event time."""
    secs = _unix(events["timestamp"])
    frame = pd.DataFrame({
        "user_id": events["user_id"].to_numpy(),
        "day": (secs // DAY_S).astype(np.int64),
        "secs": secs,
        "purchase": (events["event_type"] == "purchase").to_numpy(),
        "spend": np.where(events["event_type"] == "purchase",
                          pd.to_numeric(events["amount"], errors="coerce").fillna(0.0), 0.0),
    })
    newest = frame.groupby("user_id")["secs"].transform("max")
    frame["recent"] = frame["secs"] >= newest - 3600.0
    recent = frame.groupby("user_id")["recent"].sum()  # the last hour may cross midnight
    last_day = frame.groupby("user_id")["day"].transform("max")
    today = frame.loc[frame["day"] == last_day]
    out = today.groupby("user_id").agg(
        day=("day", "max"), events=("secs", "size"), purchases=("purchase", "sum"),
        spend=("spend", "sum"), last_ts=("secs", "max"),
    )
    out["recent"] = recent.reindex(out.index)
    return out


def current_activity(store: "FeatureStore", users: list[str]) -> pd.DataFrame:
    """The stored activity counters of these users (NaN where none)."""
    refs = [f"{ACTIVITY_VIEW}:{c}" for c in COUNTERS]
    resp = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users]).to_dict()
    return pd.DataFrame({c: resp[c] for c in COUNTERS}, index=users).astype(float)


def fold(new: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """New per-user counters: added to the stored ones when they belong to the same day.

    Users whose new events are all older than their stored day are left out (late events never
    roll today's counters back).
    """
    stored = stored.reindex(new.index)
    late = new["day"].to_numpy() < stored["activity_day"].to_numpy()
    new, stored = new.loc[~late], stored.loc[~late]
    same_day = stored["activity_day"].to_numpy() == new["day"].to_numpy()
    keep = lambda col: np.where(same_day, np.nan_to_num(stored[col].to_numpy()), 0.0)  # noqa: E731
    recent_prev = np.where(same_day & (stored["last_event_ts"].to_numpy() >= new["last_ts"].to_numpy() - 3600.0),
                           np.nan_to_num(stored["events_last_hour"].to_numpy()), 0.0)
    last_ts = np.fmax(new["last_ts"].to_numpy(), stored["last_event_ts"].to_numpy())
    out = pd.DataFrame({
        "user_id": new.index.to_numpy(),
        "event_timestamp": pd.to_datetime(np.round(last_ts * 1e6).astype(np.int64), unit="us", utc=True),
        "activity_day": new["day"].to_numpy(dtype=np.int64),
        "events_today": (keep("events_today") + new["events"].to_numpy()).astype(np.int64),
        "purchases_today": (keep("purchases_today") + new["purchases"].to_numpy()).astype(np.int64),
        "spend_today": np.round(keep("spend_today") + new["spend"].to_numpy(), 2),
        "events_last_hour": (recent_prev + new["recent"].to_numpy()).astype(np.int64),
        "last_event_ts": last_ts,
    })
    return out


def offline_folder(store: "FeatureStore") -> Path:
    """The folder of the activity push source's offline table (one Parquet file per push)."""
    batch = store.get_feature_view(ACTIVITY_VIEW).stream_source.batch_source
    path = Path(batch.path)
    return path if path.is_absolute() else Path(store.config.repo_path) / path


def append_offline(store: "FeatureStore", rows: pd.DataFrame) -> Path | None:
    """Add activity rows to the offline table as one new file (nothing existing is rewritten)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from base.durable import replace_durably

    if rows.empty:
        return None
    folder = offline_folder(store)
    folder.mkdir(parents=True, exist_ok=True)
    frame = rows[["user_id", "event_timestamp", *COUNTERS]].copy()
    frame["user_id"] = frame["user_id"].astype(str)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    for c in COUNTERS:
        frame[c] = frame[c].astype("float64" if c in ("spend_today", "last_event_ts") else "int64")
    name = f"part-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    return replace_durably(tmp, folder / name)


def push_activity(store: "FeatureStore", events: pd.DataFrame, *, offline: bool = True) -> pd.DataFrame:
    """Push the users' updated activity online (Feast's push, one process at a time; the service
    folds through features/online_fold.py) and append it offline; returns the rows pushed."""
    from feast.data_source import PushMode

    if events.empty:
        return pd.DataFrame(columns=["user_id", "event_timestamp", *COUNTERS])
    new = summarise(events)
    rows = fold(new, current_activity(store, list(new.index)))
    if rows.empty:
        return rows
    store.push(PUSH_SOURCE, rows, to=PushMode.ONLINE)
    if offline:
        append_offline(store, rows)
    return rows
