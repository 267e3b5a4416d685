"""Batch scoring: every user's persona from the newest snapshot with the champions, smoothed.

Scores move toward the newest model output by exponential smoothing (DESIGN.md):
P(t+1) = P(t) + α·(P*(t) − P(t)), with P(t) the user's current persona in the history and
α = ``smoothing_alpha``; a user without history starts at P*. The segment follows from the
features and the smoothed scores. Personas that changed (see ``update.history``) are appended to
the history with source ``batch``: the same snapshot scored twice appends nothing the second time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from base.segments import smooth
from scoring.history import append_history, latest_personas, version_column
from scoring.scorer import PersonaScorer
from training.targets import TARGETS

if TYPE_CHECKING:
    from features.online_records import RecordStore
    from training.champions import LoadedModel


@dataclass(frozen=True)
class ScoringResult:
    """One batch scoring run."""

    users: int
    changed: int
    feature_timestamp: pd.Timestamp | None
    versions: dict[str, str] = field(default_factory=dict)
    segment_changes: int = 0


def newest_snapshots(settings: Settings) -> pd.DataFrame:
    """Every user's newest snapshot row (sparse: it can be in any partition), stamped with the newest
    snapshot time, which its stored values still hold for (the time features are computed as of it)."""
    from features.compute import newest_rows

    root = DataPaths(settings.data_dir).behaviour_snapshots
    parts = sorted(root.glob("date=*"))
    if not parts:
        raise RuntimeError("no feature snapshots: run `persona build-features` first")
    snaps = newest_rows(root).sort_values("user_id", kind="stable").reset_index(drop=True)
    return snaps.assign(event_timestamp=pd.Timestamp(parts[-1].name[5:], tz="UTC"))


def with_time_features(snaps: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Snapshot rows with the time-dependent features (features/time_features.py) as of each row's
    ``event_timestamp``, unless they are there already."""
    from features.time_features import OUTPUTS, time_features

    if set(OUTPUTS) <= set(snaps.columns):
        return snaps
    at = (pd.to_datetime(snaps["event_timestamp"], utc=True) - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    extra = time_features(snaps, at.to_numpy(dtype=float), settings.features.snapshot_every_days)
    return pd.concat([snaps.drop(columns=[c for c in OUTPUTS if c in snaps]), extra], axis=1)


def score_personas(settings: Settings, models: dict[str, "LoadedModel"], snaps: pd.DataFrame,
                   previous: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Smoothed personas for the users of ``snaps`` (the frame :func:`append_history` takes)."""
    scorer = PersonaScorer(models, settings)
    n = len(snaps)
    snaps = with_time_features(snaps.reset_index(drop=True), settings)
    x = scorer.frame_matrix(snaps)
    kept = [t for t in scorer.targets if t.segment_input]
    raw = scorer.predict(x, [t.key for t in kept]) if n else {t.key: np.zeros(0) for t in kept}
    prev = previous.set_index("user_id").reindex(snaps["user_id"])
    alpha = settings.smoothing_alpha
    smoothed = {t.key: t.finish(smooth(prev[t.record_field].to_numpy(dtype=float) if t.record_field in prev
                                       else np.full(n, np.nan), raw[t.key], alpha)) for t in kept}
    return pd.DataFrame({
        "user_id": snaps["user_id"].astype(str).to_numpy(),
        "segment": scorer.segments(x, smoothed),
        **{t.record_field: np.round(smoothed[t.key], 2 if t.output == "amount" else 4) for t in kept},
        **{version_column(t.key): models[t.key].ref.version for t in kept},
        "feature_timestamp": pd.to_datetime(snaps["event_timestamp"], utc=True).to_numpy(),
        "scored_at": now or pd.Timestamp.now(tz="UTC"),
    })


def rescore_all(settings: Settings, models: dict[str, "LoadedModel"]) -> ScoringResult:
    """Score every user from the newest snapshot and append the changed personas to the history."""
    snaps = newest_snapshots(settings)
    previous = latest_personas(settings)
    frame = score_personas(settings, models, snaps, previous)
    before = previous.set_index("user_id")["segment"].reindex(frame["user_id"])
    moved = int((before.notna().to_numpy() & (before.to_numpy() != frame["segment"].to_numpy())).sum())
    appended = append_history(settings, frame, "batch")
    when = pd.Timestamp(frame["feature_timestamp"].max()) if len(frame) else None
    return ScoringResult(users=len(frame), changed=appended, feature_timestamp=when,
                         versions={t.key: models[t.key].ref.version for t in TARGETS if t.segment_input},
                         segment_changes=moved)


def materialize_personas(settings: Settings, store=None) -> int:  # noqa: ANN001
    """Load every user's current persona into the online store (Feast view ``user_persona``)."""
    from features.online_writer import write_latest
    from features.store import open_store

    latest = latest_personas(settings)
    if latest.empty:
        return 0
    store = store or open_store(settings)
    return write_latest(store, "user_persona", latest.assign(created=latest["scored_at"]))


# -- score on write: finished records in the online store --------------------------------------


@dataclass(frozen=True)
class RescoreResult:
    """One re-score of stored records."""

    users: int
    seconds: float

    @property
    def users_per_second(self) -> float:
        """Throughput of the re-score."""
        return self.users / self.seconds if self.seconds > 0 else 0.0


def stored_records(scorer: PersonaScorer, user_ids: list[str], x: np.ndarray, times: list[float | None],
                   now: datetime | None = None) -> tuple[list, list]:
    """Score users and give their records and what the record store keeps of each."""
    from features.online_records import StoredRecord
    from scoring.records import record_body

    records = scorer.score(user_ids, x, times, now)
    versions = scorer.record_key()
    return records, [(r.user_id, StoredRecord(times[i] or 0.0, versions, r.segment, record_body(r)))
                     for i, r in enumerate(records)]


def rescore_records(scorer: PersonaScorer, read: Callable[[list[str]], tuple[np.ndarray, list[float | None]]],
                    records: "RecordStore", users: list[str], chunk: int = 2000,
                    progress: Callable[[int], None] | None = None) -> RescoreResult:
    """Score ``users`` from their online features (``read``) in vectorised chunks and store their
    records (a record scored from newer features, by the real-time path meanwhile, is kept)."""
    started = time.perf_counter()
    for start in range(0, len(users), chunk):
        ids = users[start:start + chunk]
        x, times = read(ids)
        records.write(stored_records(scorer, ids, x, times)[1])
        if progress is not None:
            progress(len(ids))
    return RescoreResult(len(users), time.perf_counter() - started)
