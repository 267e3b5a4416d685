"""Point-in-time-correct training sets from Feast historical retrieval.

Feast's file offline store joins every entity row with every stored row of its user before it keeps the
newest one at or before the row's timestamp: with daily snapshots that is ~100 candidate rows per entity
row (50,000 users x 7 cutoffs did not finish in 30 minutes). The retrieval therefore runs once per cutoff
against a *window* of the offline store: a folder whose date partitions are hard links to the stored
ones that can hold the answer (the newest partition at or before the cutoff, which carries every user
known by then), so Feast's own point-in-time join reads one day instead of the whole history. Sources
that are not date-partitioned (or have no partition that early) are linked whole. The result equals a retrieval over the full store
(tests/model/test_training_set.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.store import FEATURE_SERVICE, feature_refs
from base.progress import step

if TYPE_CHECKING:
    from feast import FeatureStore


def service_sources(store: "FeatureStore", service: str = FEATURE_SERVICE) -> list[str]:
    """Relative paths of the file sources behind the feature views a service reads."""
    fs = store.get_feature_service(service)
    return sorted({store.get_feature_view(p.name).batch_source.path for p in fs.feature_view_projections})


def partition_for(source: Path, cutoff: pd.Timestamp) -> Path | None:
    """The newest ``date=YYYY-MM-DD`` partition of ``source`` at or before the cutoff's day (None if none)."""
    last = f"date={cutoff:%Y-%m-%d}"
    parts = sorted(p for p in source.glob("date=*") if p.is_dir() and p.name <= last)
    return parts[-1] if parts else None


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror ``src`` (a file or folder) at ``dst`` with hard links (no data is copied)."""
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
        return
    for file in src.rglob("*.parquet"):
        target = dst / file.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(file, target)


class OfflineWindow:
    """A folder that shows Feast only the offline-store partitions a cutoff needs, and a store reading it."""

    def __init__(self, store: "FeatureStore", sources: list[str], root: Path) -> None:
        from feast import FeatureStore

        self.data_dir = Path(store.config.repo_path)
        self.sources = sources
        self.root = root
        config = store.config.model_copy()
        config.repo_path = root  # relative source paths resolve here; the registry path is absolute
        self.store = FeatureStore(config=config)

    def point_at(self, cutoff: pd.Timestamp) -> None:
        """Show the partitions for ``cutoff`` (whole files for sources without date partitions)."""
        for rel in self.sources:
            src, dst = self.data_dir / rel, self.root / rel
            shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else dst.unlink(missing_ok=True)
            part = partition_for(src, cutoff) if src.is_dir() else None
            if part is not None:
                _link_tree(part, dst / part.name)
            else:  # not date-partitioned, or nothing that early: Feast sees the whole source
                _link_tree(src, dst)


@contextmanager
def offline_window(store: "FeatureStore", service: str = FEATURE_SERVICE) -> Iterator[OfflineWindow]:
    """An :class:`OfflineWindow` in a temporary folder inside the data directory (hard links need one filesystem)."""
    base = Path(store.config.repo_path) / "training"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".feast-window-", dir=base) as tmp:
        yield OfflineWindow(store, service_sources(store, service), Path(tmp))


def retrieve(store: "FeatureStore", entity_df: pd.DataFrame, service: str = FEATURE_SERVICE) -> pd.DataFrame:
    """``store.get_historical_features`` for the feature service, columns named without the view prefix."""
    fs = store.get_feature_service(service)
    frame = store.get_historical_features(entity_df=entity_df, features=fs).to_df()
    names = feature_refs(store, service)
    views = [p.name for p in fs.feature_view_projections]
    return frame.rename(columns={f"{v}__{n}": n for n in names for v in views})


def build_training_set(store: "FeatureStore", labels: pd.DataFrame, service: str = FEATURE_SERVICE,
                       progress: Any | None = None, windowed: bool = True) -> pd.DataFrame:
    """Join each (user, cutoff) label row with the features Feast knew at that cutoff.

    ``windowed`` (default) retrieves one cutoff at a time from an :class:`OfflineWindow`; ``False``
    runs a single retrieval over the whole offline store (slow on long histories; used to check the window).
    """
    entity_df = labels.copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    names = feature_refs(store, service)
    if windowed:
        cutoffs = sorted(entity_df["event_timestamp"].unique())
        frames = []
        with offline_window(store, service) as window, \
                step(progress, "Feast historical retrieval (per cutoff)", total=len(cutoffs)) as advance:
            for cutoff in cutoffs:
                window.point_at(pd.Timestamp(cutoff))
                frames.append(retrieve(window.store, entity_df.loc[entity_df["event_timestamp"] == cutoff], service))
                advance(1)
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = retrieve(store, entity_df, service)
    labels_cols = [c for c in labels.columns if c.startswith("label_")]
    keep = ["user_id", "event_timestamp", *labels_cols, *names]
    return frame.loc[:, keep].sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)
