"""The pipeline as plain functions that pass data forward; each stage also runs alone from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from base.progress import step

if TYPE_CHECKING:
    from feast import FeatureStore

    from ingestion.ingest import IngestSummary
    from training.labels import KnownEvents
    from training.train import TrainSummary


BUILD_CHUNK_USERS = 20_000
"""Users per chunk of a full snapshot build (their users x days sums in memory at once, ~0.5 GB)."""


@dataclass(frozen=True)
class FeatureSummary:
    """Offline feature snapshots written by one build."""

    rows: int
    users: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    incremental: bool = False
    recomputed_from: pd.Timestamp | None = None
    relinked_users: int = 0
    """Users whose older snapshots were recomputed because a visitor id was newly linked to them."""


@dataclass
class RunSummary:
    """Everything one pipeline run did."""

    sample_events: int | None = None
    ingest: "IngestSummary | None" = None
    features: FeatureSummary | None = None
    materialized_users: int = 0
    training_rows: int = 0
    train: "TrainSummary | None" = None
    timings: dict[str, float] = field(default_factory=dict)


def ensure_sample(settings: Settings, progress: Any | None = None, force: bool = False) -> int | None:
    """Generate the sample history when the configuration asks for it (``sample.generate``) and the inbox
    is empty, or when forced; returns its event count. A configuration of real channels never gets
    synthetic users mixed in."""
    from persona.sample_data import generate_sample_data, has_sample_data

    if not force and (not settings.sample.generate or has_sample_data(settings)):
        return None
    with step(progress, "generate sample data", total=1) as advance:
        summary = generate_sample_data(settings)
        advance(1)
    return summary.events


def ingest_inbox(settings: Settings, progress: Any | None = None) -> "IngestSummary":
    """Ingest new channel files into the clean event store (files already done are skipped)."""
    from ingestion.ingest import ingest

    return ingest(settings, progress)


def load_clean_events(settings: Settings, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Clean events (of days at or after ``since``) with identities resolved through the newest graph."""
    from ingestion.event_store import load_events

    paths = DataPaths(settings.data_dir)
    return load_events(paths.events, paths.identity_graph, since=since)


def build_features(settings: Settings, progress: Any | None = None, incremental: bool = True) -> FeatureSummary:
    """Compute daily user snapshots into the offline store (the Feast file source).

    Incremental by default: only snapshot days at or after the earliest day whose clean events
    changed since the last build are recomputed and rewritten; a first build, or a change in the
    feature configuration, recomputes everything.
    """
    if settings.engine == "spark":  # Spark SQL over the event store (features/spark_snapshots.py)
        from features.spark_snapshots import build_features_spark

        built, start = build_features_spark(settings, incremental)
        return FeatureSummary(built.rows, built.users, built.first, built.last, start is not None, start)
    from features.compute import (
        SNAPSHOT_INPUTS,
        EventArrays,
        compute_snapshots,
        iter_snapshots,
        newest_rows,
        write_snapshots,
    )
    from features.lifetime import carry_lifetime
    from features.incremental import (
        HISTORY_COLUMNS,
        WINDOW_DAYS,
        carry_history,
        event_partitions,
        first_day_of_aliases,
        linked_aliases,
        load_state,
        plan_rebuild,
        save_state,
    )
    from ingestion.event_store import iter_resolved, read_events
    from ingestion.identity import load_graph

    paths = DataPaths(settings.data_dir)
    with step(progress, "compute features", total=2) as advance:
        partitions = event_partitions(paths.events)
        if not partitions:
            from ingestion.clean_state import NoCleanEvents, no_clean_events

            raise NoCleanEvents(no_clean_events(paths))
        state = load_state(paths.feature_state) if incremental else None
        aliases = linked_aliases(load_graph(paths.identity_graph))
        new_aliases = set(aliases) - set((state or {}).get("aliases", []))
        new_alias_day = None
        if state is not None and new_aliases:
            raw = read_events(paths.events, columns=["anonymous_id", "device_id", "timestamp"])
            new_alias_day = first_day_of_aliases(raw, new_aliases)
        mode, start = plan_rebuild(state, partitions, settings.features)
        relinked_rows, relinked_users, alias_start = 0, 0, None
        if new_alias_day is not None and settings.features.snapshot_every_days == 1 and mode != "full":
            # newly linked visitors: only their users' older snapshots change, not everyone's
            alias_start = new_alias_day + pd.Timedelta(days=1)
            if start is None or alias_start < start:
                end = pd.Timestamp(max(partitions), tz="UTC") + pd.Timedelta(days=1)
                relinked_rows, relinked_users = _rebuild_linked_users(settings, new_aliases, alias_start, start, end)
            else:
                alias_start = None
        elif new_alias_day is not None:
            mode, start = plan_rebuild(state, partitions, settings.features, new_alias_day)
        if mode == "none":
            save_state(paths.feature_state, partitions, settings.features, aliases)
            advance(2)
            return FeatureSummary(relinked_rows, relinked_users, None, None, incremental=True,
                                  recomputed_from=alias_start, relinked_users=relinked_users)
        root = paths.behaviour_snapshots
        history = start is not None and any(p.name < f"date={start:%Y-%m-%d}" for p in root.glob("date=*"))
        if history and settings.features.snapshot_every_days == 1:
            # only the last window of events is read; older history comes from each user's newest row before it
            events = load_clean_events(settings, since=start - pd.Timedelta(days=WINDOW_DAYS + 1))
            advance(1)
            computed = compute_snapshots(events, settings.features)
            before = computed["event_timestamp"] < start
            # the window's own sums as of the rebuild start: each user's newest window row before it
            base = computed.loc[before].drop_duplicates("user_id", keep="last")
            computed = computed.loc[~before].reset_index(drop=True)
            prev = newest_rows(root, before=start, users=set(computed["user_id"].astype(str)),
                               columns=["user_id", "event_timestamp", *HISTORY_COLUMNS])
            prev = prev if len(prev) else pd.DataFrame(columns=["user_id", *HISTORY_COLUMNS])
            chunks = iter([carry_lifetime(carry_history(computed, prev), prev, base)])
        else:
            start = None if mode == "full" else start
            # the event store read part by part as Arrow, kept as integer codes (no whole-store frame)
            events = EventArrays.of_tables(iter_resolved(paths.events, paths.identity_graph, list(SNAPSHOT_INPUTS)),
                                           settings.features)
            advance(1)
            chunks = iter_snapshots(events, settings.features, first_snapshot=start, chunk_users=BUILD_CHUNK_USERS)
        users, first, last = 0, None, None

        def tracked():  # noqa: ANN202
            nonlocal users, first, last
            for frame in chunks:
                users += frame["user_id"].nunique()
                lo, hi = frame["event_timestamp"].min(), frame["event_timestamp"].max()
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
                yield frame

        rows = write_snapshots(tracked(), paths.behaviour_snapshots, replace_from=start)
        save_state(paths.feature_state, partitions, settings.features, aliases)
        advance(1)
    earliest = min(t for t in (start, alias_start) if t is not None) if (start or alias_start) else None
    return FeatureSummary(rows=rows + relinked_rows, users=users, first=first, last=last,
                          incremental=start is not None, recomputed_from=earliest, relinked_users=relinked_users)


def _rebuild_linked_users(settings: Settings, aliases: set[str], start: pd.Timestamp,
                          stop: pd.Timestamp | None, end: pd.Timestamp) -> tuple[int, int]:
    """Recompute, from ``start`` up to ``stop`` (or the newest snapshot), the snapshots of the users
    that ``aliases`` were just linked to (their visitor history is now theirs); ``end`` is the end of
    the event history; returns (rows, users)."""
    from features.compute import compute_snapshots
    from features.incremental import rewrite_users, users_of_aliases

    paths = DataPaths(settings.data_dir)
    events = load_clean_events(settings)
    users = users_of_aliases(events, aliases)
    if not users:
        return 0, 0
    mine = events.loc[events["user_id"].isin(users)]
    computed = compute_snapshots(mine, settings.features, end=end, first_snapshot=start)
    return rewrite_users(paths.behaviour_snapshots, computed, users, start, stop), len(users)


def register_features(settings: Settings, store: "FeatureStore | None" = None) -> list[str]:
    """``feast apply`` the definitions in ``feature_repo/``."""
    from features.store import apply_definitions

    if settings.engine == "spark":  # the snapshot views read Spark tables
        from features.spark_store import apply_spark_definitions, engine_store

        return apply_spark_definitions(settings, engine_store(settings, store))

    return apply_definitions(settings, store)


def _newest_partition(settings: Settings) -> Path:
    """The newest day partition of the snapshots (its name is the newest snapshot time)."""
    partitions = sorted(DataPaths(settings.data_dir).behaviour_snapshots.glob("date=*"))
    if not partitions:
        raise RuntimeError("no feature snapshots: run `persona build-features` first")
    return partitions[-1]


def materialize(settings: Settings, store: "FeatureStore | None" = None, progress: Any | None = None,
                views: list[str] | None = None, use_feast: bool = False) -> int:
    """Load the newest snapshot of every user into the online store; returns users loaded.

    By default every user's newest row (snapshots are sparse: it can be in any partition) goes straight
    to the online store for both snapshot views (features/online_writer.py); ``use_feast`` (or another
    view) runs Feast's own ``materialize`` over the whole offline table instead (from its oldest row, so
    no user's newest row is left out).
    """
    from features.compute import newest_rows, read_snapshots
    from features.lifetime import LIFETIME_VIEW
    from features.online_writer import write_latest
    from features.store import BEHAVIOUR_VIEW, open_store

    if settings.engine == "spark":  # Feast's spark.engine writes the online store from Spark's workers
        from features.spark_store import engine_store, materialize_spark

        return materialize_spark(settings, engine_store(settings, store), views)
    store = store or open_store(settings)
    snapshot_views = [BEHAVIOUR_VIEW, LIFETIME_VIEW]  # two views over the same daily snapshots
    views = views or snapshot_views
    root = DataPaths(settings.data_dir).behaviour_snapshots
    with step(progress, "materialize online store", total=len(views)) as advance:
        if set(views) <= set(snapshot_views) and not use_feast:
            _newest_partition(settings)  # says so when there are none
            newest = newest_rows(root)
            users = max(write_latest(store, view, newest) for view in views)
            advance(len(views))
            return users
        snaps = read_snapshots(root, columns=["user_id", "event_timestamp"])
        end = snaps["event_timestamp"].max() + pd.Timedelta(seconds=1)
        start = snaps["event_timestamp"].min() - pd.Timedelta(seconds=1)
        store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime(), feature_views=views)
        advance(len(views))
    return int(snaps["user_id"].nunique())


def materialize_incremental(settings: Settings, store: "FeatureStore | None" = None,
                            progress: Any | None = None) -> pd.Timestamp:
    """Move only snapshots newer than the last materialization online; returns the new high-water mark.

    When the newest partition is newer than the registry's last materialized interval, each user's
    newest row among the partitions after that mark is written (features/online_writer.py, which
    records the interval; the other users' rows online are still their newest); otherwise nothing is.
    """
    from features.compute import newest_rows
    from features.lifetime import LIFETIME_VIEW
    from features.online_writer import write_latest
    from features.store import BEHAVIOUR_VIEW, open_store

    store = store or open_store(settings)
    partition = _newest_partition(settings)
    newest = pd.Timestamp(partition.name[5:], tz="UTC")  # the partition is named by the snapshot time
    intervals = store.get_feature_view(BEHAVIOUR_VIEW).materialization_intervals
    mark = max((pd.to_datetime(end, utc=True) for _, end in intervals), default=None)
    with step(progress, "materialize (incremental)", total=1) as advance:
        if mark is None or newest > mark:
            latest = newest_rows(DataPaths(settings.data_dir).behaviour_snapshots, after=mark)
            write_latest(store, BEHAVIOUR_VIEW, latest)
            write_latest(store, LIFETIME_VIEW, latest)
            mark = newest
        advance(1)
    return mark


TRAINING_COLUMNS = ("user_id", "anonymous_id", "device_id", "timestamp", "event_type", "amount", "category")
"""The event columns labels, baselines and point-in-time identity read (the alias columns only to find
when each event was stitched)."""


def training_events(settings: Settings) -> pd.DataFrame:
    """Clean events (user, time, type, amount, category; identities resolved through the newest graph)
    with ``stitched_at``: when a later identity link attributed each one to its user (point-in-time
    identity for labels and training rows, see training/identity_pit.py). Read part by part as Arrow;
    each part's stitch times are found before the next is read, so only the kept columns of the whole
    store are ever in pandas at once."""
    from ingestion.clean_state import NoCleanEvents, no_clean_events
    from ingestion.event_store import iter_resolved
    from ingestion.identity import load_graph
    from training.identity_pit import GraphLinks, with_stitch_times

    paths = DataPaths(settings.data_dir)
    graph = load_graph(paths.identity_graph)
    links = GraphLinks.of(graph)  # prepared once for every part
    aliases = ["anonymous_id", "device_id"]
    parts = [with_stitch_times(table.to_pandas(), links).drop(columns=aliases)
             for table in iter_resolved(paths.events, graph, list(TRAINING_COLUMNS))]  # the graph read once
    if not parts:
        raise NoCleanEvents(no_clean_events(paths))
    events = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    del parts
    if events.empty:
        raise NoCleanEvents(no_clean_events(paths))
    return events


def sampled_fit_rows(labels: pd.DataFrame, evaluation: pd.Timestamp, share: float) -> pd.DataFrame:
    """The label rows of a ``share`` of the users (a stable hash of the id: the same users at every cutoff)
    at the cutoffs models are fitted on, and every row at the ``evaluation`` cutoff, so the evaluation
    and its baselines see the whole population whatever the share."""
    from training.user_sample import sampled

    if share >= 1:
        return labels
    at_eval = (pd.to_datetime(labels["event_timestamp"], utc=True) == evaluation).to_numpy()
    return pd.concat([sampled(labels.loc[~at_eval], share), labels.loc[at_eval]], ignore_index=True)


def training_set(settings: Settings, store: "FeatureStore | None" = None, progress: Any | None = None,
                 events: pd.DataFrame | None = None, known: "KnownEvents | None" = None):
    """Labels after each cutoff joined point-in-time with Feast features; returns (frame, split, features).
    ``events``: :func:`training_events`, when the caller already has them (and ``known``, their
    ``KnownEvents``)."""
    from features.store import feature_refs, open_store
    from training.dataset import build_training_set
    from training.labels import make_labels, rolling_cutoffs

    store = store or open_store(settings)
    with step(progress, "training set (labels + point-in-time features)", total=2) as advance:
        events = training_events(settings) if events is None else events
        history_end = events["timestamp"].max().floor("D") + pd.Timedelta(days=1)
        split = rolling_cutoffs(history_end, events["timestamp"].min(), settings.training)
        labels = make_labels(events, split.all, settings.training.horizon_days, settings.features.categories,
                             known=known)
        labels = sampled_fit_rows(labels, split.evaluation, settings.training.sample_share)
        advance(1)
        if settings.engine == "spark":  # Feast's Spark offline store, one partition per cutoff, sampled users
            from features.spark_store import engine_store
            from training.spark_dataset import build_training_set_spark

            frame = build_training_set_spark(settings, engine_store(settings, store), labels, progress=progress)
        else:
            frame = build_training_set(store, labels, settings.data_dir, progress=progress)
        path = DataPaths(settings.data_dir).training / "training_set.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        advance(1)
    return frame, split, feature_refs(store)


def lineage_tags(settings: Settings, frame: pd.DataFrame) -> dict[str, str]:
    """Where a model's data came from: feature service, ingestion batches and their data-quality result."""
    from features.store import FEATURE_SERVICE
    from ingestion.ledger import read_ledger

    ledger = DataPaths(settings.data_dir).ledger
    batches = read_ledger(ledger) if ledger.exists() else []
    statuses = pd.Series([b.status for b in batches], dtype=object).value_counts().to_dict()
    return {
        "feature_service": FEATURE_SERVICE,
        "training_rows": str(len(frame)),
        "data_dir": str(settings.data_dir),
        "ingestion_batches": ",".join(b.batch_id for b in batches)[:4900],
        "data_quality": ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())) or "no batches",
        "rows_quarantined": str(sum(b.quarantined for b in batches)),
        "all_batches_balanced": str(all(b.balanced for b in batches)).lower(),
    }


def train(settings: Settings, store: "FeatureStore | None" = None, progress: Any | None = None) -> "TrainSummary":
    """Build the training set, train every target, register the new versions and let the gate alias them
    (the first version of a model becomes champion; later ones challenger, promoted only by the gate)."""
    from features.store import open_store
    from training.baselines import history_summary
    from training.champions import serving_check
    from training.labels import KnownEvents, exclusion_tags, identity_exclusions
    from training.train import train_all, with_history

    store = store or open_store(settings)
    check = serving_check(store, settings.features.categories)
    events = training_events(settings)
    known = KnownEvents.of(events)  # one pass over every event for labels, history and exclusions
    frame, split, features = training_set(settings, store, progress, events, known)
    history = history_summary(events, split.all, settings.training.horizon_days, known)
    lineage = {**lineage_tags(settings, frame), **exclusion_tags(identity_exclusions(events, split.all, known))}
    return train_all(with_history(frame, history), features, split, settings.training,
                     settings.ml, rules=settings.segments,
                     categories=settings.features.categories, lineage=lineage, check=check, progress=progress)


def run_all(settings: Settings, progress: Any | None = None) -> RunSummary:
    """Every stage in order: sample (if needed) → ingest → features → apply → materialize → train
    (holding the writer lock throughout)."""
    from base.writer_lock import writer_lock

    with writer_lock(settings.data_dir, "persona run", wait=settings.validation.lock_wait_seconds):
        return _run_all(settings, progress)


def _run_all(settings: Settings, progress: Any | None = None) -> RunSummary:
    import time

    from features.store import open_store

    summary = RunSummary()
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        summary.timings[name] = round(now - t, 2)
        t = now

    summary.sample_events = ensure_sample(settings, progress)
    lap("sample")
    summary.ingest = ingest_inbox(settings, progress)
    lap("ingest")
    summary.features = build_features(settings, progress)
    lap("features")
    store = open_store(settings)
    register_features(settings, store)
    summary.materialized_users = materialize(settings, store, progress)
    lap("feast")
    summary.train = train(settings, store, progress)
    summary.training_rows = summary.train.models[0].rows_train + summary.train.models[0].rows_eval
    lap("train")
    return summary
