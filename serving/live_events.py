"""The real-time event path of the service: log durably, resolve identities, update online features.

``LiveEvents.take`` does, in order: skip events already folded online (by event id, in a table
shared by every worker: features/online_fold.py), append the rest to the durable log (the ``api``
channel's inbox, so batch ingest gates and stores them too), resolve identities, then fold them into
the users' online behaviour features and activity counters in one atomic step of the online store that
also records their ids (so a re-sent event, a second worker, a restart or a retry after a failure
never folds an event twice). The offline copy of the activity rows is batched: rows queue up (at most
``MAX_PENDING_ROWS``; beyond that the oldest are dropped and logged, they stay in the event log) and
``flush_offline`` (every few seconds, and at shutdown) appends them as one new file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from scoring.history import records_frame
from scoring.records import PersonaRecord
from serving import event_log
from serving.events import canonical_frame, log_records
from serving.schemas import EventIn

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger("persona.serving.events")
MAX_PENDING_ROWS = 200_000
"""Activity rows kept for the offline copy while appends fail; older ones are dropped (and logged)."""


def _lifetime_view(store: FeatureStore) -> str | None:
    """The lifetime view's name when the registry has it (folded with the others), else None."""
    from feast.errors import FeatureViewNotFoundException

    from features.lifetime import LIFETIME_VIEW

    try:
        store.get_feature_view(LIFETIME_VIEW)
    except FeatureViewNotFoundException:
        return None
    return LIFETIME_VIEW


class GraphCache:
    """The identity graph, re-read only when its file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[float, int] | None = None
        self._graph: pd.DataFrame | None = None

    def get(self) -> pd.DataFrame:
        """The current graph."""
        from ingestion.identity import empty_graph, load_graph

        try:
            st = self.path.stat()
            key = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            return empty_graph()
        if key != self._key:
            self._graph, self._key = load_graph(self.path), key
        return self._graph  # type: ignore[return-value]


@dataclass(frozen=True)
class Taken:
    """What one call of ``LiveEvents.take`` did."""

    accepted: int
    duplicates: int
    users: list[str]


class LiveEvents:
    """Takes validated events into the durable log and the online store (thread-safe)."""

    def __init__(self, settings: Settings, store: FeatureStore) -> None:
        from features.online_fold import OnlineFold
        from features.realtime import ACTIVITY_VIEW
        from features.store import BEHAVIOUR_VIEW

        self.settings = settings
        self.store = store
        paths = DataPaths(settings.data_dir)
        self.log_dir = paths.event_log(settings.serving.event_log)
        self.graph = GraphCache(paths.identity_graph)
        self.log = event_log.EventLog(self.log_dir)
        self.fold = OnlineFold(store, BEHAVIOUR_VIEW, ACTIVITY_VIEW, settings.serving.dedup_retention_days * 86400.0,
                               lifetime_view=_lifetime_view(store))
        self._pending: list[pd.DataFrame] = []
        self._personas: list[pd.DataFrame] = []
        self._pending_lock = threading.Lock()
        self.dropped_rows = 0
        self.forgotten: Callable[[str | None], bool] = lambda _: False
        """Whether a user was erased since their rows were queued (the service sets its suppression list)."""

    def take(self, events: Sequence[EventIn]) -> Taken:
        """Log, resolve and apply the events; returns counts and the users they touched."""
        unique = list({e.event_id: e for e in events}.values())
        done = self.fold.seen([e.event_id for e in unique])  # type: ignore[misc]
        fresh = [e for e in unique if e.event_id not in done]
        if not fresh:
            return Taken(0, len(events), [])
        self.log.append(log_records(fresh))  # durable before anything else
        frame = canonical_frame(fresh, self.settings, self.graph.get())
        # atomic in the store: ids claimed and the behaviour, activity and lifetime values folded together
        # (a failure above or here leaves nothing claimed, so a retry is folded once; the log's copies are
        # de-duplicated at ingest)
        result = self.fold.apply(frame, time.time())
        if not result.activity.empty:
            with self._pending_lock:
                self._pending.append(result.activity)
                self._bound()
        return Taken(len(result.fresh), len(events) - len(result.fresh), result.users)

    def record(self, personas: Sequence[PersonaRecord]) -> None:
        """Queue re-scored personas for the persona history (written by ``flush_offline``)."""
        rows = records_frame(personas, pd.Timestamp.now(tz="UTC"))
        if not rows.empty:
            with self._pending_lock:
                self._personas.append(rows)

    def flush_history(self) -> int:
        """Append the queued personas that changed to the persona history; returns rows appended."""
        from scoring.history import append_history

        with self._pending_lock:
            pending, self._personas = self._personas, []
        if not pending:
            return 0
        try:
            return append_history(self.settings, self._without_forgotten(pd.concat(pending, ignore_index=True)),
                                   "realtime")
        except Exception:
            log.exception("persona history append failed; %d re-scored personas not recorded", len(pending))
            return 0

    def flush_offline(self) -> int:
        """Append the queued activity rows to the offline store as one file and the re-scored personas
        to the history; returns activity rows written."""
        from features.realtime import append_offline

        self.flush_history()
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        rows = self._without_forgotten(pd.concat(pending, ignore_index=True))
        if rows.empty:
            return 0
        try:
            append_offline(self.store, rows)
        except Exception:
            log.exception("offline append of %d activity rows failed; kept for the next flush", len(rows))
            with self._pending_lock:
                self._pending[:0] = [rows]
                self._bound()
            return 0
        return len(rows)

    def _without_forgotten(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Queued rows minus those of people erased meanwhile (``persona forget`` ran in another process)."""
        if rows.empty or "user_id" not in rows:
            return rows
        gone = rows["user_id"].map(lambda u: self.forgotten(None if pd.isna(u) else str(u))).to_numpy(dtype=bool)
        return rows.loc[~gone] if gone.any() else rows

    def _bound(self) -> None:
        """Drop the oldest queued rows beyond ``MAX_PENDING_ROWS`` (they stay in the event log)."""
        total = sum(len(p) for p in self._pending)
        while total > MAX_PENDING_ROWS and self._pending:
            oldest = self._pending.pop(0)
            total -= len(oldest)
            self.dropped_rows += len(oldest)
            log.error("offline activity queue over %d rows: dropped %d (they stay in the event log)",
                      MAX_PENDING_ROWS, len(oldest))

    def flush_every(self, stop: threading.Event, every: float) -> None:
        """Flush the offline queue every ``every`` seconds until ``stop`` is set, then once more."""
        while not stop.wait(every):
            self.flush_offline()
        self.flush_offline()
