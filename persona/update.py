"""``persona update``: process whatever arrived since the last run, end to end, each step only when
it has something to do.

ingest new files (ledger) → features for the changed days (incremental) → register definitions
(when feature_repo/ changed) → online store (newest snapshot) → drift (PSI vs the champion's
training data) → retrain a challenger when the schedule or drift says so (the gate in mlflow.yaml
decides promotion; the running service swaps in a moved champion by itself) → re-score every
user and append changed personas to the history → current personas online.

Re-running after a crash completes the work without duplicates: ingestion commits per batch in its
ledger, features keep their own state, the online writes are upserts, drift checks and history
appends are keyed by snapshot and model versions, training is skipped when the newest registered
version was already trained on the same window, and this module's state file (written atomically
after each step) only records finished steps. One update runs at a time (a lock file).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from base.config import Settings
from scoring.drift import DriftResult
from base.paths import DataPaths
from base.progress import step
from base.file_lock import LockTimeout, file_lock
from base.writer_lock import writer_lock


class UpdateBusy(RuntimeError):
    """Another update holds the lock."""


class Stopped(Exception):
    """A stop was requested between two steps (the next run carries on from there)."""


@dataclass
class UpdateSummary:
    """What one update did; ``steps`` says for every step what it did or why it was skipped."""

    started_at: str = ""
    seconds: float = 0.0
    steps: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    events_in: int = 0
    files_in: int = 0
    quarantined: int = 0
    duplicates: int = 0
    snapshot_day: str | None = None
    drift: dict[str, Any] | None = None
    retrain_reason: str = ""
    trained: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    promoted_versions: dict[str, str] = field(default_factory=dict)  # target -> new champion version
    gate: dict[str, str] = field(default_factory=dict)
    users_scored: int = 0
    personas_changed: int = 0
    segment_changes: int = 0
    stopped: bool = False

    @property
    def drift_found(self) -> bool:
        """The drift check found a drifted feature or model output."""
        return bool(self.drift and (self.drift["drifted_features"] or self.drift["drifted_outputs"]))

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [f"events in: {self.events_in} from {self.files_in} new file(s)"
               + (f" ({self.quarantined} quarantined, {self.duplicates} duplicates)" if self.files_in else "")]
        if self.drift:
            d = self.drift
            out.append(f"drift on {d['window']}: {'FOUND' if self.drift_found else 'none'} "
                       f"({len(d['drifted_features'])} feature(s), {len(d['drifted_outputs'])} output(s) "
                       f"at PSI >= {d['alert']}); {d['reason']}")
        out.append(f"models trained: {', '.join(self.trained) or 'none'}"
                   + (f" ({self.retrain_reason})" if self.retrain_reason else ""))
        out.append(f"models promoted: {', '.join(self.promoted) or 'none'}")
        for target, why in self.gate.items():
            out.append(f"  gate {target}: {why}")
        out.append(f"personas: {self.users_scored} users scored, {self.personas_changed} changed "
                   f"({self.segment_changes} changed segment)")
        if self.stopped:
            out.append("stopped early on request: the next update carries on")
        return out


# --------------------------------------------------------------------------- state


def update_dir(settings: Settings) -> Path:
    """State, lock and run log of the update loop."""
    return DataPaths(settings.data_dir).update


def load_state(settings: Settings) -> dict[str, Any]:
    """What earlier updates finished (empty when none)."""
    try:
        return json.loads((update_dir(settings) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def save_state(settings: Settings, state: dict[str, Any]) -> None:
    """Write the state atomically (a crash leaves the previous one)."""
    path = update_dir(settings) / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_runs(settings: Settings) -> list[dict[str, Any]]:
    """Every finished update's summary, oldest first."""
    path = update_dir(settings) / "runs.jsonl"
    if not path.exists():
        return []
    runs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            runs.append(json.loads(line))
        except ValueError:
            continue
    return runs


def _log_run(settings: Settings, summary: UpdateSummary) -> None:
    path = update_dir(settings) / "runs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(summary), default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    path = update_dir(settings) / ".lock"
    stack = ExitStack()
    try:
        stack.enter_context(file_lock(path, wait=0))
    except LockTimeout as e:
        raise UpdateBusy(f"another update is running (lock {path})") from e
    with stack:
        yield


def repo_digest(settings: Settings) -> str:
    """A digest of the feature definitions and store configuration (a change means `apply` again)."""
    h = hashlib.sha256()
    for f in sorted(settings.feature_repo.glob("*.py")) + sorted(settings.feature_repo.glob("*.yaml")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- decisions


def trained_through(settings: Settings, ml: Any) -> pd.Timestamp | None:
    """End of the data the newest registered spend model was trained on (its eval cutoff + horizon)."""
    from training.registry import client, versions

    from training.champions import REQUIRED

    found = versions(ml, REQUIRED[0])  # a run trains every target at once
    if not found:
        return None
    cutoff = client(ml).get_run(found[0].run_id).data.tags.get("persona.eval_cutoff")
    if not cutoff:
        return None
    return pd.Timestamp(cutoff, tz="UTC") + pd.Timedelta(days=settings.training.horizon_days)


def retrain_decision(settings: Settings, newest: pd.Timestamp, last: pd.Timestamp | None,
                     drift: DriftResult | None) -> tuple[bool, str]:
    """Whether to train a challenger now, and why (schedule, drift with a cooldown, or neither)."""
    cfg = settings.update
    if last is None:
        return True, "no model trained yet"
    age = (newest - last).days
    if age <= 0:
        return False, f"the newest registered model was trained on this data ({newest:%Y-%m-%d})"
    if age >= cfg.retrain_every_days:
        return True, f"schedule: {age} new day(s) since the last training (every {cfg.retrain_every_days})"
    if drift is not None and drift.retrain:
        if age >= cfg.drift_cooldown_days:
            return True, f"drift: {drift.reason}"
        return False, (f"drift, but only {age} new day(s) since the last training "
                       f"(cooldown {cfg.drift_cooldown_days})")
    return False, f"{age} new day(s) since the last training (schedule: every {cfg.retrain_every_days}), no drift"


# --------------------------------------------------------------------------- the update


def run_update(settings: Settings, progress: Any | None = None,
               should_stop: Callable[[], bool] | None = None) -> UpdateSummary:
    """One update (see the module docstring); raises :class:`UpdateBusy` when another one runs."""
    with _exclusive(settings), writer_lock(settings.data_dir, "persona update",
                                           wait=settings.validation.lock_wait_seconds):
        summary = UpdateSummary(started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        t0 = time.perf_counter()
        try:
            _run(settings, summary, progress, should_stop or (lambda: False))
        except Stopped:
            summary.stopped = True
        summary.seconds = round(time.perf_counter() - t0, 2)
        _log_run(settings, summary)
        return summary


def _run(settings: Settings, summary: UpdateSummary, progress: Any | None, should_stop: Callable[[], bool]) -> None:
    from features.incremental import event_partitions

    from persona import pipeline
    from scoring.drift import newest_snapshot_day

    state = load_state(settings)
    paths = DataPaths(settings.data_dir)
    clock = [time.perf_counter()]

    def done(name: str, what: str, **updates: Any) -> None:
        now = time.perf_counter()
        summary.steps[name] = what
        summary.timings[name] = round(now - clock[0], 2)
        clock[0] = now
        if updates:
            state.update(updates)
            save_state(settings, state)
        if should_stop():
            raise Stopped

    ingest = pipeline.ingest_inbox(settings, progress)
    summary.files_in = len(ingest.batches)
    summary.events_in = ingest.total("accepted")
    summary.quarantined, summary.duplicates = ingest.total("quarantined"), ingest.total("duplicates")
    done("ingest", f"{summary.files_in} new file(s), {summary.events_in} events accepted" if ingest.batches
         else "skipped: no new files")
    from persona.retention import apply_retention

    gone = apply_retention(settings)  # privacy.retention_days (ingested files, quarantine, history)
    done("retention", "removed " + ", ".join(f"{n} {what}" for what, n in gone.items()) if gone
         else "skipped: nothing past privacy.retention_days")
    if not event_partitions(paths.events):
        done("features", "skipped: no clean events yet (drop files into the inbox or run `persona sample-data`)")
        return
    fs = pipeline.build_features(settings, progress)
    done("features", f"{fs.rows} snapshot rows from {fs.recomputed_from:%Y-%m-%d}" if fs.rows and fs.recomputed_from
         else (f"{fs.rows} snapshot rows (full build)" if fs.rows else "skipped: no changed days"))
    summary.snapshot_day = newest_snapshot_day(settings)

    from features.spark_store import engine_store

    store = engine_store(settings)  # the profile's store, or its Spark variant (PERSONA_ENGINE=spark)
    digest = repo_digest(settings)
    if state.get("feature_repo") != digest:
        names = pipeline.register_features(settings, store)
        done("apply", f"registered {len(names)} definitions", feature_repo=digest)
    else:
        done("apply", "skipped: feature_repo/ unchanged")
    if state.get("materialized") != summary.snapshot_day:
        users = pipeline.materialize(settings, store, progress)
        done("materialize", f"{users} users online as of {summary.snapshot_day}", materialized=summary.snapshot_day)
    else:
        done("materialize", f"skipped: online store already at {summary.snapshot_day}")

    ml = settings.ml
    models = _champions(ml)
    drift = None
    if models is None:
        done("drift", "skipped: no champion models yet")
    else:
        from scoring.drift import check_drift

        with step(progress, "drift (PSI)", total=1) as advance:
            drift = check_drift(settings, ml, models)
            advance(1)
        summary.drift = asdict(drift) if drift else None
        done("drift", drift.reason if drift else "skipped: no reference snapshots for the champion")

    _maybe_train(settings, store, ml, drift, summary, progress, done)
    models = _champions(ml)
    if models is None:
        done("score", "skipped: no champion models")
        return
    from training.targets import TARGETS

    rules = hashlib.sha256(json.dumps([r.model_dump() for r in settings.segments]).encode()).hexdigest()[:8]
    key = "|".join([str(summary.snapshot_day), *(models[t.key].ref.version for t in TARGETS if t.segment_input),
                    rules])  # re-score when the segment rules (edited in the studio) changed
    if state.get("scored") != key:
        from scoring.batch import rescore_all
        from scoring.spark_batch import rescore_all_spark

        with step(progress, "score every user (smoothed)", total=1) as advance:
            result = (rescore_all_spark if settings.engine == "spark" else rescore_all)(settings, models)
            advance(1)
        summary.users_scored, summary.personas_changed = result.users, result.changed
        summary.segment_changes = result.segment_changes
        done("score", f"{result.users} users scored, {result.changed} personas changed", scored=key)
    else:
        done("score", f"skipped: personas already scored for {key}")
    if state.get("personas_online") != key:
        from scoring.batch import materialize_personas

        n = materialize_personas(settings, store)
        done("personas online", f"{n} current personas in the online store", personas_online=key)
    else:
        done("personas online", "skipped: unchanged")
    from studio.refresh import after_update

    done("studio", after_update(settings))  # aggregates for the pages, then audience syncs (never fails the update)


def _champions(ml: Any) -> dict[str, Any] | None:
    from training.champions import NoChampion, load_champions

    try:
        return load_champions(ml)
    except NoChampion:
        return None


def _maybe_train(settings: Settings, store: Any, ml: Any, drift: DriftResult | None, summary: UpdateSummary,
                 progress: Any | None, done: Callable[..., None]) -> None:
    from persona import pipeline

    newest = pd.Timestamp(summary.snapshot_day, tz="UTC")
    go, why = retrain_decision(settings, newest, trained_through(settings, ml), drift)
    summary.retrain_reason = why
    if not go:
        done("train", f"skipped: {why}")
        return
    try:
        result = pipeline.train(settings, store, progress)
    except ValueError as e:  # e.g. a history too short for the label horizon
        done("train", f"skipped: cannot train yet: {e}")
        return
    for m in result.models:
        summary.trained.append(f"{m.ref.name} v{m.ref.version}")
        if m.alias == ml.champion_alias:
            summary.promoted.append(f"{m.ref.name} v{m.ref.version}")
            summary.promoted_versions[m.target] = m.ref.version
            summary.gate[m.target] = f"v{m.ref.version} promoted: {_decision(ml, m.ref)}"
        else:
            summary.gate[m.target] = f"v{m.ref.version} refused, champion kept: " + ("; ".join(m.reasons) or _decision(ml, m.ref))
    done("train", f"trained {', '.join(summary.trained)}; promoted {', '.join(summary.promoted) or 'none'} ({why})")


def _decision(ml: Any, ref: Any) -> str:
    """The reason recorded with a version's latest lifecycle decision."""
    from training.registry import client

    body = client(ml).get_model_version(ref.name, ref.version).tags.get("last_decision")
    return json.loads(body).get("why", "") if body else ""


def record_first_build(settings: Settings) -> None:
    """Note what a full build (``run_all``) just did: feature_repo/ applied as it is now and the newest
    snapshot online, so the next update does not redo them."""
    from scoring.drift import newest_snapshot_day

    state = load_state(settings)
    state["feature_repo"] = repo_digest(settings)
    state["materialized"] = newest_snapshot_day(settings)
    save_state(settings, state)
