"""The daily snapshot build as Spark SQL window aggregations over the Parquet event store.

Cell for cell the same table as :func:`features.compute.iter_snapshots` (tests/spark): events are
resolved through the identity graph and summed per user and day; rows are laid only on the days of a
user that have an event or a change point (the snapshots where an event enters a window or leaves one,
``features.compute.CHANGE_OFFSETS``), so the work follows the events, not users x days. Each window
feature is a difference of running sums (``cs(s) - cs(s - w)``, the same additions in the same order as
the NumPy builder), and only the change points are written, as microsecond timestamps under
``date=YYYY-MM-DD/`` folders, the layout the Feast sources and the pandas readers use. An incremental
build reads only the event partitions its windows reach back to and carries the older history from each
user's newest stored row, as the default builder does (``features.incremental.carry_history``).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from base.config import FeatureConfig, Settings
from base.paths import DataPaths
from features.compute import _CATEGORY_EVENTS, _COUNTED, CHANGE_OFFSETS, COUNT_FEATURES, MOBILE_DEVICES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

DAY_SECONDS = 86400
SOCIAL = ("like", "share", "comment")
WINDOWS: tuple[tuple[str, int], ...] = (
    ("purchases", 7), ("purchases", 30), ("purchases", 90), ("spend", 7), ("spend", 30), ("spend", 90),
    ("refunds", 90), ("refund_amount", 90), ("events", 7), ("events", 30), ("sessions", 30),
    ("session_minutes", 30), ("page_views", 30), ("product_views", 30), ("searches", 30), ("add_to_cart", 30),
    ("active", 30), ("mobile", 30), ("social", 30), ("tickets", 90), ("app", 30), ("web", 30), ("cat_total", 90),
)
"""(daily metric, days) of every window feature besides the category ones (``cat_<name>``, 90 days)."""


@dataclass(frozen=True)
class SparkBuild:
    """One Spark snapshot build (``events_from``: the first event day it read, None for all of them)."""

    rows: int
    users: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    events_from: pd.Timestamp | None = None


def data_url(settings: Settings, path: Path) -> str:
    """Where Spark finds ``path`` (a path under the data directory): below ``spark.data_url`` when set
    (object storage or HDFS on a cluster), else the local path."""
    if not settings.spark.data_url:
        return str(path)
    return settings.spark.data_url.rstrip("/") + "/" + path.relative_to(settings.data_dir).as_posix()


def date_partitions(spark: "SparkSession", root: str) -> list[str]:
    """The ``date=YYYY-MM-DD`` folder names under ``root``, sorted (any Hadoop file system: local, HDFS,
    object storage; none when ``root`` does not exist)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    return sorted(n for n in (s.getPath().getName() for s in fs.listStatus(path) if s.isDirectory())
                  if n.startswith("date="))


def read_events(spark: "SparkSession", settings: Settings, since: pd.Timestamp | None = None) -> "DataFrame":
    """The clean event store (only the ``date=`` folders at or after ``since``'s day when given: they are
    listed and read by name, so no older file is listed or read) with each event's user resolved through
    the newest identity graph (as ``ingestion.event_store.load_events`` does); only the columns the
    features read."""
    from pyspark.sql import functions as F

    paths = DataPaths(settings.data_dir)
    if not any(paths.events.glob("date=*/*.parquet")) and not settings.spark.data_url:
        raise RuntimeError(f"no clean events in {paths.events}: run `persona ingest` first")
    cols = ["user_id", "anonymous_id", "device_id", "event_type", "channel", "timestamp", "amount",
            "category", "device", "session_id"]
    root = data_url(settings, paths.events)
    if since is None:
        events = spark.read.parquet(root)
    else:  # the folders themselves, not a filter: the plan lists and reads no older file (object storage too)
        first = f"date={since:%Y-%m-%d}"
        folders = [f"{root.rstrip('/')}/{n}" for n in date_partitions(spark, root) if n >= first]
        if not folders:
            raise RuntimeError(f"no clean events in {root} since {since:%Y-%m-%d}")
        events = spark.read.option("basePath", root).parquet(*folders)
    events = events.select(*cols)
    pointer = F.col("user_id").startswith("anon:") | F.col("user_id").startswith("device:")
    events = events.withColumn("user_id", F.when(pointer, F.lit(None)).otherwise(F.col("user_id")))
    return resolve_users(spark, events, settings)


def resolve_users(spark: "SparkSession", events: "DataFrame", settings: Settings) -> "DataFrame":
    """Fill ``user_id`` from the identity graph: own id, else the anonymous id's or the device's link,
    following device bridges up to three times (``ingestion.identity.resolve_users``)."""
    from pyspark.sql import functions as F

    from ingestion.identity import load_graph

    graph = load_graph(DataPaths(settings.data_dir).identity_graph)
    links = graph.loc[:, ["kind", "alias", "user_id"]].astype(str) if not graph.empty else \
        pd.DataFrame({"kind": pd.Series(dtype=str), "alias": pd.Series(dtype=str), "user_id": pd.Series(dtype=str)})
    table = spark.createDataFrame(links, "kind string, alias string, user_id string")

    def lookup(kind: str, name: str) -> "DataFrame":
        return F.broadcast(table.where(F.col("kind") == kind).select(F.col("alias").alias(f"_{name}_key"),
                                                                      F.col("user_id").alias(f"_{name}")))

    out = events.join(lookup("anonymous", "anon"), F.col("anonymous_id") == F.col("_anon_key"), "left") \
        .join(lookup("device", "dev"), F.col("device_id") == F.col("_dev_key"), "left") \
        .withColumn("user_id", F.coalesce("user_id", "_anon", "_dev")) \
        .drop("_anon_key", "_anon", "_dev_key", "_dev")
    for i in range(3):  # follow bridges: visitor → device → user
        hop = lookup("device", f"hop{i}")
        out = out.join(hop, F.when(F.col("user_id").startswith("device:"), F.substring("user_id", 8, 1 << 20))
                       == F.col(f"_hop{i}_key"), "left") \
            .withColumn("user_id", F.coalesce(f"_hop{i}", "user_id")).drop(f"_hop{i}_key", f"_hop{i}")
    return out


def known_events(events: "DataFrame") -> "DataFrame":
    """Events of stitched customers (not ``anon:``/``device:`` visitors, not unresolved)."""
    from pyspark.sql import functions as F

    uid = F.col("user_id")
    return events.where(uid.isNotNull() & ~uid.startswith("anon:") & ~uid.startswith("device:"))


def _daily(events: "DataFrame", categories: list[str]) -> "DataFrame":
    """Per (user, day): the summed metrics of ``features.compute._metrics`` and the day's last times."""
    from pyspark.sql import functions as F

    et = F.col("event_type")
    counted = et.isin(*_COUNTED)
    purchase = et == "purchase"
    amount = F.coalesce(F.col("amount").cast("double"), F.lit(0.0))
    secs = F.unix_micros("timestamp") / 1e6
    flag = lambda cond: F.sum(F.when(cond, 1.0).otherwise(0.0))
    cat_event = et.isin(*_CATEGORY_EVENTS)
    aggs = [
        flag(counted).alias("events"), flag(purchase).alias("purchases"),
        F.sum(F.when(purchase, amount).otherwise(0.0)).alias("spend"),
        flag(et == "refund").alias("refunds"),
        F.sum(F.when(et == "refund", amount).otherwise(0.0)).alias("refund_amount"),
        flag(et == "page_view").alias("page_views"), flag(et == "product_view").alias("product_views"),
        flag(et == "search").alias("searches"), flag(et == "add_to_cart").alias("add_to_cart"),
        flag(et.isin(*SOCIAL)).alias("social"), flag(et == "support_ticket").alias("tickets"),
        flag(counted & (F.col("channel") == "app")).alias("app"),
        flag(counted & (F.col("channel") == "web")).alias("web"),
        flag(counted & F.col("device").isin(*MOBILE_DEVICES)).alias("mobile"),
        *[flag(cat_event & (F.col("category") == c)).alias(f"cat_{c}") for c in categories],
        F.max(F.when(counted, secs)).alias("day_last_event_ts"),
        F.max(F.when(purchase, secs)).alias("day_last_purchase_ts"),
        F.min(F.when(purchase, secs)).alias("day_first_purchase_ts"),
    ]
    daily = events.groupBy("user_id", "day").agg(*aggs)
    total = F.lit(0.0)
    for c in categories:  # summed per event in the NumPy builder: the same integers
        total = total + F.col(f"cat_{c}")
    return daily.withColumn("cat_total", total)


def _sessions(events: "DataFrame") -> "DataFrame":
    """Per (user, day): sessions started that day and their summed length in minutes."""
    from pyspark.sql import functions as F

    per = events.where(F.col("session_id").isNotNull()).groupBy("user_id", "session_id").agg(
        F.min("timestamp").alias("start"), F.max("timestamp").alias("stop"), F.min("day").alias("day"))
    minutes = (F.unix_micros("stop") - F.unix_micros("start")) / 1e6 / 60.0
    return per.groupBy("user_id", "day").agg(F.count(F.lit(1)).cast("double").alias("sessions"),
                                             F.sum(minutes).alias("session_minutes"))


def _ratio(num: "Column", den: "Column") -> "Column":
    """``num / den`` where ``den > 0``, else null (``features.compute._ratio``)."""
    from pyspark.sql import functions as F

    return F.when(den > 0, num / den)


def _round(x: "Column", digits: int = 2) -> "Column":
    """NumPy's ``round``: scale, round half to even on the binary value, scale back."""
    from pyspark.sql import functions as F

    scale = float(10 ** digits)
    return F.rint(x * scale) / scale


def snapshot_frame(events: "DataFrame", cfg: FeatureConfig, day0: pd.Timestamp, n_days: int,
                   min_day: int = 0) -> "DataFrame":
    """Snapshots of known users' ``events`` (already ``timestamp < day0 + n_days``) for snapshot days
    at or after ``min_day``; column for column the frame ``iter_snapshots`` yields."""
    day0_epoch = int(day0.timestamp() // DAY_SECONDS)
    return _features(running_rows(events, cfg, day0_epoch, n_days, min_day), cfg, day0_epoch)


def running_rows(events: "DataFrame", cfg: FeatureConfig, day0_epoch: int, n_days: int,
                 min_day: int = 0) -> "DataFrame":
    """The sparse rows (change points at or after ``min_day``) with their running sums (``cs_*``), each
    window's sum as of ``w`` days before (``lag<w>_*``) and the running times, from rows laid only on
    days with an event or a change point: the cost follows the events, not users x days.

    A running sum over these rows adds the same day totals in the same order as the NumPy builder's
    dense ``cumsum`` (the days between add 0.0), and the sum ``w`` days before is the running sum of the
    newest row at or before ``day - w`` (every event day has a row), 0 when there is none."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    events = events.withColumn("day", (F.unix_date(F.to_date("timestamp")) - day0_epoch).cast("int"))
    daily = _daily(events, cfg.categories).join(_sessions(events), ["user_id", "day"], "full")
    firsts = events.groupBy("user_id").agg((F.min(F.unix_micros("timestamp")) / 1e6).alias("first_event_ts"))
    times = ("day_last_event_ts", "day_last_purchase_ts", "day_first_purchase_ts")
    metrics = [c for c in daily.columns if c not in ("user_id", "day", *times)]
    changes = _change_points(events, day0_epoch, cfg.snapshot_every_days, n_days, min_day) \
        .withColumn("_out", F.lit(True))
    rows = daily.join(changes, ["user_id", "day"], "full").fillna(0.0, subset=metrics) \
        .join(firsts, "user_id")
    rows = rows.withColumn("active", F.when(F.col("events") > 0, 1.0).otherwise(0.0))
    by_day = Window.partitionBy("user_id").orderBy("day")
    running = by_day.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    sums = [F.sum(m).over(running).alias(f"cs_{m}") for m in [*metrics, "active"]]
    rows = rows.select(
        "user_id", "day", "_out", "first_event_ts", *sums,
        F.max("day_last_event_ts").over(running).alias("last_event_ts"),
        F.max("day_last_purchase_ts").over(running).alias("last_purchase_ts"),
        # lifetime (features/lifetime.lifetime_columns): purchase days so far, the first purchase day's
        # first time (times only grow with the day) and its spend
        F.sum(F.when(F.col("purchases") > 0, 1.0).otherwise(0.0)).over(running).alias("cs_purchase_days"),
        F.min("day_first_purchase_ts").over(running).alias("first_purchase_ts"),
        F.first(F.when(F.col("purchases") > 0, F.col("spend")), ignorenulls=True).over(running)
        .alias("first_purchase_day_spend"),
    )
    windows = [*WINDOWS, *((f"cat_{c}", 90) for c in cfg.categories)]
    before = {w: by_day.rangeBetween(Window.unboundedPreceding, -w) for w in sorted({w for _, w in windows})}
    lagged = [F.coalesce(F.last(f"cs_{m}").over(before[w]), F.lit(0.0)).alias(f"lag{w}_{m}") for m, w in windows]
    lifetime = [F.col("cs_purchases").alias("lt_purchases"), F.col("cs_spend").alias("lt_spend"),
                F.col("cs_purchase_days").alias("lt_purchase_days")]
    return rows.select("*", *lagged, *lifetime).where(F.col("_out")).drop("_out")


def _change_points(events: "DataFrame", day0_epoch: int, every: int, n_days: int, min_day: int) -> "DataFrame":
    """(user, snapshot day) of the sparse rows (``features.compute.change_points``): each day with an
    event plus each of ``CHANGE_OFFSETS``, moved to the next snapshot of the epoch-anchored grid."""
    from pyspark.sql import functions as F

    offsets = F.array(*[F.lit(o) for o in CHANGE_OFFSETS])
    c = events.select("user_id", "day").distinct().select("user_id", "day", F.explode(offsets).alias("o")) \
        .select("user_id", (F.col("day") + F.col("o")).alias("c"))
    midnight = F.lit(day0_epoch) + F.col("c") + 1
    g = (F.ceil(midnight / F.lit(float(every))) * every - day0_epoch - 1).cast("int")
    return c.select("user_id", g.alias("day")).where((F.col("day") < n_days) & (F.col("day") >= min_day)).distinct()


def _features(rows: "DataFrame", cfg: FeatureConfig, day0_epoch: int) -> "DataFrame":
    """The feature columns of ``features.compute._snapshot_frame``, in its order and types."""
    from pyspark.sql import functions as F

    def w(name: str, days: int) -> "Column":
        return F.col(f"cs_{name}") - F.col(f"lag{days}_{name}")

    s = F.col("day")
    f: dict[str, Column] = {}
    for days in (7, 30, 90):
        f[f"purchases_{days}d"] = w("purchases", days)
        f[f"spend_{days}d"] = w("spend", days)
    f["aov_90d"] = _ratio(f["spend_90d"], f["purchases_90d"])
    f["refunds_90d"] = w("refunds", 90)
    f["refund_amount_90d"] = w("refund_amount", 90)
    f["events_7d"] = w("events", 7)
    f["events_30d"] = w("events", 30)
    f["sessions_30d"] = w("sessions", 30)
    for name in ("page_views", "product_views", "searches", "add_to_cart"):
        f[f"{name}_30d"] = w(name, 30)
    f["cart_conversion_30d"] = _ratio(f["purchases_30d"], f["add_to_cart_30d"])
    f["active_days_30d"] = w("active", 30)
    f["avg_session_minutes_30d"] = _round(_ratio(w("session_minutes", 30), f["sessions_30d"]))
    f["share_mobile_30d"] = F.coalesce(_ratio(w("mobile", 30), f["events_30d"]), F.lit(0.0))
    f["social_30d"] = w("social", 30)
    f["support_tickets_90d"] = w("tickets", 90)
    f["share_app_30d"] = F.coalesce(_ratio(w("app", 30), f["events_30d"]), F.lit(0.0))
    f["share_web_30d"] = F.coalesce(_ratio(w("web", 30), f["events_30d"]), F.lit(0.0))
    f["spend_trend"] = _ratio(f["spend_30d"], f["spend_90d"] / 3.0)
    f["events_trend"] = _ratio(f["events_7d"], f["events_30d"] / (30 / 7))
    total = w("cat_total", 90)
    for cat in cfg.categories:
        f[f"affinity_{cat}"] = F.coalesce(_ratio(w(f"cat_{cat}", 90), total), F.lit(0.0))
    money = [c for c in f if c.startswith(("spend_", "refund_amount", "aov_")) and c != "spend_trend"]
    typed = []
    for name, col in f.items():
        if name in COUNT_FEATURES:
            col = F.rint(col).cast("long")
        elif name in money:
            col = _round(col)
        typed.append(col.cast("long" if name in COUNT_FEATURES else "double").alias(name))
    when = F.timestamp_seconds((F.lit(day0_epoch) + s + 1).cast("long") * DAY_SECONDS)
    return rows.select(
        "user_id", when.alias("event_timestamp"), when.alias("created"), *typed,
        F.col("last_event_ts").cast("double").alias("last_event_ts"),
        F.col("last_purchase_ts").cast("double").alias("last_purchase_ts"),
        F.col("first_event_ts").cast("double").alias("first_event_ts"),
        *_lifetime(),
    )


def _lifetime() -> list["Column"]:
    """The columns of ``features.lifetime.lifetime_columns`` (stored, then ``derive``'s, then ``finish``'s
    integer types), the same IEEE operations in Spark SQL: nulls where ``derive`` leaves NaN."""
    from pyspark.sql import functions as F

    from features.lifetime import COLUMNS, DAY_S, INTEGER_COLUMNS

    n, spend, days = F.col("lt_purchases"), F.col("lt_spend"), F.col("lt_purchase_days")
    first = F.col("first_purchase_ts")
    first_day = F.floor(first / DAY_S).cast("double")
    last_day = F.floor(F.col("last_purchase_ts") / DAY_S).cast("double")
    bought = days > 0
    x = F.when(bought, days - 1.0).otherwise(0.0)
    repeat = spend - F.coalesce(F.col("first_purchase_day_spend"), F.lit(0.0))
    c = {
        "lifetime_purchases": n, "lifetime_spend": spend, "lifetime_purchase_days": days,
        "first_purchase_ts": F.when(bought, first), "first_purchase_day_spend":
            F.when(bought, F.col("first_purchase_day_spend")),
        "btyd_frequency": x, "btyd_recency_days": F.when(bought, last_day - first_day),
        "avg_order_value": F.when(n > 0, spend / n),
        "btyd_monetary": F.when(x > 0, repeat / x).otherwise(0.0),
    }
    return [(F.rint(c[k]).cast("long") if k in INTEGER_COLUMNS else c[k].cast("double")).alias(k) for k in COLUMNS]


def history_bounds(events: "DataFrame", end: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(day0, end): the first day of the known users' history and its exclusive end (default: midnight
    after the last event), as ``iter_snapshots`` takes them."""
    from pyspark.sql import functions as F

    row = events.agg(F.min(F.unix_micros("timestamp")).alias("lo"), F.max(F.unix_micros("timestamp")).alias("hi")) \
        .collect()[0]
    if row["lo"] is None:
        raise RuntimeError("no events of known users: nothing to snapshot")
    lo, hi = _utc(row["lo"]), _utc(row["hi"])
    return lo.floor("D"), end if end is not None else hi.floor("D") + pd.Timedelta(days=1)


def _utc(micros: int | None) -> pd.Timestamp | None:
    """A UTC timestamp from microseconds since the epoch (Spark hands back zone-less datetimes)."""
    return pd.Timestamp(micros, unit="us", tz="UTC") if micros is not None else None


def compute_snapshots_spark(events: "DataFrame", cfg: FeatureConfig, *, end: pd.Timestamp | None = None,
                            first_snapshot: pd.Timestamp | None = None) -> "DataFrame":
    """Snapshots (a Spark DataFrame) of resolved ``events``, with ``compute_snapshots``'s arguments."""
    from pyspark.sql import functions as F

    events = known_events(events)
    day0, end = history_bounds(events, end)
    n_days = int((end - day0) / pd.Timedelta(days=1))
    events = events.where(F.col("timestamp") < F.lit(end.to_pydatetime()))
    min_day = 0
    if first_snapshot is not None:
        min_day = max(0, math.ceil((first_snapshot - day0) / pd.Timedelta(days=1)) - 1)
    return snapshot_frame(events, cfg, day0, n_days, min_day)


def write_snapshots_spark(snaps: "DataFrame", target: str, replace_from: pd.Timestamp | None = None) -> None:
    """Write snapshots under ``target/date=YYYY-MM-DD/`` (the day of ``event_timestamp``): every date
    is replaced when ``replace_from`` is None, else only the dates written (all at or after it)."""
    from pyspark.sql import functions as F

    out = snaps.withColumn("date", F.date_format("event_timestamp", "yyyy-MM-dd"))
    mode = "static" if replace_from is None else "dynamic"
    out.write.mode("overwrite").option("partitionOverwriteMode", mode).partitionBy("date").parquet(target)


def build_snapshots(spark: "SparkSession", settings: Settings,
                    first_snapshot: pd.Timestamp | None = None) -> SparkBuild:
    """Build (from ``first_snapshot``, else all) snapshots from the event store into the offline store.

    From a snapshot time with stored snapshots before it (and daily snapshots), only the event
    partitions the windows reach back to are read (``features.incremental.WINDOW_DAYS`` + 1 days);
    the older history comes from each user's newest stored row (:func:`carried_snapshots`)."""
    from pyspark.sql import functions as F

    from features.incremental import WINDOW_DAYS

    paths = DataPaths(settings.data_dir)
    target = data_url(settings, paths.behaviour_snapshots)
    since = None
    if first_snapshot is not None and settings.features.snapshot_every_days == 1 and \
            any(n < f"date={first_snapshot:%Y-%m-%d}" for n in date_partitions(spark, target)):
        since = first_snapshot - pd.Timedelta(days=WINDOW_DAYS + 1)
    events = known_events(read_events(spark, settings, since))
    day0, end = history_bounds(events, None)
    if since is not None:
        snaps = carried_snapshots(spark, settings, events, first_snapshot, day0, end)
    else:
        snaps = compute_snapshots_spark(events, settings.features, end=end, first_snapshot=first_snapshot)
    if first_snapshot is None and not settings.spark.data_url:
        shutil.rmtree(paths.behaviour_snapshots, ignore_errors=True)  # a full build leaves no stale dates
    write_snapshots_spark(snaps, target, first_snapshot)
    written = spark.read.parquet(target)
    if first_snapshot is not None:
        written = written.where(F.col("date") >= F.lit(first_snapshot.date()))
    written = written.where(F.col("event_timestamp") >= F.lit((first_snapshot or day0).to_pydatetime()))
    micros = F.unix_micros("event_timestamp")
    stats = written.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users"),
                        F.min(micros).alias("lo"), F.max(micros).alias("hi")).collect()[0]
    return SparkBuild(rows=int(stats["rows"]), users=int(stats["users"]), first=_utc(stats["lo"]),
                      last=_utc(stats["hi"]), events_from=since.floor("D") if since is not None else None)


def previous_rows(spark: "SparkSession", settings: Settings, before: pd.Timestamp) -> "DataFrame":
    """Each user's newest stored snapshot row before ``before``: the columns that carry history older
    than the windows (``features.incremental.HISTORY_COLUMNS``), prefixed ``p_``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from features.incremental import HISTORY_COLUMNS

    root = data_url(settings, DataPaths(settings.data_dir).behaviour_snapshots)
    stored = spark.read.parquet(root).where(F.col("date") < F.lit(before.date())) \
        .where(F.col("event_timestamp") < F.lit(before.to_pydatetime()))
    newest = Window.partitionBy("user_id").orderBy(F.col("event_timestamp").desc())
    return stored.select("user_id", "event_timestamp", *HISTORY_COLUMNS) \
        .withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1) \
        .select("user_id", *[F.col(c).cast("double").alias(f"p_{c}") for c in HISTORY_COLUMNS])


def carried_snapshots(spark: "SparkSession", settings: Settings, events: "DataFrame", start: pd.Timestamp,
                      day0: pd.Timestamp, end: pd.Timestamp) -> "DataFrame":
    """Snapshots at or after ``start`` from ``events`` of the windows' reach only (known users,
    ``day0 <= timestamp < end``), completed like the default builder's incremental build: event times are the
    newer (first event: the older) of the computed and the previous row's, lifetime sums the previous
    row's plus what the events added since it (``features.lifetime.carry_lifetime``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n_days = int((end - day0) / pd.Timedelta(days=1))
    day0_epoch = int(day0.timestamp() // DAY_SECONDS)
    min_day = max(0, math.ceil((start - day0) / pd.Timedelta(days=1)) - 1)
    rows = running_rows(events.where(F.col("timestamp") < F.lit(end.to_pydatetime())), settings.features,
                        day0_epoch, n_days)
    newest = Window.partitionBy("user_id").orderBy(F.col("day").desc())
    base = rows.where(F.col("day") < min_day).withColumn("_n", F.row_number().over(newest)) \
        .where(F.col("_n") == 1).select("user_id", F.col("cs_purchases").alias("b_n"),
                                        F.col("cs_spend").alias("b_spend"), F.col("cs_purchase_days").alias("b_days"))
    out = rows.where(F.col("day") >= min_day).join(base, "user_id", "left") \
        .join(previous_rows(spark, settings, start), "user_id", "left")
    zero = F.lit(0.0)
    had = F.col("p_first_purchase_ts").isNotNull()
    out = out.withColumns({
        "last_event_ts": F.greatest("last_event_ts", "p_last_event_ts"),
        "last_purchase_ts": F.greatest("last_purchase_ts", "p_last_purchase_ts"),
        "first_event_ts": F.least("first_event_ts", "p_first_event_ts"),
        "lt_purchases": F.coalesce("p_lifetime_purchases", zero) + (F.col("cs_purchases") - F.coalesce("b_n", zero)),
        "lt_spend": F.coalesce("p_lifetime_spend", zero) + (F.col("cs_spend") - F.coalesce("b_spend", zero)),
        "lt_purchase_days": F.coalesce("p_lifetime_purchase_days", zero)
        + (F.col("cs_purchase_days") - F.coalesce("b_days", zero)),
        "first_purchase_ts": F.when(had, F.col("p_first_purchase_ts")).otherwise(F.col("first_purchase_ts")),
        "first_purchase_day_spend": F.when(had, F.col("p_first_purchase_day_spend"))
        .otherwise(F.col("first_purchase_day_spend")),
    })
    return _features(out, settings.features, day0_epoch)


def build_features_spark(settings: Settings, incremental: bool = True) -> tuple[SparkBuild, pd.Timestamp | None]:
    """The pipeline's feature stage on Spark: plan like the default builder (features/incremental.py),
    then rebuild every snapshot day from the first changed one (all days on a first build, a feature
    configuration change or a new identity link); returns the build and the first rebuilt snapshot time."""
    from features.incremental import (
        event_partitions,
        linked_aliases,
        load_state,
        plan_rebuild,
        save_state,
    )
    from features.spark_session import spark_session
    from ingestion.identity import load_graph

    paths = DataPaths(settings.data_dir)
    partitions = event_partitions(paths.events)
    if not partitions:
        raise RuntimeError(f"no clean events in {paths.events}: run `persona ingest` first")
    state = load_state(paths.feature_state) if incremental else None
    aliases = linked_aliases(load_graph(paths.identity_graph))
    relinked = bool(set(aliases) - set((state or {}).get("aliases", [])))
    mode, start = plan_rebuild(None if relinked else state, partitions, settings.features)
    if mode == "none":
        return SparkBuild(0, 0, None, None), None
    build = build_snapshots(spark_session(settings.spark), settings, start if mode == "from" else None)
    save_state(paths.feature_state, partitions, settings.features, aliases)
    return build, start if mode == "from" else None
