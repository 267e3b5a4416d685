"""The real-time event path of the service: log durably, resolve identities, update online features.

``LiveEvents.take`` does, in order: drop events this service already took (by event id), append the
rest to the durable log (the ``api`` channel's inbox, so batch ingest gates and stores them too),
resolve identities, fold them into the users' online behaviour features and push their activity
counters to Feast's push source online. The offline side of the push is batched: rows queue up and
``flush_offline`` (run every few seconds, and at shutdown) pushes them with one offline write,
because Feast's file offline store rewrites the whole table on every write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from serving import event_log
from serving.events import canonical_frame, log_records
from scoring.history import records_frame
from scoring.records import PersonaRecord
from serving.schemas import EventIn

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger("persona.serving.events")


class RecentIds:
    """The last ``size`` event ids taken, so a re-sent event is not counted online twice."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, ids: Sequence[str]) -> None:
        """Remember ids, forgetting the oldest beyond ``size``."""
        for i in ids:
            self._ids[i] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


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

    def __init__(self, settings: Settings, store: "FeatureStore") -> None:
        from features.compute import COUNT_FEATURES
        from features.store import BEHAVIOUR_VIEW

        self.settings = settings
        self.store = store
        paths = DataPaths(settings.data_dir)
        self.log_dir = DataPaths(settings.data_dir).event_log(settings.serving.event_log)
        self.graph = GraphCache(paths.identity_graph)
        self.view = BEHAVIOUR_VIEW
        self.fields = [f.name for f in store.get_feature_view(BEHAVIOUR_VIEW).features]
        self.integers = frozenset(f for f in self.fields if f in COUNT_FEATURES)
        self.seen = RecentIds()
        self._lock = threading.Lock()  # one read-modify-write of online values at a time
        self._pending: list[pd.DataFrame] = []
        self._personas: list[pd.DataFrame] = []
        self._pending_lock = threading.Lock()

    def take(self, events: Sequence[EventIn]) -> Taken:
        """Log, resolve and apply the events; returns counts and the users they touched."""
        from features.live_behaviour import update_lifetime_online, update_online
        from features.realtime import push_activity

        with self._lock:
            fresh, batch_ids = [], set()
            for e in events:
                if e.event_id in self.seen or e.event_id in batch_ids:
                    continue
                batch_ids.add(e.event_id)
                fresh.append(e)
            duplicates = len(events) - len(fresh)
            if not fresh:
                return Taken(0, duplicates, [])
            event_log.append(self.log_dir, log_records(fresh))  # durable before anything else
            frame = canonical_frame(fresh, self.settings, self.graph.get())
            update_lifetime_online(self.store, frame, time.time())  # reads last_purchase_ts before the next fold
            update_online(self.store, self.view, frame, self.fields, self.integers, time.time())
            rows = push_activity(self.store, frame, offline=False)
            # only now: a batch that failed above may be re-sent (the log dedupes by event id at ingest)
            self.seen.add([e.event_id for e in fresh])  # type: ignore[misc]
        if not rows.empty:
            with self._pending_lock:
                self._pending.append(rows)
        users = sorted(frame["user_id"].dropna().unique())
        return Taken(len(fresh), duplicates, users)

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
            return append_history(self.settings, pd.concat(pending, ignore_index=True), "realtime")
        except Exception:
            log.exception("persona history append failed; %d re-scored personas not recorded", len(pending))
            return 0

    def flush_offline(self) -> int:
        """Push the queued activity rows to the offline store in one write and the re-scored personas
        to the history; returns activity rows pushed."""
        from feast.data_source import PushMode

        from features.realtime import PUSH_SOURCE

        self.flush_history()
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        rows = pd.concat(pending, ignore_index=True)
        rows["event_timestamp"] = rows["event_timestamp"].dt.floor("us")  # the offline table keeps microseconds
        try:
            self.store.push(PUSH_SOURCE, rows, to=PushMode.OFFLINE)
        except Exception:
            log.exception("offline push of %d activity rows failed; they stay in the event log", len(rows))
            with self._pending_lock:
                self._pending[:0] = [rows]
            return 0
        return len(rows)

    def flush_every(self, stop: threading.Event, every: float) -> None:
        """Flush the offline queue every ``every`` seconds until ``stop`` is set, then once more."""
        while not stop.wait(every):
            self.flush_offline()
        self.flush_offline()
