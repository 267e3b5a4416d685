"""The persona history: an append-only, day-partitioned Parquet table in the offline store.

Every scoring run (the batch update, or real-time rescoring in the service) appends the personas
that *changed* (segment changed, or a score moved by more than ``update.history`` tolerances) with
when they were scored, the model versions and the feature timestamp. Each call writes its own
files (temp file + rename), so readers never see half a file and several processes may append at
once; a lock file makes "compare with the latest, then append" one step.

Layout: ``<data>/history/user_persona/date=YYYY-MM-DD/<scored_at>-<source>-<id>.parquet``
(partitioned by the day of ``event_timestamp``, which is the feature timestamp: the Feast
``user_persona`` view reads this folder). ``<data>/history/latest.parquet`` caches each user's
newest row and names the files it covers in its own metadata; it is derived and may be deleted.

A user's "current" persona is the row with the newest feature timestamp (ties: newest
``scored_at``), the order Feast uses for the online view.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from base.config import Settings
from base.durable import exclusive_lock
from base.paths import DataPaths
from training.targets import TARGETS


def version_column(key: str) -> str:
    """The history column holding the version of target ``key``'s model."""
    return f"{key}_version"


KEPT = tuple(t for t in TARGETS if t.segment_input)
"""The targets whose predictions the history keeps (the ones segment rules may name)."""
SCORES = tuple(t.record_field for t in KEPT)
"""Their predictions, by record field."""
VERSIONS = tuple(version_column(t.key) for t in KEPT)
"""The model version of each of them."""
REQUIRED = ("user_id", "segment", *SCORES, *VERSIONS, "feature_timestamp", "scored_at")
"""Columns a caller of :func:`append_history` provides."""
COLUMNS = (*REQUIRED, "source", "event_timestamp")
"""Columns stored (``event_timestamp`` = ``feature_timestamp``, the Feast timestamp field)."""
CACHE_EVERY = 20
"""Rewrite the latest-row cache once this many history files are not covered by it."""


def history_root(settings: Settings) -> Path:
    """The folder of the history table (the Feast ``user_persona`` source)."""
    return DataPaths(settings.data_dir).history


def _cache_path(settings: Settings) -> Path:
    return DataPaths(settings.data_dir).history_cache


def _locked(settings: Settings) -> AbstractContextManager[None]:
    """An exclusive lock over compare-and-append (other processes wait)."""
    return exclusive_lock(DataPaths(settings.data_dir).history_lock)


def _normalise(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The caller's frame in the stored schema; clear errors for missing columns and bad values."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"append_history: frame lacks column(s) {', '.join(missing)} "
                         f"(needs {', '.join(REQUIRED)})")
    if not source or not source.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"append_history: source {source!r} must be a plain word such as 'batch' or 'realtime'")
    out = pd.DataFrame({
        "user_id": frame["user_id"].astype(str).to_numpy(),
        "segment": frame["segment"].astype(str).to_numpy(),
        **{c: pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy() for c in SCORES},
        **{c: frame[c].astype(str).to_numpy() for c in VERSIONS},
    })
    for col in ("feature_timestamp", "scored_at"):
        try:
            out[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]").to_numpy()
        except (ValueError, TypeError) as e:
            raise ValueError(f"append_history: column {col}: not a timestamp ({e})") from e
        bad = out[col].isna().to_numpy()
        if bad.any():
            raise ValueError(f"append_history: column {col} is missing for user {out['user_id'].iloc[int(np.argmax(bad))]}")
    for col in SCORES:
        bad = ~np.isfinite(out[col].to_numpy())
        if bad.any():
            raise ValueError(f"append_history: column {col} is not a finite number for user "
                             f"{out['user_id'].iloc[int(np.argmax(bad))]}")
    out["source"] = source
    out["event_timestamp"] = out["feature_timestamp"]
    out = out.sort_values(["user_id", "feature_timestamp", "scored_at"], kind="stable")
    return out.drop_duplicates("user_id", keep="last").reset_index(drop=True)


def _files(settings: Settings) -> list[Path]:
    root = history_root(settings)
    return sorted(root.glob("date=*/*.parquet")) if root.exists() else []


def _read_files(files: Sequence[Path], users: Sequence[str] | None = None,
                columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the given history files (only ``users`` when given), in the stored schema."""
    import pyarrow.dataset as ds

    cols = list(columns or COLUMNS)
    if not files:
        return _empty(cols)
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    flt = ds.field("user_id").isin(list(users)) if users is not None else None
    return dataset.to_table(columns=cols, filter=flt).to_pandas()


def _empty(cols: Sequence[str]) -> pd.DataFrame:
    kinds = {"predicted_spend": "float64", "churn_risk": "float64", "feature_timestamp": "datetime64[us, UTC]",
             "scored_at": "datetime64[us, UTC]", "event_timestamp": "datetime64[us, UTC]"}
    return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, "object")) for c in cols})


def _newest_per_user(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per user: the newest feature timestamp, ties broken by the newest scoring time."""
    frame = frame.sort_values(["user_id", "feature_timestamp", "scored_at"], kind="stable")
    return frame.drop_duplicates("user_id", keep="last").reset_index(drop=True)


def _write_atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_cache(path: Path, users: Sequence[str] | None) -> tuple[set[str], pd.DataFrame]:
    """The cached latest rows and the history files they cover (kept in the file's own metadata)."""
    import pyarrow.parquet as pq

    try:
        covered = set(json.loads(pq.read_schema(path).metadata[b"persona.files"]))
        return covered, _read_files([path], users)
    except (OSError, ValueError, KeyError, TypeError):
        return set(), _empty(COLUMNS)


def _write_cache(path: Path, latest: pd.DataFrame, covered: set[str]) -> None:
    """Cache rows and the files they cover in one atomic file (a reader never sees one without the other)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(latest, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"persona.files": json.dumps(sorted(covered)).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _latest(settings: Settings, users: Sequence[str] | None = None, refresh_cache: bool = False) -> pd.DataFrame:
    """Each user's current persona row (all users, or only ``users``)."""
    cache = _cache_path(settings)
    covered, base = _read_cache(cache, users) if cache.exists() else (set(), _empty(COLUMNS))
    root = history_root(settings)
    fresh = [f for f in _files(settings) if str(f.relative_to(root)) not in covered]
    frames = [f for f in (base, _read_files(fresh, users)) if not f.empty]
    latest = _newest_per_user(pd.concat(frames, ignore_index=True)) if frames else _empty(COLUMNS)
    if refresh_cache and users is None and len(fresh) >= CACHE_EVERY:
        _write_cache(cache, latest, covered | {str(f.relative_to(root)) for f in fresh})
    return latest


def changed(frame: pd.DataFrame, latest: pd.DataFrame, tolerances: dict[str, float]) -> np.ndarray:
    """Rows of ``frame`` whose persona differs from the user's latest recorded one: a new user, another
    segment, or a score that moved by more than its tolerance (record field → tolerance); rows older
    than the recorded one are not."""
    prev = latest.set_index("user_id").reindex(frame["user_id"])
    known = prev["segment"].notna().to_numpy()
    moved = frame["segment"].to_numpy() != prev["segment"].to_numpy()
    for col in SCORES:
        moved |= np.abs(frame[col].to_numpy() - prev[col].to_numpy(dtype=float)) > tolerances[col]
    stale = known & (frame["feature_timestamp"].to_numpy() < prev["feature_timestamp"].to_numpy())
    return (~known | moved) & ~stale


def tolerances(settings: Settings) -> dict[str, float]:
    """How far each kept prediction must move to count as a change (record field → tolerance)."""
    return {t.record_field: settings.update.history.tolerance.get(t.key, t.history_tolerance) for t in KEPT}


def records_frame(personas: Sequence[Any], scored_at: pd.Timestamp) -> pd.DataFrame:
    """Served persona records as history rows (the frame :func:`append_history` takes); cold starts and
    records without a feature snapshot are left out."""
    return pd.DataFrame([{"user_id": p.user_id, "segment": p.segment,
                          **{t.record_field: getattr(p, t.record_field) for t in KEPT},
                          **{version_column(t.key): getattr(p.model_versions, t.key) for t in KEPT},
                          "feature_timestamp": p.feature_timestamp, "scored_at": scored_at}
                         for p in personas if not p.cold_start and p.feature_timestamp is not None])


def append_history(settings: Settings, frame: pd.DataFrame, source: str) -> int:
    """Append the rows of ``frame`` whose persona changed vs the user's latest recorded one; returns
    the rows appended. Columns (:data:`REQUIRED`): user_id, segment, each kept prediction and its model
    version (predicted_spend, churn_risk, spend_version, churn_version), feature_timestamp (UTC), scored_at (UTC). One new file per day partition per call
    (written atomically); safe to call from several processes."""
    rows = _normalise(frame, source)
    if rows.empty:
        return 0
    tol = tolerances(settings)
    with _locked(settings):
        latest = _latest(settings, rows["user_id"].tolist())
        new = rows.loc[changed(rows, latest, tol)]
        if new.empty:
            return 0
        stamp = new["scored_at"].max()
        tag = f"{stamp:%Y%m%dT%H%M%S%f}-{source}-{uuid.uuid4().hex[:8]}"
        for day, part in new.groupby(new["event_timestamp"].dt.strftime("%Y-%m-%d"), sort=True):
            _write_atomic_parquet(part.reset_index(drop=True), history_root(settings) / f"date={day}" / f"{tag}.parquet")
    return len(new)


def latest_personas(settings: Settings, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Each user's persona as of ``as_of`` (feature time; default: the newest), one row per user."""
    if as_of is None:
        return _latest(settings, refresh_cache=True)
    rows = read_history(settings)
    return _newest_per_user(rows.loc[rows["event_timestamp"] <= _utc(as_of)])


def read_history(settings: Settings, user_id: str | None = None) -> pd.DataFrame:
    """Every recorded persona (of one user when given), oldest first."""
    rows = _read_files(_files(settings), [user_id] if user_id is not None else None)
    return rows.sort_values(["event_timestamp", "scored_at", "user_id"], kind="stable", ignore_index=True)


def _utc(when: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def update_times(settings: Settings, source: str = "batch") -> list[pd.Timestamp]:
    """The feature timestamps of the scoring runs of ``source`` (each batch update scores one snapshot)."""
    rows = _read_files(_files(settings), columns=["event_timestamp", "source"])
    times = rows.loc[rows["source"] == source, "event_timestamp"].drop_duplicates().sort_values()
    return [pd.Timestamp(t) for t in times]


def migration(settings: Settings, start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
    """Matrix of segment moves: users by their segment as of ``start`` (rows) and as of ``end`` (columns).
    Users without a persona at ``start`` are counted under ``(new)``."""
    rows = read_history(settings)
    t0, t1 = _utc(start), _utc(end)
    if t1 < t0:
        raise ValueError(f"--to {t1:%Y-%m-%d %H:%M} is before --from {t0:%Y-%m-%d %H:%M}")
    before = _newest_per_user(rows.loc[rows["event_timestamp"] <= t0]).set_index("user_id")["segment"]
    after = _newest_per_user(rows.loc[rows["event_timestamp"] <= t1]).set_index("user_id")["segment"]
    if after.empty:
        return pd.DataFrame()
    origin = before.reindex(after.index).fillna("(new)")
    return pd.crosstab(origin.rename("from"), after.rename("to"))


def segment_sizes(settings: Settings) -> pd.DataFrame:
    """Users per segment as of each batch update (rows: update time, columns: segment)."""
    rows = read_history(settings)
    out = {}
    for t in update_times(settings):
        current = _newest_per_user(rows.loc[rows["event_timestamp"] <= t])
        out[t] = current["segment"].value_counts()
    return pd.DataFrame(out).T.fillna(0).astype(int).sort_index() if out else pd.DataFrame()
