"""Feast on Spark (``PERSONA_ENGINE=spark``): the Spark offline store for retrieval and the
``spark.engine`` batch engine for materialization, over the same registry and online store.

The feature repo declares its snapshot sources once, as ``FileSource``s. For the Spark profile the
batch views of :data:`SPARK_VIEWS` are registered with a ``SparkSource`` over a Spark table named
after the source (:func:`table_name`) instead; :func:`bind_sources` points that table at the Parquet
folder, or at just the partition a cutoff needs (Spark's retrieval reads every file it is given and
prunes no ``date=`` partition). Push views keep their file sources: the service writes them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from features.lifetime import LIFETIME_VIEW
from features.spark_session import session_conf, spark_session
from features.spark_snapshots import data_url, date_partitions
from features.store import (
    BEHAVIOUR_VIEW,
    RepoObjects,
    ensure_push_batch_files,
    read_feast_yaml,
    rebase,
    store_config,
    store_objects,
)

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyspark.sql import SparkSession

OVERLAY = "feature_store.spark.yaml"
SPARK_VIEWS = (BEHAVIOUR_VIEW, LIFETIME_VIEW)
"""Batch feature views read through Spark (the others keep their file sources)."""


def table_name(source_name: str) -> str:
    """The Spark table a view's ``SparkSource`` reads."""
    return f"persona_{source_name}"


SQLITE_WRITE_ROWS = 5000
"""Rows (users) per ``spark.engine`` write transaction into a SQLite online store (see
:func:`open_spark_store`)."""


def open_spark_store(settings: Settings, project: str | None = None) -> "FeatureStore":
    """The profile's store (registry, online store; paths moved into the settings' data directory as
    ``features.store.open_store`` moves them) with the Spark offline store and ``spark.engine``.

    Into a SQLite online store ``spark.engine`` writes in transactions of :data:`SQLITE_WRITE_ROWS`
    rows, from one task (:func:`materialize_spark`)."""
    from feast import FeatureStore

    overlay = {key: {**value, "spark_conf": session_conf(settings.spark)}
               if key in ("offline_store", "batch_engine") else value
               for key, value in read_feast_yaml(settings.feature_repo / OVERLAY).items()}
    config = store_config(settings, project=project, overlay=overlay)
    if config.online_store.type == "sqlite":
        overlay["materialization"] = {"online_write_batch_size": SQLITE_WRITE_ROWS}
        config = store_config(settings, project=project, overlay=overlay)
    spark_session(settings.spark)  # Feast's Spark store and engine use the active session
    return FeatureStore(repo_path=str(settings.feature_repo), config=config)


def source_paths(repo: RepoObjects, data_dir: Path) -> dict[str, Path]:
    """Path of each Spark view's declared file source in ``data_dir``, by source name (paths the repo
    names under its data directory moved into ``data_dir``, as ``features.store.open_store`` does)."""
    from feast import FeatureView

    def where(path: str) -> Path:
        return Path(rebase(path, repo.data_dir, data_dir)) if repo.data_dir is not None else data_dir / path

    return {fv.batch_source.name: where(fv.batch_source.path) for fv in repo.named(FeatureView)
            if fv.name in SPARK_VIEWS}


def spark_objects(repo: RepoObjects) -> RepoObjects:
    """The repo's objects with each :data:`SPARK_VIEWS` view reading a ``SparkSource`` table."""
    import warnings

    from feast import FeatureView
    from feast.data_source import DataSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
        SparkSource,
    )

    replaced: dict[str, Any] = {}
    for fv in repo.named(FeatureView):
        if fv.name in SPARK_VIEWS and fv.stream_source is None:
            src = fv.batch_source
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "experimental" on every construction
                replaced[src.name] = SparkSource(
                    name=src.name, table=table_name(src.name), timestamp_field=src.timestamp_field,
                    created_timestamp_column=src.created_timestamp_column, description=src.description,
                    tags=src.tags, owner=src.owner)
    out: list[Any] = []
    for obj in repo.objects:
        if isinstance(obj, FeatureView) and obj.batch_source.name in replaced and obj.stream_source is None:
            obj = copy.copy(obj)
            obj.batch_source = replaced[obj.batch_source.name]
        elif isinstance(obj, DataSource) and obj.name in replaced:
            obj = replaced[obj.name]  # the declared file source itself: one source per name in the registry
        out.append(obj)
    return RepoObjects(out)


def partitions_until(spark: "SparkSession", root: str, cutoff: pd.Timestamp) -> list[str]:
    """The ``date=YYYY-MM-DD`` folders under ``root`` at or before the cutoff's day (any Hadoop file
    system: local, HDFS, object storage); snapshots are sparse, so a user's newest row at the cutoff can
    be in any of them."""
    last = f"date={cutoff:%Y-%m-%d}"
    return [f"{root.rstrip('/')}/{n}" for n in date_partitions(spark, root) if n <= last]


def bind_sources(spark: "SparkSession", settings: Settings, cutoff: pd.Timestamp | None = None,
                 repo: RepoObjects | None = None, one_partition: bool = False) -> dict[str, str]:
    """Point each Spark view's table at its folder: the whole of it, or (with ``cutoff``) its partitions
    at or before the cutoff (Spark does not prune them itself; the whole folder when there is none that
    early); ``one_partition``: read into one partition. Returns table → path (the first partition's
    when several)."""
    from features.store import load_definitions

    repo = repo or load_definitions(settings.feature_repo)
    bound = {}
    for name, folder in source_paths(repo, settings.data_dir).items():
        root = data_url(settings, folder)
        # nothing that early: the whole folder (the point-in-time join then finds nothing either)
        paths = (partitions_until(spark, root, cutoff) if cutoff is not None else []) or [root]
        path = paths[0]
        try:
            table = spark.read.option("basePath", root).parquet(*paths)
            (table.coalesce(1) if one_partition else table).createOrReplaceTempView(table_name(name))
        except Exception as e:  # AnalysisException: missing folder, nanosecond timestamps, ...
            raise RuntimeError(f"{path}: Spark cannot read the snapshots ({str(e).splitlines()[0]}); "
                               "build them with PERSONA_ENGINE=spark (microsecond timestamps)") from e
        bound[table_name(name)] = path
    return bound


def apply_spark_definitions(settings: Settings, store: "FeatureStore") -> list[str]:
    """Register the repo's objects with Spark sources for :data:`SPARK_VIEWS` (``feast apply``)."""
    from feast import Project

    repo = store_objects(settings, store)
    ensure_push_batch_files(repo, settings.data_dir)
    bind_sources(spark_session(settings.spark), settings, repo=repo)
    objects = spark_objects(repo).objects
    store.apply(objects)
    return [getattr(o, "name", "?") for o in objects if not isinstance(o, Project)]


def materialize_spark(settings: Settings, store: "FeatureStore", views: list[str] | None = None) -> int:
    """``spark.engine`` materialization of every user's newest snapshot row into the online store
    (Feast keeps the newest row per user over the whole table); returns the users.

    Into SQLite every stage of the write runs as one task (the table read into one partition, one
    shuffle partition while Feast's job runs). Feast's engine writes each partition of its result from
    its own Python worker through its own SQLite connection, opened with SQLite's default 5 s busy
    timeout, each Arrow batch in one transaction; SQLite takes one writer at a time (WAL lets readers
    in, not a second writer), so with two partitions writing at once the second waited, gave up after
    5 s and failed the job with "database is locked" once a transaction took longer than that (50,000
    users). One writer and short transactions (:data:`SQLITE_WRITE_ROWS`) also leave room for the
    service's real-time writers (``features.online_fold.wal_connection``, 60 s timeout). Redis takes
    parallel writers: there every partition writes on its own."""
    from pyspark.sql import functions as F

    spark = spark_session(settings.spark)
    root = DataPaths(settings.data_dir).behaviour_snapshots
    newest = sorted(root.glob("date=*"))
    if not newest and not settings.spark.data_url:
        raise RuntimeError("no feature snapshots: run `persona build-features` first")
    cutoff = pd.Timestamp(newest[-1].name[5:], tz="UTC") if newest else pd.Timestamp.now(tz="UTC")
    one_writer = store.config.online_store.type == "sqlite"
    bound = bind_sources(spark, settings, cutoff, one_partition=one_writer)
    table = spark.table(next(iter(bound)))
    span = table.agg(F.min(F.unix_micros("event_timestamp")).alias("lo"), F.max(F.unix_micros("event_timestamp"))
                     .alias("hi"), F.countDistinct("user_id").alias("n")).collect()[0]
    start = pd.Timestamp(span["lo"], unit="us", tz="UTC") - pd.Timedelta(seconds=1)
    end = pd.Timestamp(span["hi"], unit="us", tz="UTC") + pd.Timedelta(seconds=1)
    shuffle = spark.conf.get("spark.sql.shuffle.partitions")
    if one_writer:
        spark.conf.set("spark.sql.shuffle.partitions", "1")
    try:
        store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime(),
                          feature_views=views or list(SPARK_VIEWS))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", shuffle)
    return int(span["n"])


def engine_store(settings: Settings, store: "FeatureStore | None" = None) -> "FeatureStore":
    """The store the offline stages use: with ``PERSONA_ENGINE=spark`` the Spark variant (of ``store``'s
    project), else ``store`` or the profile's store."""
    if settings.engine != "spark":
        from features.store import open_store

        return store or open_store(settings)
    if store is not None and getattr(store.config.offline_store, "type", "") == "spark":
        return store
    return open_spark_store(settings, project=store.project if store is not None else None)
