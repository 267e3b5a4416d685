"""Point-in-time-correct training sets: Feast's historical retrieval, or the same join computed directly.

Feast's point-in-time join gives each entity row (user, cutoff) the user's newest snapshot row at or before
the cutoff (the views' TTL is ten years); the on-demand view ``user_time`` adds the time-dependent features
with the request time = the cutoff (features/time_features.py). Every entity row comes back; a user with no
snapshot by its cutoff gets null features (Feast's file store dropped such rows).

- **Direct** (the default, :func:`direct_training_set`): each snapshot source is read once as (user, time),
  sorted, and each entity row's row found by a binary search (:class:`SourceIndex`); only the picked rows
  are read in full, and the time features are computed vectorised for the whole frame by the function the
  on-demand view runs. No entity upload, no per-call pandas transform; cell for cell Feast's DuckDB result
  (tests/model/test_training_set.py). Used when the service's views read date-partitioned Parquet folders
  and its on-demand views are the read-time features (:func:`direct_plan`).
- **Feast, one window** (``direct=False``): over the whole store Feast's join looks at every stored row of a
  user older than the entity row, so the retrieval runs against a *window*: one file written in a temporary
  folder holding, for every cutoff, each user's newest snapshot row at or before it (read in one pass,
  :func:`rows_as_of`: snapshots are sparse, a user's newest row can be old), registered in a registry of its
  own with the service's views and sources pointed at it.
- **Feast over the whole store** (``windowed=False``): the reference the other two are checked against.

``python -m bench retrieval`` times all of them against Feast's file store.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from base.progress import step
from features.store import FEATURE_SERVICE, feature_refs, rebase

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
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
    """Mirror ``src`` (a file or folder) at ``dst`` with hard links (no data is copied): only for a source
    without date partitions or with nothing as early as the cutoffs, which Feast then sees whole."""
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

    def __init__(self, store: FeatureStore, data_dir: Path, root: Path, service: str = FEATURE_SERVICE,
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
def offline_window(store: FeatureStore, data_dir: Path, service: str = FEATURE_SERVICE,
                   offline_store: dict[str, Any] | None = None) -> Iterator[OfflineWindow]:
    """An :class:`OfflineWindow` in a temporary folder inside the data directory (the rare whole-source hard
    links of :func:`_link_tree` need one filesystem)."""
    base = data_dir / "training"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".feast-window-", dir=base) as tmp:
        yield OfflineWindow(store, data_dir, Path(tmp), service, offline_store)


def retrieve(store: FeatureStore, entity_df: pd.DataFrame, service: str = FEATURE_SERVICE) -> pd.DataFrame:
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


class SourceIndex:
    """Where each user's rows are in a date-partitioned source, up to a last day: the (user, time) of
    every row (two columns read, kept as integer codes), sorted, so that each entity row's newest row
    at or before its time is found by a binary search, as Feast's point-in-time join picks it."""

    def __init__(self, source: Path, last: pd.Timestamp, timestamp_field: str = "event_timestamp",
                 join_key: str = "user_id") -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        name = f"date={last:%Y-%m-%d}"
        folders = sorted(p for p in source.glob("date=*") if p.is_dir() and p.name <= name)
        self.files = [str(f) for folder in folders for f in sorted(folder.rglob("*.parquet"))]
        self.timestamp_field, self.join_key = timestamp_field, join_key
        self.sizes = np.array([pq.ParquetFile(f).metadata.num_rows for f in self.files], dtype=np.int64)
        if not self.files or not self.sizes.sum():
            self.users, self.key, self.order, self.times, self.stamps = pa.array([], pa.string()), *([np.empty(0, np.int64)] * 4)
            return
        schema = pa.unify_schemas([pq.read_schema(self.files[0]), pq.read_schema(self.files[-1])])
        table = ds.dataset(self.files, schema=schema, format="parquet").to_table(columns=[join_key, timestamp_field])
        encoded = pc.dictionary_encode(table[join_key]).combine_chunks()
        self.users = encoded.dictionary
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.stamps = _nanos(table[timestamp_field])
        self.times, ranks = np.unique(self.stamps, return_inverse=True)
        width = len(self.times) + 1
        key = codes * width + ranks.astype(np.int64)
        self.order = np.argsort(key, kind="stable")  # ties keep read order: the later row is the last
        self.key = key[self.order]

    def newest(self, users: pa.Array, at: np.ndarray, ttl: pd.Timedelta | timedelta | None = None) -> np.ndarray:
        """Per entity row (``users``, ``at`` in epoch nanoseconds), the source row (position in read
        order) with the newest time at or before ``at`` and not older than ``ttl`` before it; -1 when none."""
        import numpy as np
        import pyarrow.compute as pc

        out = np.full(len(at), -1, dtype=np.int64)
        if not len(self.key):
            return out
        width = len(self.times) + 1
        code = pc.fill_null(pc.index_in(users, value_set=self.users), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        rank = np.searchsorted(self.times, at, side="right")
        pos = np.searchsorted(self.key, code * width + rank, side="left") - 1
        ok = (code >= 0) & (pos >= 0)
        ok[ok] = self.key[pos[ok]] // width == code[ok]
        out[ok] = self.order[pos[ok]]
        if ttl is not None and ok.any():
            young = self.stamps[out[ok]] + pd.Timedelta(ttl).value >= at[ok]
            out[np.flatnonzero(ok)[~young]] = -1
        return out

    def rows(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """The ``columns`` of the source rows at ``positions`` (read order; -1 gives a row of nulls), in
        the order given. Each file is read once, only when it holds one of them."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = np.unique(positions[positions >= 0])
        starts = np.concatenate([[0], np.cumsum(self.sizes)])
        file_of = np.searchsorted(starts, wanted, side="right") - 1
        parts = []
        for f in np.unique(file_of):
            local = wanted[file_of == f] - starts[f]
            parts.append(pq.read_table(self.files[f], columns=columns).take(pa.array(local)))
        if parts:
            table = pa.concat_tables(parts, promote_options="permissive")
        else:  # nothing found: the columns' types from a file (all rows come back null)
            table = pq.read_schema(self.files[0]).empty_table().select(columns) if self.files else pa.table(
                {c: pa.array([], pa.float64()) for c in columns})
        at = np.searchsorted(wanted, positions)
        at = np.where(positions >= 0, at, -1)
        return table.take(pa.array(at, mask=at < 0))


def _nanos(column: pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as epoch nanoseconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.cast(column, pa.timestamp("ns", tz="UTC")), pa.int64()).to_numpy(zero_copy_only=False)


def direct_plan(store: FeatureStore, service: str = FEATURE_SERVICE) -> dict[str, Any] | None:
    """What :func:`direct_training_set` needs to answer the feature service without Feast: the views
    (each reading a date-partitioned Parquet folder by one join key) grouped by source, and the
    on-demand views with their snapshot grid; None when the service has anything else (then Feast answers)."""
    from feast import FileSource

    from features.time_features import udf_grid

    fs = store.get_feature_service(service)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    plan: dict[str, Any] = {"sources": {}, "on_demand": []}
    for projection in fs.feature_view_projections:
        if projection.name in odfvs:
            view = odfvs[projection.name]
            grid = udf_grid(view.name, getattr(view.feature_transformation, "udf_string", "") or "")
            if grid is None:
                return None
            plan["on_demand"].append(([f.name for f in projection.features], grid))
            continue
        view = store.get_feature_view(projection.name)
        source = view.batch_source
        keys = [c.name for c in view.entity_columns]
        if not isinstance(source, FileSource) or keys != ["user_id"] or not Path(source.path).is_dir():
            return None
        entry = plan["sources"].setdefault(source.path, {"timestamp": source.timestamp_field, "ttl": view.ttl,
                                                          "columns": [], "requested": []})
        if entry["ttl"] != view.ttl or entry["timestamp"] != source.timestamp_field:
            return None
        entry["requested"] += [f.name for f in projection.features if f.name not in entry["requested"]]
        entry["columns"] += [f.name for f in projection.features if f.name not in entry["columns"]]
    from features.time_features import INPUTS

    for entry in plan["sources"].values():  # the on-demand views' inputs come from the same rows
        entry["columns"] += [c for c in INPUTS if c not in entry["columns"]]
    return plan


def direct_training_set(store: FeatureStore, entity_df: pd.DataFrame, plan: dict[str, Any]) -> pd.DataFrame:
    """Feast's point-in-time join of the feature service, computed here: for each entity row, the
    newest source row at or before its time (within the view's TTL), then the on-demand time
    features vectorised for the whole frame (features/time_features.py, the function the on-demand
    view runs). Cell for cell what ``get_historical_features`` returns (tests/model/test_training_set.py);
    nothing is uploaded to or joined in a database."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.time_features import INPUTS, time_features

    stamps = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    at = stamps.to_numpy(dtype="datetime64[ns]").view("int64")
    users = pa.array(entity_df["user_id"].astype(str).to_numpy(), type=pa.string())
    # DuckDB (the offline store this stands in for) hands times back in microseconds
    columns: dict[str, Any] = {c: entity_df[c].reset_index(drop=True) for c in entity_df.columns}
    columns["event_timestamp"] = stamps.reset_index(drop=True).astype("datetime64[us, UTC]")
    inputs = pd.DataFrame(index=columns["event_timestamp"].index)
    for path, entry in plan["sources"].items():
        index = SourceIndex(Path(path), stamps.max(), entry["timestamp"])
        stored = set(pq.read_schema(index.files[0]).names) if index.files else set()
        read = [c for c in entry["columns"] if c in stored]
        rows = index.rows(index.newest(users, at, entry["ttl"] or None), read).to_pandas()
        for c in read:
            if c in INPUTS:
                inputs[c] = rows[c].to_numpy()
            if c in entry["requested"]:
                columns[c] = rows[c]
    request = (stamps - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()  # as retrieve() sends it
    for names, every in plan["on_demand"]:
        times = time_features(inputs, request, every)
        columns.update({n: times[n] for n in names})
    return pd.DataFrame(columns)  # built once from whole columns (no concat of frames)


def build_training_set(store: FeatureStore, labels: pd.DataFrame, data_dir: Path,
                       service: str = FEATURE_SERVICE, progress: Any | None = None,
                       windowed: bool = True, direct: bool = True) -> pd.DataFrame:
    """Join each (user, cutoff) label row with the features Feast knew at that cutoff.

    ``direct`` (default, when the service's views are date-partitioned Parquet folders and its
    on-demand views the read-time features) computes Feast's point-in-time join here
    (:func:`direct_training_set`: no entity upload, no per-call pandas transform); otherwise ``windowed``
    retrieves every cutoff at once through Feast from an :class:`OfflineWindow` in ``data_dir``;
    ``windowed=False`` runs a single Feast retrieval over the whole offline store (slow on long
    histories; the reference the others are checked against).
    """
    entity_df = labels.copy()
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    names = feature_refs(store, service)
    plan = direct_plan(store, service) if windowed and direct else None
    if plan is not None:
        with step(progress, "point-in-time join (direct, one pass per source)", total=1) as advance:
            frame = direct_training_set(store, entity_df, plan)
            advance(1)
    elif windowed:
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
