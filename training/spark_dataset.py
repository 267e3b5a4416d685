"""Training sets on the Spark profile: Feast's Spark offline store, one cutoff at a time, on a sample.

Spark's point-in-time join reads every file its source table is given, so each cutoff's retrieval
binds the snapshot table to the one partition that can answer it (the newest at or before the cutoff,
which carries every user known by then; features/spark_store.py). Training stays on one node, on the
label rows the caller hands in: the pipeline keeps ``training.sample_share`` of the users at the fit
cutoffs (:func:`training.user_sample.sampled`, a stable hash of the id: the same users at every cutoff, on every engine) and
every user at the evaluation cutoff (``persona.pipeline.sampled_fit_rows``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from base.config import Settings
from base.progress import step
from features.store import FEATURE_SERVICE, feature_refs
from training.dataset import retrieve

if TYPE_CHECKING:
    from feast import FeatureStore


def build_training_set_spark(settings: Settings, store: "FeatureStore", labels: pd.DataFrame,
                             service: str = FEATURE_SERVICE, progress: Any | None = None) -> pd.DataFrame:
    """Join each (user, cutoff) label row with the features the Spark offline store knew at that cutoff
    (the frame ``training.dataset.build_training_set`` returns)."""
    from features.spark_session import spark_session
    from features.spark_store import bind_sources
    from features.store import load_definitions

    spark = spark_session(settings.spark)
    repo = load_definitions(settings.feature_repo)
    entity_df = labels.copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    names = feature_refs(store, service)
    cutoffs = sorted(entity_df["event_timestamp"].unique())
    frames = []
    with step(progress, "Spark historical retrieval (per cutoff)", total=len(cutoffs)) as advance:
        for cutoff in cutoffs:
            cutoff = pd.Timestamp(cutoff)
            bind_sources(spark, settings, cutoff, repo)
            frame = retrieve(store, entity_df.loc[entity_df["event_timestamp"] == cutoff], service)
            frame["event_timestamp"] = utc(frame["event_timestamp"])  # Spark hands back zone-less times
            frames.append(frame)
            advance(1)
    frame = pd.concat(frames, ignore_index=True)
    labels_cols = [c for c in labels.columns if c.startswith("label_")]
    keep = ["user_id", "event_timestamp", *labels_cols, *names]
    return frame.loc[:, keep].sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)


def utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC (zone-less ones are UTC: the Spark session's time zone)."""
    values = pd.to_datetime(values)
    return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
