"""What the studio's pages show, computed at update time (``persona update`` calls :func:`build`), never
per request: each user's current persona with its features, each user's segment as of every batch
update, and the overview's numbers (segment sizes and profiles, drift, data quality, model versions).

Files under ``<data>/studio`` (each written atomically; derived, may be deleted and rebuilt):
``current.parquet`` (one row per user), ``segments_by_update.parquet`` (user × update),
``overview.json``, ``emails.parquet`` (hashed e-mail → user, for the person search), ``timelines.parquet``
(the persona history) and ``recent_events.parquet`` (the last days' events), both sorted by user in small
row groups so one person's rows are read without scanning everyone's.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from studio.files import read_json, studio_dir, write_atomic, write_json

PROFILE_FEATURES = ("spend_90d", "purchases_90d", "aov_90d", "product_views_30d", "days_since_last_purchase",
                    "sessions_30d", "cart_conversion_30d", "support_tickets_90d")
"""Features whose segment means the overview sets against the population (those present are shown)."""
UPDATES_KEPT = 60
"""Batch updates kept in the segment-by-update table (the newest)."""
SKIPPED = ("event_timestamp", "created", "last_event_ts", "last_purchase_ts", "first_event_ts", "first_purchase_ts")
RECENT_DAYS = 30
"""Days of events the person page shows from."""
EVENT_COLUMNS = ("user_id", "timestamp", "event_type", "channel", "amount", "currency", "category", "product_id", "device")
TIMELINE_COLUMNS = ("user_id", "event_timestamp", "segment", "predicted_spend", "churn_risk", "source", "scored_at")
ROW_GROUP = 16_384


def _parquet(frame: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_atomic(path, buf.getvalue())


def current_frame(settings: Settings) -> pd.DataFrame:
    """Each user's current persona (history) joined with the numeric features of the newest snapshot."""
    from scoring.history import latest_personas

    personas = latest_personas(settings)
    try:
        from scoring.batch import newest_snapshots, with_time_features

        snaps = with_time_features(newest_snapshots(settings), settings)  # recency as of the newest snapshot
    except RuntimeError:  # no snapshots yet
        return personas
    numeric = [c for c in snaps.columns if c not in SKIPPED and c != "user_id"
               and pd.api.types.is_numeric_dtype(snaps[c])]
    feats = snaps[["user_id", *numeric]].copy()
    for c in numeric:
        feats[c] = pd.to_numeric(feats[c], errors="coerce").astype("float64")
    clash = [c for c in numeric if c in personas.columns]
    return personas.merge(feats.drop(columns=clash), on="user_id", how="left")


def _by_user(frame: pd.DataFrame, path: Path, order: list[str], ascending: list[bool]) -> None:
    """A per-user lookup table: sorted by user, small row groups (a reader filters by their statistics)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame.sort_values(order, ascending=ascending, kind="stable"), preserve_index=False)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, row_group_size=ROW_GROUP)
    write_atomic(path, buf.getvalue().to_pybytes())


def recent_events(settings: Settings) -> pd.DataFrame:
    """Every event of the last :data:`RECENT_DAYS` day partitions of the clean store."""
    import pyarrow.dataset as ds

    root = DataPaths(settings.data_dir).events
    days = sorted(root.glob("date=*"))[-RECENT_DAYS:] if root.exists() else []
    files = [str(f) for d in days for f in d.glob("*.parquet")]
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
    return ds.dataset(files, format="parquet").to_table(columns=list(EVENT_COLUMNS)).to_pandas()


def user_rows(path: Path, user: str) -> pd.DataFrame:
    """One user's rows of a per-user lookup table (empty when the table is missing)."""
    import pyarrow.parquet as pq

    if not path.exists():
        return pd.DataFrame()
    return pq.read_table(path, filters=[("user_id", "==", user)]).to_pandas()


def segments_by_update(settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    """Users × batch updates: each user's segment as of each update's feature time (one pass over the
    history ``rows``, oldest first)."""
    from scoring.history import update_times

    times = update_times(settings)[-UPDATES_KEPT:]
    if not times:
        return pd.DataFrame({"user_id": pd.Series(dtype=object)})
    state = pd.Series(dtype=object)
    columns: dict[str, pd.Series] = {}
    start = None
    ts = rows["event_timestamp"]
    for t in times:
        chunk = rows.loc[(ts <= t) if start is None else ((ts > start) & (ts <= t))]
        newest = chunk.drop_duplicates("user_id", keep="last").set_index("user_id")["segment"]
        state = pd.concat([state.drop(newest.index, errors="ignore"), newest])
        columns[_label(t)] = state.copy()
        start = t
    frame = pd.DataFrame(columns)
    frame.index.name = "user_id"
    return frame.reset_index()


def _label(t: pd.Timestamp) -> str:
    return f"{pd.Timestamp(t):%Y-%m-%d %H:%M}"


def profiles(current: pd.DataFrame) -> list[dict[str, Any]]:
    """Per segment: users, spend share, mean churn risk, and feature means against the population's."""
    if current.empty:
        return []
    feats = [f for f in PROFILE_FEATURES if f in current.columns]
    population = current[feats].mean()
    total_spend = float(current["predicted_spend"].sum()) or 1.0
    out = []
    for seg, part in current.groupby("segment", sort=True):
        means = part[feats].mean()
        out.append({
            "segment": str(seg), "users": len(part),
            "spend_share": round(float(part["predicted_spend"].sum()) / total_spend, 4),
            "mean_spend": round(float(part["predicted_spend"].mean()), 2),
            "churn_risk": round(float(part["churn_risk"].mean()), 4),
            "features": {f: {"segment": _num(means[f]), "population": _num(population[f])} for f in feats},
        })
    return out


def _num(v: Any) -> float | None:
    return None if pd.isna(v) else round(float(v), 4)


def drift_status(settings: Settings) -> dict[str, Any] | None:
    """The newest drift check in short."""
    from scoring.drift import drift_history

    found = drift_history(settings)
    if not found:
        return None
    d = found[-1]
    top = sorted(d.features.items(), key=lambda kv: -kv[1])[:8]
    return {"window": d.window, "checked_at": d.checked_at, "reason": d.reason, "retrain": d.retrain,
            "drifted_features": d.drifted_features, "drifted_outputs": d.drifted_outputs, "alert": d.alert,
            "warn": d.warn, "top": [[k, round(v, 4)] for k, v in top], "outputs": d.outputs}


def data_quality(settings: Settings, last: int = 10) -> dict[str, Any]:
    """Ledger totals and the newest batches (accepted, quarantined, duplicates)."""
    from ingestion.ledger import read_ledger

    batches = read_ledger(DataPaths(settings.data_dir).ledger)
    total = {k: int(sum(getattr(b, k) for b in batches)) for k in ("rows_read", "accepted", "quarantined", "duplicates")}
    recent = [{"batch": b.batch_id, "channel": b.channel, "status": b.status, "rows": b.rows_read,
               "accepted": b.accepted, "quarantined": b.quarantined, "duplicates": b.duplicates,
               "at": b.processed_at} for b in batches[-last:]]
    return {"batches": len(batches), **total, "recent": recent[::-1],
            "quarantined_share": round(total["quarantined"] / total["rows_read"], 4) if total["rows_read"] else 0.0}


def versions_in_use(current: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Model version → users whose current persona it produced, per kept target."""
    from scoring.history import KEPT, version_column

    return {t.key: {str(k): int(v) for k, v in current[version_column(t.key)].value_counts().items()}
            for t in KEPT if version_column(t.key) in current.columns}


def email_index(settings: Settings) -> pd.DataFrame:
    """Hashed e-mail → user, from the clean events (only hashes are stored there)."""
    import pyarrow.dataset as ds

    root = DataPaths(settings.data_dir).events
    files = sorted(root.glob("date=*/*.parquet")) if root.exists() else []
    if not files:
        return pd.DataFrame({"email_hash": pd.Series(dtype=object), "user_id": pd.Series(dtype=object)})
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(
        columns=["email_hash", "user_id"], filter=ds.field("email_hash").is_valid())
    return table.to_pandas().drop_duplicates().reset_index(drop=True)


def inputs_key(settings: Settings) -> str:
    """A fingerprint of what the aggregates are built from (history files, ledger, drift checks, the newest
    events, the identity graph); equal keys mean a rebuild would store the same aggregates."""
    import hashlib

    paths = DataPaths(settings.data_dir)
    found: list[str] = []
    for pattern, root in (("date=*/*.parquet", paths.history), ("drift_*.json", paths.drift),
                          ("date=*/*.parquet", paths.events)):
        found += sorted(str(p.relative_to(root)) for p in root.glob(pattern)) if root.exists() else []
    for path in (paths.ledger, paths.identity_graph, *sorted(paths.behaviour_snapshots.glob("date=*"))[-1:]):
        if path.exists():
            st = path.stat()
            found.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(found).encode()).hexdigest()[:16]


def build(settings: Settings, force: bool = False) -> str:
    """Compute and store every aggregate the pages show (unless their inputs did not change since the last
    build); returns a one-line summary."""
    from scoring.history import read_history

    out = studio_dir(settings)
    key = inputs_key(settings)
    if not force and read_json(out / "overview.json", {}).get("inputs") == key:
        return "skipped: studio aggregates up to date"
    current = current_frame(settings)
    rows = read_history(settings)
    by_update = segments_by_update(settings, rows)
    sizes = {c: {str(k): int(v) for k, v in by_update[c].value_counts().items()}
             for c in by_update.columns if c != "user_id"}
    overview = {"built_at": datetime.now(UTC).isoformat(timespec="seconds"), "users": len(current), "inputs": key,
                "updates": [c for c in by_update.columns if c != "user_id"], "sizes": sizes,
                "profiles": profiles(current), "drift": drift_status(settings),
                "quality": data_quality(settings), "versions": versions_in_use(current),
                "feature_time": str(current["feature_timestamp"].max()) if len(current) else None}
    _parquet(current, out / "current.parquet")
    _parquet(by_update, out / "segments_by_update.parquet")
    _parquet(email_index(settings), out / "emails.parquet")
    _by_user(rows[list(TIMELINE_COLUMNS)], out / "timelines.parquet", ["user_id", "event_timestamp", "scored_at"],
             [True, True, True])
    _by_user(recent_events(settings), out / "recent_events.parquet", ["user_id", "timestamp"], [True, False])
    write_json(out / "overview.json", overview)  # last: its time stamps the set
    return f"studio aggregates for {len(current)} users over {len(sizes)} update(s)"


@dataclass(frozen=True)
class Aggregates:
    """The stored aggregates, loaded once per build (pages read them from memory)."""

    overview: dict[str, Any]
    current: pd.DataFrame  # indexed by user_id
    by_update: pd.DataFrame  # indexed by user_id, one column per update
    emails: pd.DataFrame
    stamp: int
    folder: Path

    def person(self, user_id: str) -> dict[str, Any] | None:
        """The user's current row (features and persona), or None."""
        if user_id not in self.current.index:
            return None
        row = self.current.loc[user_id]
        return {k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}

    def timeline(self, user_id: str) -> pd.DataFrame:
        """The user's persona history, oldest first."""
        return user_rows(self.folder / "timelines.parquet", user_id)

    def events(self, user_id: str, last: int = 20) -> pd.DataFrame:
        """The user's newest events of the last days."""
        return user_rows(self.folder / "recent_events.parquet", user_id).head(last).drop(columns="user_id", errors="ignore")

    def user_of_email(self, digest: str) -> str | None:
        """The user a hashed e-mail belongs to."""
        hit = self.emails.loc[self.emails["email_hash"] == digest, "user_id"]
        return str(hit.iloc[0]) if len(hit) else None


class AggregateCache:
    """Loads the aggregates when the stored set changes (the overview file's modification time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Aggregates | None = None

    def get(self, settings: Settings) -> Aggregates | None:
        """The newest stored aggregates, or None before the first update built them."""
        folder = studio_dir(settings)
        try:
            stamp = (folder / "overview.json").stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            if self._loaded is None or self._loaded.stamp != stamp:
                self._loaded = Aggregates(
                    overview=read_json(folder / "overview.json", {}),
                    current=pd.read_parquet(folder / "current.parquet").set_index("user_id", drop=False),
                    by_update=pd.read_parquet(folder / "segments_by_update.parquet").set_index("user_id"),
                    emails=pd.read_parquet(folder / "emails.parquet"), stamp=stamp, folder=folder)
            return self._loaded
