"""Batch scoring on Spark: every user's persona from the newest snapshot with the champions, in
pandas UDFs (``mapInPandas``) on the executors.

Each batch of rows goes through :func:`scoring.batch.score_personas`, the same code the default batch
re-score runs (the scorer, smoothing toward the newest output, segments), so the personas are the
scorer's. The champions travel to the executors inside the UDF's closure (LightGBM boosters pickle as
their model text). The changed personas are then appended to the persona history as in
:func:`scoring.batch.rescore_all`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from base.config import Settings
from scoring.batch import ScoringResult, score_personas
from scoring.history import append_history, latest_personas, version_column
from training.targets import TARGETS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from training.champions import LoadedModel

PREVIOUS = "_previous_"
"""Prefix of the previous persona's columns joined to each snapshot row."""


def persona_schema(models: dict[str, "LoadedModel"]) -> str:
    """The Spark schema of :func:`score_personas`'s frame."""
    kept = [t for t in TARGETS if t.segment_input and t.key in models]
    fields = ["user_id string", "segment string", *[f"{t.record_field} double" for t in kept],
              *[f"{version_column(t.key)} string" for t in kept], "feature_timestamp timestamp", "scored_at timestamp"]
    return ", ".join(fields)


def score_spark(spark: "SparkSession", settings: Settings, models: dict[str, "LoadedModel"], snaps: "DataFrame",
                previous: pd.DataFrame, now: pd.Timestamp | None = None) -> "DataFrame":
    """Smoothed personas of the users of ``snaps`` (a Spark frame of snapshot rows, one per user),
    computed batch by batch on the executors; ``previous``: each user's current persona."""
    from pyspark.sql import functions as F

    now = now or pd.Timestamp.now(tz="UTC")
    fields = [t.record_field for t in TARGETS if t.segment_input and t.key in models]
    prev = previous.loc[:, ["user_id", *[f for f in fields if f in previous]]] if not previous.empty else \
        pd.DataFrame({"user_id": pd.Series(dtype=str)})
    for f in fields:
        prev[f] = pd.to_numeric(prev[f], errors="coerce") if f in prev else pd.Series(dtype=float)
    prev = prev.rename(columns={f: PREVIOUS + f for f in fields}).astype({"user_id": str})
    prev_schema = ", ".join(["user_id string", *[f"{PREVIOUS}{f} double" for f in fields]])
    joined = snaps.join(F.broadcast(spark.createDataFrame(prev, prev_schema)) if len(prev) < 1_000_000
                        else spark.createDataFrame(prev, prev_schema), "user_id", "left")

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            batch = batch.assign(event_timestamp=pd.to_datetime(batch["event_timestamp"], utc=True))
            before = batch.loc[:, ["user_id", *[PREVIOUS + f for f in fields]]]
            before = before.rename(columns={PREVIOUS + f: f for f in fields}).dropna(subset=fields, how="all")
            out = score_personas(settings, models, batch.drop(columns=[PREVIOUS + f for f in fields]), before, now)
            yield out.assign(feature_timestamp=out["feature_timestamp"].dt.tz_localize(None) if
                             out["feature_timestamp"].dt.tz is not None else out["feature_timestamp"],
                             scored_at=now.tz_convert("UTC").tz_localize(None))

    return joined.mapInPandas(score, persona_schema(models))


def newest_snapshots_spark(spark: "SparkSession", settings: Settings) -> "DataFrame":
    """Every user's newest snapshot row (sparse: from any partition), stamped with the newest snapshot
    time, as :func:`scoring.batch.newest_snapshots` gives them, read by Spark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from features.spark_store import bind_sources, table_name
    from features.store import BEHAVIOUR_VIEW, load_definitions

    repo = load_definitions(settings.feature_repo)
    bind_sources(spark, settings, pd.Timestamp.max.tz_localize("UTC").floor("D"), repo)
    from feast import FeatureView

    source = next(fv.batch_source.name for fv in repo.named(FeatureView) if fv.name == BEHAVIOUR_VIEW)
    table = spark.table(table_name(source))
    newest = Window.partitionBy("user_id").orderBy(F.col("event_timestamp").desc())
    latest = table.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1).drop("_n")
    return latest.withColumn("event_timestamp", F.lit(table.agg(F.max("event_timestamp")).collect()[0][0]))


def rescore_all_spark(settings: Settings, models: dict[str, "LoadedModel"]) -> ScoringResult:
    """:func:`scoring.batch.rescore_all` on Spark: score every user, append the changed personas."""
    from features.spark_session import spark_session

    spark = spark_session(settings.spark)
    previous = latest_personas(settings)
    frame = score_spark(spark, settings, models, newest_snapshots_spark(spark, settings), previous).toPandas()
    frame = frame.assign(feature_timestamp=pd.to_datetime(frame["feature_timestamp"]).dt.tz_localize("UTC"),
                         scored_at=pd.to_datetime(frame["scored_at"]).dt.tz_localize("UTC"))
    before = previous.set_index("user_id")["segment"].reindex(frame["user_id"]) if not previous.empty else \
        pd.Series(index=frame["user_id"], dtype=object)
    moved = int((before.notna().to_numpy() & (before.to_numpy() != frame["segment"].to_numpy())).sum())
    appended = append_history(settings, frame, "batch")
    when = pd.Timestamp(frame["feature_timestamp"].max()) if len(frame) else None
    return ScoringResult(users=len(frame), changed=appended, feature_timestamp=when,
                         versions={t.key: models[t.key].ref.version for t in TARGETS if t.segment_input},
                         segment_changes=moved)
