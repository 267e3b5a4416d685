"""Bring your own data: a transactions-only export runs from configuration alone.

The export (generated, see tests/data/transactions_export.py) has dates in 1997, no event ids, no
categories, no logins, genuinely repeated lines, a header and CRLF line ends. The channel comes from
``persona channels suggest``; then ``persona ingest``, ``build-features``, ``apply``, ``materialize``,
``train`` run as a user would run them, and a real ``bentoml serve`` answers ``POST /persona``. A second
fresh set-up from the same file and configuration trains byte-identical model files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from base.config import Settings, load_settings
from persona.cli import app
from serving.process import ServiceProcess, free_port, start_service
from tests.data.transactions_export import Export, write_export
from training.registry import alias_version

pytestmark = pytest.mark.e2e

BASE_CONFIG = """\
data_dir: data
base_currency: USD
fx_rates: {USD: 1.0}
features:
  categories: []
training:
  train_cutoffs: 4
  num_boost_round: 80
  min_data_in_leaf: 20
"""


@dataclass(frozen=True)
class SetUp:
    """One user's folder: the config, the export and what each command printed."""

    root: Path
    config: Path
    export: Export
    output: dict[str, str]

    @property
    def settings(self) -> Settings:
        return load_settings(self.config)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def set_up(root: Path) -> SetUp:
    """A user's own folder: write the export and a config without channels, let `persona channels
    suggest` write the channel, then run every stage from the command line."""
    export = write_export(root / "data" / "raw" / "shop" / "purchases.csv")
    config = root / "persona.yaml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    out = {"suggest": _cli("channels", "suggest", str(export.path), "--config", str(config), "--name", "shop")}
    with config.open("a", encoding="utf-8") as f:
        f.write(out["suggest"])  # as printed
    for command in ("ingest", "build-features", "apply", "materialize", "train"):
        out[command] = _cli(command, "--config", str(config))
    return SetUp(root, config, export, out)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> SetUp:
    return set_up(tmp_path_factory.mktemp("own"))


@pytest.fixture(scope="module")
def service(own: SetUp) -> Iterator[ServiceProcess]:
    svc = start_service(own.settings, port=free_port())
    yield svc
    svc.stop()


def test_suggested_channel_maps_the_export_as_printed(own: SetUp) -> None:
    printed = own.output["suggest"]
    channel = yaml.safe_load(printed)["channels"]["shop"]
    assert channel["columns"] == {"user_id": "customer", "timestamp": "date", "quantity": "qty", "amount": "amount"}
    assert channel["timestamp"]["format"] == "%Y%m%d" and channel["event_type"] == "purchase"
    assert channel["currency"] == "USD" and channel["path"] == "raw/shop/*.csv"
    assert channel.get("key_on_line") is True  # repeated identical lines are separate purchases
    assert f"# checked: {own.export.lines} of {own.export.lines} rows map to canonical events" in printed
    assert "CRLF line ends" in printed and "a header line" in printed


def test_ingest_accepts_1997_dates_and_balances(own: SetUp) -> None:
    from base.paths import DataPaths
    from ingestion.ledger import read_ledger

    (batch,) = read_ledger(DataPaths(own.settings.data_dir).ledger)
    assert batch.status == "accepted" and batch.quarantined == 0 and batch.balanced
    assert batch.rows_read == own.export.lines
    # Repeated identical lines are separate purchases: the suggested channel keys on the line
    # (key_on_line), so every one is kept and none is counted as a duplicate.
    assert own.export.repeated > 0
    assert batch.duplicates == 0 and batch.accepted == own.export.lines


def test_no_categories_means_no_affinity_features_and_no_category_model(own: SetUp) -> None:
    from features.store import feature_refs, open_store

    features = feature_refs(open_store(own.settings))
    assert features and not [f for f in features if f.startswith("affinity_")]
    assert "category: not trained: no categories configured" in own.output["train"]
    assert alias_version(own.settings.ml, "category") is None
    assert alias_version(own.settings.ml, "spend") is not None and alias_version(own.settings.ml, "churn") is not None


def test_train_prints_its_cutoffs_and_windows(own: SetUp) -> None:
    line = next(x for x in own.output["train"].splitlines() if x.startswith("evaluation cutoff"))
    assert "evaluation cutoff 1997-" in line and "training cutoffs 1997-" in line
    assert "labels from the 30 days after each cutoff" in line


def test_the_service_answers_for_customers_of_the_export(own: SetUp, service: ServiceProcess) -> None:
    users = sorted(pd.read_parquet(own.settings.data_dir / "training" / "training_set.parquet")["user_id"].unique())[:3]
    resp = httpx.post(f"{service.url}/persona", json={"user_ids": [*users, "not-a-customer"]}, timeout=30)
    assert resp.status_code == 200, resp.text
    personas = resp.json()["personas"]
    for p in personas[:3]:
        assert p["cold_start"] is False and p["top_categories"] == []
        assert p["feature_timestamp"].startswith("1997-") and p["predicted_spend"] >= 0
        assert p["model_versions"]["category"] is None
    assert personas[3]["cold_start"] is True


def _model_files(settings: Settings, where: Path) -> dict[str, str]:
    """Digest of each champion's logged LightGBM model file, by target (downloaded from the registry)."""
    import mlflow.artifacts

    from training.registry import use_tracking

    ml = settings.ml
    use_tracking(ml)
    out = {}
    for target in ("spend", "churn"):
        ref = alias_version(ml, target)
        assert ref is not None
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(where / target)))
        (model,) = local.rglob("model.lgb")
        out[target] = hashlib.sha256(model.read_bytes()).hexdigest()
    return out


def test_same_data_and_config_train_identical_model_files(own: SetUp, tmp_path: Path) -> None:
    again = set_up(tmp_path / "again")
    first = _model_files(own.settings, tmp_path / "first")
    assert first == _model_files(again.settings, tmp_path / "second")
