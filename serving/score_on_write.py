"""Score on write, read on request: which stored records the service may answer with, and the re-score
of every user when the champions or the snapshot change.

A persona is a pure function of (features, champion models). The real-time path stores the records
of the users it touches right after folding their events; this keeper re-scores every user when a
new *generation* appears: new champion versions (a swap in this worker) or a new materialized
snapshot (``persona update``). One worker claims the generation in the record store and re-scores;
the others keep answering. Until the re-score for the versions in use is done, records of the
previous versions are still served (each record names its versions), so a swap never turns every
request into an on-request score; afterwards a record of other versions is scored on the request,
as is a user without a record.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from base.paths import DataPaths
from features.online_records import RecordStore

if TYPE_CHECKING:
    from feast import FeatureStore

    from base.config import Settings
    from serving.live_models import ChampionSwitch, ModelState
    from serving.metrics import ServiceMetrics
    from serving.online import OnlineFeatures

log = logging.getLogger("persona.serving.records")


def state_key(state: "ModelState") -> str:
    """The versions text of a model state (as stored with each record): models and segment rules."""
    return state.scorer.record_key()


def _rules_of(key: str) -> str:
    """The segment rules' edit a record key names ("" for the rules the models were loaded with)."""
    return key.partition(";rules=")[2]


class RecordKeeper:
    """Decides which stored records are current and re-scores every user for a new generation."""

    def __init__(self, settings: "Settings", store: "FeatureStore", models: "ChampionSwitch",
                 online: "OnlineFeatures", records: RecordStore, metrics: "ServiceMetrics") -> None:
        self.settings, self.store, self.models, self.online = settings, store, models, online
        self.records, self.metrics = records, metrics
        state = models.current
        self._settled: str | None = state_key(state) if state is not None else None
        self._generation: str | None = None
        self.last_rescore: tuple[int, float] | None = None  # users, seconds

    def accepted(self, state: "ModelState") -> frozenset[str]:
        """Versions whose records may be served now: those in use, and the previous ones while the
        re-score for those in use has not finished."""
        key = state_key(state)
        if self._settled is None or key == self._settled or _rules_of(key) != _rules_of(self._settled):
            return frozenset({key})  # saved segment rules apply at once: no record of other rules is served
        return frozenset({key, self._settled})

    def snapshot_mark(self) -> str:
        """When the newest snapshot was materialized (the registry's interval end), as text."""
        from features.store import BEHAVIOUR_VIEW

        try:
            self.store.refresh_registry()
            intervals = self.store.get_feature_view(BEHAVIOUR_VIEW).materialization_intervals
        except Exception as exc:  # noqa: BLE001 - a registry hiccup: keep the last generation
            log.warning("cannot read the materialization intervals: %s", exc)
            return self._generation.split("@", 1)[1] if self._generation else ""
        return max((end for _, end in intervals), default="").isoformat() if intervals else ""

    def all_users(self) -> list[str]:
        """Users with a record, and every user with a snapshot (sparse: in any partition)."""
        from features.compute import read_snapshots

        users = set(self.records.users())
        root = DataPaths(self.settings.data_dir).behaviour_snapshots
        if any(root.glob("date=*")):
            users |= set(read_snapshots(root, columns=["user_id"])["user_id"].astype(str))
        return sorted(users)

    def check(self) -> bool:
        """Re-score everyone when a new generation appears (and this worker wins the claim); returns
        True when this call re-scored."""
        from scoring.batch import rescore_records

        state = self.models.current
        if state is None:
            return False
        key = state_key(state)
        generation = f"{key}@{self.snapshot_mark()}"
        if generation == self._generation:
            if key != self._settled and self.records.done(generation):
                self._settled = key
            return False
        now = time.time()
        if not self.records.claim(generation, now):
            self._generation = generation  # another worker re-scores it; ``done`` settles it later
            if self.records.done(generation):
                self._settled = key
            return False
        users = self.all_users()
        result = rescore_records(state.scorer, lambda ids: self.online.read(ids, state.scorer.features),
                                 self.records, users)
        self.records.finish(generation, time.time())
        self._generation, self._settled = generation, key
        self.last_rescore = (result.users, result.seconds)
        self.metrics.rescore_users_per_second.set(result.users_per_second)
        log.info("re-scored %d users for %s in %.1fs (%.0f users/s)", result.users, generation, result.seconds,
                 result.users_per_second)
        return True

    def watch(self, stop: threading.Event, every: float) -> None:
        """Check every ``every`` seconds (every second while a re-score elsewhere is pending)."""
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # noqa: BLE001 - log and keep serving; the next check tries again
                log.exception("re-score of the stored personas failed; the next check tries again")
            state = self.models.current
            pending = state is not None and state_key(state) != self._settled
            if stop.wait(1.0 if pending else every):
                return
