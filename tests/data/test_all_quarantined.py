"""A file whose rows are all quarantined ends `quarantined` with its top reasons, and the stages after
ingest say so (instead of "run persona ingest first")."""

from __future__ import annotations

from pathlib import Path

import pytest

from base.config import Settings, load_settings
from base.paths import DataPaths
from ingestion.clean_state import NoCleanEvents
from ingestion.ingest import ingest
from persona.pipeline import build_features, training_events
from tests.data.transactions_export import write_export

CONFIG = """\
data_dir: data
base_currency: USD
fx_rates: {USD: 1.0}
features: {categories: []}
validation:
  timestamps: {earliest: 2000-01-01}
channels:
  shop:
    path: raw/shop/*.csv
    format: csv
    columns: {user_id: customer, timestamp: date, quantity: qty, amount: amount}
    timestamp: {unit: format, format: "%Y%m%d"}
    currency: USD
    event_type: purchase
"""


def own_settings(root: Path) -> Settings:
    (root / "persona.yaml").write_text(CONFIG, encoding="utf-8")
    return load_settings(root / "persona.yaml")


def test_before_any_ingest_the_stages_say_run_ingest(tmp_path: Path) -> None:
    with pytest.raises(NoCleanEvents, match="no file was ingested yet; run `persona ingest` first"):
        build_features(own_settings(tmp_path))


def test_a_file_quarantined_whole_is_named_so_with_its_reasons(tmp_path: Path) -> None:
    settings = own_settings(tmp_path)
    export = write_export(settings.data_dir / "raw" / "shop" / "purchases.csv", customers=20)
    write_export(settings.data_dir / "raw" / "shop" / "more.csv", customers=5, seed=3)
    summary = ingest(settings, with_docs=False)
    first = next(b for b in summary.batches if b.file.endswith("purchases.csv"))
    assert (first.status, first.accepted, first.quarantined) == ("quarantined", 0, export.lines)
    assert first.message.startswith(f"raw/shop/purchases.csv: all {export.lines} rows quarantined: "
                                    f"expect_column_values_to_be_between(timestamp): {export.lines} rows, e.g. got 1997-")
    assert "below the minimum 2000-01-01Z (validation.timestamps.earliest)" in first.message
    rows = sum(b.rows_read for b in summary.batches)
    expected = f"all {rows} rows of 2 files were quarantined: expect_column_values_to_be_between(timestamp): {rows} rows"
    with pytest.raises(NoCleanEvents, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build_features(settings)
    with pytest.raises(NoCleanEvents, match="persona quarantine list"):
        training_events(settings)
    assert DataPaths(settings.data_dir).quarantine.exists()
