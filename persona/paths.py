"""Where each stage keeps its data, derived from the data directory (all generated, all ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
