"""Point-in-time-correct training sets from Feast historical retrieval.

The embedded default reads the offline store with Feast's DuckDB offline store (``offline_store: duckdb`` in
``feature_repo/feature_store.yaml``). Feast's point-in-time join looks at every stored row of a user that is
older than the entity row (the views' TTL is ten years), so over daily snapshots one retrieval over the whole
store grows with users x days (50,000 users x 120 days: 18 minutes and 12 GB). The retrieval therefore runs once
against a *window*: a folder whose date partitions are hard links to the stored ones that can hold the answer
(for each cutoff, each user's newest snapshot row at or before it, gathered from every older partition:
snapshots are sparse, a user's newest row can be old; one row per user and cutoff, as main's dense window had),
registered in a registry of its own with the service's views and sources pointed at it. The time-dependent features come
from the on-demand view ``user_time`` with the request time = the cutoff (features/time_features.py). Every entity row comes back; a
user with no snapshot by its cutoff gets null features (Feast's file store dropped such rows).
``python -m bench retrieval`` compares it with the file store.
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

from base.progress import step
from features.store import FEATURE_SERVICE, feature_refs, rebase

if TYPE_CHECKING:
    from feast import FeatureStore


def rows_as_of(source: Path, cutoffs: list[pd.Timestamp], columns: list[str] | None = None) -> pd.DataFrame:
    """For each cutoff, each user's newest row of the date-partitioned ``source`` at or before it (the only
    row Feast's point-in-time join can pick for an entity row at that cutoff), as one frame without repeats
    (empty when none). One pass: the partitions up to the last cutoff's day are read once (only ``columns``
    when given), sorted by (user, time) and each cutoff's rows are found with a binary search."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if not cutoffs:
        return pd.DataFrame()
    last = f"date={max(cutoffs):%Y-%m-%d}"
    folders = sorted(p for p in source.glob("date=*") if p.is_dir() and p.name <= last)
    files = [str(f) for folder in folders for f in sorted(folder.rglob("*.parquet"))]
    if not files:
        return pd.DataFrame()
    schema = pa.unify_schemas([pq.read_schema(files[0]), pq.read_schema(files[-1])])
    table = ds.dataset(files, schema=schema, format="parquet").to_table(columns=columns)  # read order kept
    if not len(table):
        return pd.DataFrame()
    frame = table.to_pandas()
    stamps = pd.to_datetime(frame["event_timestamp"], utc=True).to_numpy(dtype="datetime64[ns]").view("int64")
    codes, uniques = pd.factorize(frame["user_id"], sort=True)
    times, ranks = np.unique(stamps, return_inverse=True)
    width = len(times) + 1
    key = codes.astype("int64") * width + ranks.astype("int64")
    order = np.argsort(key, kind="stable")  # ties keep read order: the later partition's row is the last
    key = key[order]
    users = np.arange(len(uniques), dtype="int64")
    picked = []
    for cutoff in sorted(set(cutoffs)):
        at = np.searchsorted(times, pd.Timestamp(cutoff).tz_convert("UTC").value, side="right")
        pos = np.searchsorted(key, users * width + at, side="left") - 1  # last row < (user, rank at) = newest <= cutoff
        ok = pos >= 0
        ok[ok] = key[pos[ok]] // width == users[ok]
        picked.append(order[pos[ok]])
    rows = np.unique(np.concatenate(picked))
    return frame.iloc[rows].reset_index(drop=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror ``src`` (a file or folder) at ``dst`` with hard links (no data is copied)."""
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
        return
    dst.mkdir(parents=True, exist_ok=True)
    for file in src.rglob("*.parquet"):
        target = dst / file.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(file, target)


class OfflineWindow:
    """A folder that shows Feast only the offline-store partitions a cutoff needs, and a store reading it."""

    def __init__(self, store: "FeatureStore", data_dir: Path, root: Path, service: str = FEATURE_SERVICE,
                 offline_store: dict[str, Any] | None = None) -> None:
        from feast import FeatureStore
        from feast.repo_config import RepoConfig

        fs = store.get_feature_service(service)
        odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
        on_demand = [odfvs[p.name] for p in fs.feature_view_projections if p.name in odfvs]
        names = {p.name for p in fs.feature_view_projections if p.name not in odfvs}
        names |= {p.name for v in on_demand for p in v.source_feature_view_projections.values()}
        views = [store.get_feature_view(name) for name in sorted(names)]
        requests = [r for v in on_demand for r in v.source_request_sources.values()]
        self.sources = {Path(v.batch_source.path): Path(rebase(v.batch_source.path, data_dir, root)) for v in views}
        self.needed: dict[Path, set[str]] = {}  # the columns Feast reads, per source (views can share one)
        for v in views:
            self.needed.setdefault(Path(v.batch_source.path), set()).update(
                {*(f.name for f in v.features), *(c.name for c in v.entity_columns),
                 v.batch_source.timestamp_field, v.batch_source.created_timestamp_column})
        for view in views:  # the registry's own definitions, reading the window
            view.batch_source.file_options.uri = str(self.sources[Path(view.batch_source.path)])
        config = RepoConfig(project=store.project, provider="local", registry=str(root / "registry.db"),
                            online_store={"type": "sqlite", "path": str(root / "online.db")},
                            offline_store=offline_store or store.config.offline_store.model_dump(),
                            entity_key_serialization_version=store.config.entity_key_serialization_version)
        config.repo_path = root
        self.store = FeatureStore(repo_path=str(root), config=config)
        self.store.apply([*store.list_entities(), *[v.batch_source for v in views], *requests, *views, *on_demand, fs])

    def point_at(self, *cutoffs: pd.Timestamp) -> None:
        """Show one file holding, for every cutoff, each user's newest row at or before it (Feast's join
        picks the right one per entity row; whole sources without date partitions or with nothing that early)."""
        stamps = sorted({pd.Timestamp(c) for c in cutoffs})
        for src, dst in self.sources.items():
            shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else dst.unlink(missing_ok=True)
            rows = rows_as_of(src, stamps, self._columns(src)) if src.is_dir() and stamps else pd.DataFrame()
            if not len(rows):  # Feast sees the whole source
                if src.exists():
                    _link_tree(src, dst)
                continue
            folder = dst / f"date={stamps[-1]:%Y-%m-%d}"
            folder.mkdir(parents=True, exist_ok=True)
            rows.to_parquet(folder / "part-0.parquet", index=False)

    def _columns(self, src: Path) -> list[str] | None:
        """The stored columns of ``src`` that Feast reads (None: all of them)."""
        import pyarrow.parquet as pq

        first = next(src.rglob("*.parquet"), None)
        if first is None:
            return None
        stored = pq.read_schema(first).names
        return [c for c in stored if c in self.needed[src]]


@contextmanager
def offline_window(store: "FeatureStore", data_dir: Path, service: str = FEATURE_SERVICE,
                   offline_store: dict[str, Any] | None = None) -> Iterator[OfflineWindow]:
    """An :class:`OfflineWindow` in a temporary folder inside the data directory (hard links need one filesystem)."""
    base = data_dir / "training"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".feast-window-", dir=base) as tmp:
        yield OfflineWindow(store, data_dir, Path(tmp), service, offline_store)


def retrieve(store: "FeatureStore", entity_df: pd.DataFrame, service: str = FEATURE_SERVICE) -> pd.DataFrame:
    """``store.get_historical_features`` for the feature service, columns named without the view prefix."""
    from features.time_features import REQUEST_TS

    fs = store.get_feature_service(service)
    if REQUEST_TS not in entity_df:  # the on-demand view's request time: the row's cutoff
        stamps = pd.to_datetime(entity_df["event_timestamp"], utc=True)
        entity_df = entity_df.assign(**{REQUEST_TS: (stamps - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()})
    frame = store.get_historical_features(entity_df=entity_df, features=fs).to_df()
    names = feature_refs(store, service)
    views = [p.name for p in fs.feature_view_projections]
    frame = frame.rename(columns={f"{v}__{n}": n for n in names for v in views})
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def build_training_set(store: "FeatureStore", labels: pd.DataFrame, data_dir: Path,
                       service: str = FEATURE_SERVICE, progress: Any | None = None,
                       windowed: bool = True) -> pd.DataFrame:
    """Join each (user, cutoff) label row with the features Feast knew at that cutoff.

    ``windowed`` (default) retrieves one cutoff at a time from an :class:`OfflineWindow` in ``data_dir``;
    ``False`` runs a single retrieval over the whole offline store (slow on long histories; checks the window).
    """
    entity_df = labels.copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    names = feature_refs(store, service)
    if windowed:
        cutoffs = [pd.Timestamp(c) for c in entity_df["event_timestamp"].unique()]
        with offline_window(store, data_dir, service) as window, \
                step(progress, "Feast historical retrieval (DuckDB, one window)", total=1) as advance:
            window.point_at(*cutoffs)  # each cutoff's newest partition: Feast's join picks the right one per row
            frame = retrieve(window.store, entity_df, service)
            advance(1)
    else:
        frame = retrieve(store, entity_df, service)
    if len(frame) != len(entity_df):  # every label row comes back, with null features if none were known
        raise RuntimeError(f"Feast historical retrieval returned {len(frame)} rows for {len(entity_df)} entity rows")
    labels_cols = [c for c in labels.columns if c.startswith("label_")]
    keep = ["user_id", "event_timestamp", *labels_cols, *names]
    return frame.loc[:, keep].sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)
