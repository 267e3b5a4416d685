"""Point-in-time-correct training sets from Feast historical retrieval."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from features.store import FEATURE_SERVICE, feature_refs

if TYPE_CHECKING:
    from feast import FeatureStore


def build_training_set(store: "FeatureStore", labels: pd.DataFrame, service: str = FEATURE_SERVICE) -> pd.DataFrame:
    """Join each (user, cutoff) label row with the features Feast knew at that cutoff."""
    fs = store.get_feature_service(service)
    entity_df = labels.copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    frame = store.get_historical_features(entity_df=entity_df, features=fs).to_df()
    names = feature_refs(store, service)
    frame = frame.rename(columns={f"{v}__{n}": n for n in names for v in ("user_behaviour",)})
    labels_cols = [c for c in labels.columns if c.startswith("label_")]
    keep = ["user_id", "event_timestamp", *labels_cols, *names]
    return frame.loc[:, keep].sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)
