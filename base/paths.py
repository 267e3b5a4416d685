"""Where each stage keeps its data, derived from the data directory (all generated, all ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPORT_PREFIX = "persona-report-"
"""File name prefix of the persona reports (a timestamp follows)."""


@dataclass(frozen=True)
class DataPaths:
    """Locations under one data directory."""

    root: Path

    @property
    def raw(self) -> Path:
        """Channel file drops (the inbox)."""
        return self.root / "raw"

    @property
    def ground_truth(self) -> Path:
        """Hidden personas of the sample generator."""
        return self.root / "sample" / "ground_truth.csv"

    @property
    def events(self) -> Path:
        """Clean canonical events, Parquet partitioned by day."""
        return self.root / "events"

    @property
    def quarantine(self) -> Path:
        """Rows and batches that failed a check, with the reason."""
        return self.root / "quarantine"

    @property
    def ledger(self) -> Path:
        """Ingestion ledger: one record per processed file."""
        return self.root / "ledger" / "batches.jsonl"

    @property
    def inbox_manifest(self) -> Path:
        """Digest of every inbox file by size, modification time and inode (so a run hashes only new files)."""
        return self.root / "ledger" / "inbox_manifest.json"

    @property
    def event_ids(self) -> Path:
        """Hashes of the event ids each committed group stored (so a run need not re-read the store)."""
        return self.root / "ledger" / "event_ids"

    @property
    def identity_graph(self) -> Path:
        """Alias → user links from identity stitching."""
        return self.root / "identity" / "graph.parquet"

    @property
    def gx(self) -> Path:
        """Great Expectations context (suites, results, Data Docs)."""
        return self.root / "gx"

    @property
    def features(self) -> Path:
        """Offline feature snapshots (the Feast file source)."""
        return self.root / "features"

    @property
    def behaviour_snapshots(self) -> Path:
        """Daily user behaviour snapshots, ``date=YYYY-MM-DD/part-N.parquet`` (Feast file source)."""
        return self.features / "user_behaviour"

    @property
    def feature_state(self) -> Path:
        """What the last feature build saw (for incremental builds)."""
        return self.features / "user_behaviour_state.json"

    @property
    def feast(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.root / "feast"

    @property
    def training(self) -> Path:
        """Training sets built from Feast historical retrieval."""
        return self.root / "training"

    @property
    def training_set(self) -> Path:
        """The newest training set (features joined with labels)."""
        return self.training / "training_set.parquet"

    @property
    def mlflow(self) -> Path:
        """MLflow SQLite store and artifacts."""
        return self.root / "mlflow"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's home (model and bento stores)."""
        return self.root / "bentoml"

    @property
    def logs(self) -> Path:
        """Logs of background processes (the service)."""
        return self.root / "logs"

    @property
    def history(self) -> Path:
        """The persona history: the Feast ``user_persona`` source, its latest-row cache and its lock."""
        return self.root / "history" / "user_persona"

    @property
    def history_cache(self) -> Path:
        """Each user's latest persona (a cache over the history files)."""
        return self.root / "history" / "latest.parquet"

    @property
    def history_lock(self) -> Path:
        """Lock over the history's compare-and-append."""
        return self.root / "history" / ".lock"

    @property
    def drift(self) -> Path:
        """Drift check results (one JSON per snapshot and champion set)."""
        return self.root / "monitoring" / "drift"

    @property
    def update(self) -> Path:
        """State, lock and run log of the update loop."""
        return self.root / "update"

    @property
    def mlflow_db(self) -> Path:
        """The embedded MLflow tracking and registry store."""
        return self.mlflow / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """The embedded MLflow artifact store."""
        return self.mlflow / "artifacts"

    def event_log(self, folder: str) -> Path:
        """The service's durable event log (``serving.event_log``, relative to the data directory)."""
        return self.root / folder

    @property
    def reports(self) -> Path:
        """HTML persona reports (``persona report``), newest last by name."""
        return self.root / "reports"

    @property
    def privacy(self) -> Path:
        """Suppression list, erasure audit log and the journal of erasures in progress."""
        return self.root / "privacy"

    @property
    def suppression(self) -> Path:
        """One-way tokens of forgotten people's identifiers (checked at ingest and by the service)."""
        return self.privacy / "suppressed.txt"

    @property
    def audit_log(self) -> Path:
        """One JSON line per erasure: time, caller, counts per store (no personal data)."""
        return self.privacy / "audit.jsonl"

    @property
    def erasures_pending(self) -> Path:
        """Erasures begun and not finished (a re-run of ``persona forget`` completes them)."""
        return self.privacy / "pending"

    def latest_report(self) -> Path | None:
        """The newest persona report, or None before the first ``persona report``."""
        found = sorted(self.reports.glob(f"{REPORT_PREFIX}*.html"))
        return found[-1] if found else None

    @property
    def access_keys(self) -> Path:
        """The service's client keys, hashed, with their scopes (``persona keys``; mode 0600)."""
        return self.root / "secrets" / "access_keys.json"

    @property
    def demo_key(self) -> Path:
        """The key ``persona run --keep-serving`` generated for its service (mode 0600)."""
        return self.root / "secrets" / "demo_api_key"
