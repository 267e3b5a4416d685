"""Channels declared only in configuration: a transactions-only export and a Parquet export work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingestion.event_store import read_events
from ingestion.ingest import ingest
from ingestion.ledger import read_ledger
from base.config import Settings, load_settings
from base.paths import DataPaths
from validation.quarantine import read_quarantine

CONFIG = """
data_dir: data
base_currency: EUR
fx_rates: {EUR: 1.0, GBP: 1.17}
channels:
  till:                        # a shop till: customer, date, quantity, amount, nothing else
    path: raw/till/*.csv
    format: csv
    columns: {user_id: customer, timestamp: date, quantity: qty, amount: amount}
    timestamp: {unit: format, format: "%d/%m/%Y", timezone: Europe/London}
    currency: GBP
    event_type: purchase
  shop:                        # the same kind of rows, as Parquet
    path: raw/shop/*.parquet
    format: parquet
    columns: {event_id: id, user_id: who, event_type: what, timestamp: at}
    timestamp: {unit: s}
    event_types: {buy: purchase, look: product_view}
outliers: {caps: {purchase: 1000}, action: quarantine}
"""

TILL = """customer,date,qty,amount
c1,01/07/2026,2,10.00
c2,01/07/2026,1,99.50
c1,02/07/2026,3,12.00
c2,01/07/2026,1,99.50
c3,03/07/2026,1,5000.00
c4,31/02/2026,1,1.00
"""


@pytest.fixture
def till(tmp_path: Path) -> Settings:
    (tmp_path / "persona.yaml").write_text(CONFIG)
    settings = load_settings(tmp_path / "persona.yaml")
    folder = settings.data_dir / "raw" / "till"
    folder.mkdir(parents=True)
    (folder / "till_2026-07.csv").write_text(TILL)
    return settings


def test_transactions_only_channel_from_config(till: Settings) -> None:
    summary = ingest(till, with_docs=False)
    [batch] = summary.batches
    assert batch.balanced and batch.rows_read == 6
    assert (batch.accepted, batch.duplicates, batch.quarantined) == (3, 1, 2)  # same order twice; outlier; bad date
    events = read_events(DataPaths(till.data_dir).events).sort_values("timestamp")
    assert list(events["user_id"]) == ["c1", "c2", "c1"]
    assert events["event_id"].str.fullmatch(r"till:h\d+").all() and events["event_id"].is_unique
    assert events["amount"].tolist() == pytest.approx([11.70, 116.42, 14.04])  # GBP → EUR
    assert set(events["event_type"]) == {"purchase"} and not events["is_outlier"].any()
    assert events["timestamp"].iloc[0] == pd.Timestamp("2026-06-30 23:00", tz="UTC")  # London summer time
    q = read_quarantine(DataPaths(till.data_dir).quarantine).set_index("source_row")
    assert q.loc[6, "check"] == "outlier_rule" and "above cap" in q.loc[6, "reason"]
    assert "cannot parse timestamp" in q.loc[7, "reason"]


def test_event_ids_are_stable_across_redelivery(till: Settings) -> None:
    ingest(till, with_docs=False)
    first = set(read_events(DataPaths(till.data_dir).events)["event_id"])
    again = till.data_dir / "raw" / "till" / "till_2026-07_resent.csv"
    again.write_text(TILL + "c9,04/07/2026,1,3.00\n")  # a new file: same rows plus one
    [batch] = ingest(till, with_docs=False).batches
    assert (batch.accepted, batch.duplicates) == (1, 4)
    assert first < set(read_events(DataPaths(till.data_dir).events)["event_id"])


def test_parquet_channel(till: Settings) -> None:
    folder = till.data_dir / "raw" / "shop"
    folder.mkdir(parents=True)
    pd.DataFrame({"id": [1, 2, 3], "who": ["u1", None, "u2"], "what": ["buy", "look", "look"],
                  "at": [1782900000, 1782900060, 1782900120]}).to_parquet(folder / "shop.parquet")
    summary = ingest(till, with_docs=False)
    shop = [b for b in summary.batches if b.channel == "shop"][0]
    assert shop.balanced and shop.rows_read == 3
    # a purchase without an amount and a row without any user fail the gate; the other is accepted
    assert shop.accepted == 1 and shop.quarantined == 2
    assert len(read_ledger(DataPaths(till.data_dir).ledger)) == 2
