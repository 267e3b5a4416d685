"""`persona channels suggest`: typical exports get a channel block that works as printed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from base.config import ChannelConfig, Settings
from ingestion.suggest import canonical_event, suggest_channel, timestamp_spec
from tests.conftest import settings_in
from tests.data.transactions_export import write_export


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = settings_in(tmp_path / "data")
    return s.model_copy(update={"fx_rates": {**s.fx_rates, "USD": 0.92, "GBP": 1.17}})


def channel_of(printed: str) -> tuple[str, ChannelConfig]:
    (name, block), = yaml.safe_load(printed)["channels"].items()
    return name, ChannelConfig.model_validate(block)


def test_transactions_only_export(settings: Settings) -> None:
    export = write_export(settings.data_dir / "raw" / "shop" / "purchases.csv", customers=30)
    found = suggest_channel(export.path, settings=settings, currency="USD")
    name, cfg = channel_of(found.yaml())
    assert name == "purchases" and cfg.path == "raw/shop/*.csv" and cfg.format == "csv" and cfg.delimiter == ","
    assert cfg.columns == {"timestamp": "date", "user_id": "customer", "amount": "amount", "quantity": "qty"}
    assert (cfg.timestamp.unit, cfg.timestamp.format, cfg.currency, cfg.event_type) == ("format", "%Y%m%d", "USD",
                                                                                       "purchase")
    assert found.checked == f"{export.lines} of {export.lines} rows map to canonical events"
    assert "CRLF line ends" in found.facts and "a header line" in found.facts
    assert any("features.categories: []" in n for n in found.notes)


def test_semicolons_day_first_dates_currency_emails_and_event_values(settings: Settings, tmp_path: Path) -> None:
    rows = [f"T{i:04d};{(i % 7) + 1:02d}/0{(i % 3) + 1}/2024 1{i % 10}:05;C{i % 9};{12.5 + i:.2f};"
            f"{['GBP', 'EUR'][i % 2]};{['Sale', 'Return'][i % 5 == 0]};{['garden', 'kitchen', 'toys'][i % 3]};"
            f"c{i % 9}@example.com" for i in range(60)]
    path = tmp_path / "till-2024-03.csv.gz"
    path.write_bytes(gzip.compress(("txn;when;client;total;ccy;kind;department;email\n" + "\n".join(rows)).encode()))
    found = suggest_channel(path, settings=settings)
    name, cfg = channel_of(found.yaml())
    assert name == "till" and cfg.path == "raw/till/*.csv.gz" and cfg.delimiter == ";"
    assert cfg.columns == {"timestamp": "when", "event_id": "txn", "user_id": "client", "amount": "total",
                           "currency": "ccy", "event_type": "kind", "category": "department"}
    assert (cfg.timestamp.unit, cfg.timestamp.format) == ("format", "%d/%m/%Y %H:%M")
    assert cfg.event_types == {"Return": "refund", "Sale": "purchase"} and cfg.pii == {"email": "email"}
    assert found.checked == "60 of 60 rows map to canonical events" and "gzip" in found.facts


def test_json_lines_with_epoch_milliseconds_and_a_bom_csv(settings: Settings, tmp_path: Path) -> None:
    jsonl = tmp_path / "app.jsonl"
    start = pd.Timestamp("2025-01-01", tz="UTC").value // 10**6
    jsonl.write_text("\n".join(json.dumps({"id": f"e{i}", "member": f"m{i % 4}", "ms": start + i * 61_000,
                                           "action": ["item_view", "cart_add", "signin"][i % 3]})
                               for i in range(30)) + "\n")
    _, cfg = channel_of(suggest_channel(jsonl, settings=settings).yaml())
    assert cfg.format == "jsonl" and cfg.timestamp.unit == "ms"
    assert cfg.columns == {"timestamp": "ms", "event_id": "id", "user_id": "member", "event_type": "action"}
    assert cfg.event_types == {"cart_add": "add_to_cart", "item_view": "product_view", "signin": "identify"}
    bom = tmp_path / "visits.csv"
    bom.write_bytes(b"\xef\xbb\xbfvisitor\tseen_at\n" + b"".join(f"v{i % 3}\t2025-02-0{i % 9 + 1}T10:00:00Z\n".encode()
                                                                  for i in range(20)))
    found = suggest_channel(bom, settings=settings)
    _, cfg = channel_of(found.yaml())
    assert cfg.delimiter == "\t" and cfg.timestamp.unit == "iso8601" and "UTF-8 with a byte-order mark" in found.facts
    assert found.checked == "20 of 20 rows map to canonical events"


def test_what_cannot_be_decided_is_said() -> None:
    assert timestamp_spec(pd.Series(["01/02/2024", "03/04/2024"]))[1].startswith("both %d/%m/%Y and %m/%d/%Y")
    assert timestamp_spec(pd.Series(["1700000000", "1700003600"]))[0] == {"unit": "s", "timezone": "UTC"}
    assert timestamp_spec(pd.Series(["abc", "def"])) is None
    assert canonical_event("ORDER_COMPLETED") == "purchase" and canonical_event("weird") is None


def test_a_file_without_times_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text("name,colour\nann,red\nbob,blue\n")
    with pytest.raises(ValueError, match="no column reads as a timestamp"):
        suggest_channel(path)
