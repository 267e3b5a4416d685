"""Batch scoring: every user's persona from the newest snapshot with the champions, smoothed.

Scores move toward the newest model output by exponential smoothing (DESIGN.md):
P(t+1) = P(t) + α·(P*(t) − P(t)), with P(t) the user's current persona in the history and
α = ``smoothing_alpha``; a user without history starts at P*. The segment follows from the
features and the smoothed scores. Personas that changed (see ``update.history``) are appended to
the history with source ``batch``: the same snapshot scored twice appends nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from persona.config import Settings
from persona.history import append_history, latest_personas
from persona.paths import DataPaths
from persona.segments import assign_segments, smooth

if TYPE_CHECKING:
    from serving.models import LoadedModel


@dataclass(frozen=True)
class ScoringResult:
    """One batch scoring run."""

    users: int
    changed: int
    feature_timestamp: pd.Timestamp | None
    versions: dict[str, str] = field(default_factory=dict)
    segment_changes: int = 0


def newest_snapshots(settings: Settings) -> pd.DataFrame:
    """Every user's newest snapshot (the newest day partition holds every user)."""
    from features.compute import read_snapshots

    parts = sorted(DataPaths(settings.data_dir).behaviour_snapshots.glob("date=*"))
    if not parts:
        raise RuntimeError("no feature snapshots: run `persona build-features` first")
    snaps = read_snapshots(parts[-1])
    return snaps.sort_values("event_timestamp").drop_duplicates("user_id", keep="last").reset_index(drop=True)


def score_personas(settings: Settings, models: dict[str, "LoadedModel"], snaps: pd.DataFrame,
                   previous: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Smoothed personas for the users of ``snaps`` (the frame :func:`append_history` takes)."""
    n = len(snaps)
    raw = {}
    for key in ("spend", "churn"):
        m = models[key]
        x = snaps.reindex(columns=m.features).to_numpy(dtype=float)
        raw[key] = np.asarray(m.booster.predict(x), dtype=float) if n else np.zeros(0)
    prev = previous.set_index("user_id").reindex(snaps["user_id"])
    alpha = settings.smoothing_alpha
    spend = np.maximum(smooth(prev["predicted_spend"].to_numpy(dtype=float), raw["spend"], alpha), 0.0)
    churn = np.clip(smooth(prev["churn_risk"].to_numpy(dtype=float), raw["churn"], alpha), 0.0, 1.0)
    features = models["spend"].features
    values = {f: snaps[f].to_numpy(dtype=float) if f in snaps else np.full(n, np.nan) for f in features}
    values.update(predicted_spend=spend, churn_risk=churn)
    return pd.DataFrame({
        "user_id": snaps["user_id"].astype(str).to_numpy(),
        "segment": assign_segments(settings.segments, values, n),
        "predicted_spend": np.round(spend, 2),
        "churn_risk": np.round(churn, 4),
        "spend_version": models["spend"].ref.version,
        "churn_version": models["churn"].ref.version,
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
                         versions={k: models[k].ref.version for k in ("spend", "churn")}, segment_changes=moved)


def materialize_personas(settings: Settings, store=None) -> int:  # noqa: ANN001
    """Load every user's current persona into the online store (Feast view ``user_persona``)."""
    from features.online_writer import write_latest
    from features.store import open_store

    latest = latest_personas(settings)
    if latest.empty:
        return 0
    store = store or open_store(settings)
    return write_latest(store, "user_persona", latest.assign(created=latest["scored_at"]))
