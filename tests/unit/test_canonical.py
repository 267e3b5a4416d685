"""Canonical mapping: UTC timestamps, one currency, hashed PII, clear rejects."""

import pandas as pd
import pytest

from ingestion.canonical import MissingColumns, canonicalise, parse_timestamps
from ingestion.schema import CANONICAL_COLUMNS
from persona.config import Settings


def _orders(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows).astype(object)
    df["source_row"] = range(2, len(df) + 2)
    return df


ORDER = {"order_id": "O1", "customer_id": "u000001", "email": "Jane@Example.com ", "status": "completed",
         "order_date": "2026-07-01 12:00:00", "total": "100.00", "currency": "USD", "qty": "2",
         "category": "home", "sku": "p1"}


def test_orders_map_to_utc_and_base_currency(settings: Settings) -> None:
    out = canonicalise(_orders([ORDER]), "orders", settings.channels["orders"], settings, "raw/orders/a.csv")
    assert out.rejects.empty
    row = out.events.iloc[0]
    assert list(out.events.columns) == list(CANONICAL_COLUMNS)
    assert row["timestamp"] == pd.Timestamp("2026-07-01 10:00:00", tz="UTC")  # Berlin summer time
    assert row["amount"] == pytest.approx(100 * settings.fx_rates["USD"])
    assert row["currency"] == "EUR" and row["event_type"] == "purchase"
    assert row["email_hash"] and "@" not in row["email_hash"] and "Jane" not in row.to_json()
    assert row["event_id"] == "orders:O1|purchase"


def test_same_email_hashes_equal_after_normalisation(settings: Settings) -> None:
    rows = [ORDER, {**ORDER, "order_id": "O2", "email": "jane@example.com"}]
    out = canonicalise(_orders(rows), "orders", settings.channels["orders"], settings, "f")
    assert out.events["email_hash"].nunique() == 1


def test_bad_rows_rejected_with_reason(settings: Settings) -> None:
    rows = [ORDER, {**ORDER, "order_id": "O2", "status": "exploded"}, {**ORDER, "order_id": "O3", "total": "12,x"},
            {**ORDER, "order_id": "O4", "order_date": "yesterday"}, {**ORDER, "order_id": "O5", "currency": "XYZ"}]
    out = canonicalise(_orders(rows), "orders", settings.channels["orders"], settings, "f")
    assert len(out.events) == 1
    reasons = dict(zip(out.rejects["order_id"], out.rejects["reason"]))
    assert "unknown event type exploded" in reasons["O2"]
    assert "amount is not a number" in reasons["O3"]
    assert "cannot parse timestamp" in reasons["O4"]
    assert "unknown currency XYZ" in reasons["O5"]
    assert list(out.rejects["source_row"]) == [3, 4, 5, 6]


def test_missing_required_column_names_file_and_column(settings: Settings) -> None:
    df = _orders([ORDER]).drop(columns=["order_date"])
    with pytest.raises(MissingColumns, match=r"raw/x\.csv.*'order_date'"):
        canonicalise(df, "orders", settings.channels["orders"], settings, "raw/x.csv")


def test_timestamp_units() -> None:
    ms = parse_timestamps(pd.Series(["1782900000000"]), "ms", None, "UTC")
    assert ms.iloc[0] == pd.Timestamp(1782900000, unit="s", tz="UTC")
    iso = parse_timestamps(pd.Series(["2026-07-01T12:00:00+02:00", "2026-07-01T10:00:00Z"]), "iso8601", None, "UTC")
    assert iso.iloc[0] == iso.iloc[1] == pd.Timestamp("2026-07-01 10:00", tz="UTC")
    naive = parse_timestamps(pd.Series(["2026-01-01T12:00:00", "2026-01-01T12:00:00+00:00"]), "iso8601", None, "Europe/Berlin")
    assert naive.iloc[0] == pd.Timestamp("2026-01-01 11:00", tz="UTC")
    assert naive.iloc[1] == pd.Timestamp("2026-01-01 12:00", tz="UTC")


def test_pii_hashing_normalises_and_keeps_nulls() -> None:
    from ingestion.canonical import hash_pii

    phones = hash_pii(pd.Series(["+49-170-555 1234", "+4917055512 34", None, "  "]), "salt", "phone")
    assert phones.iloc[0] == phones.iloc[1] and len(phones.iloc[0]) == 64
    assert phones.iloc[2] is None and phones.iloc[3] is None
    assert hash_pii(pd.Series(["a@b.c"]), "other", "email").iloc[0] != hash_pii(pd.Series(["a@b.c"]), "salt", "email").iloc[0]


def test_channel_without_id_column_gets_stable_natural_key_ids(settings: Settings) -> None:
    from persona.config import ChannelConfig

    cfg = ChannelConfig(path="x", format="csv", columns={"user_id": "c", "timestamp": "d", "quantity": "q",
                                                         "amount": "a"}, event_type="purchase", currency="EUR")
    rows = pd.DataFrame({"c": ["u1", "u1", "u1", "u2"], "d": ["2026-07-01T10:00:00Z", "2026-07-01T12:00:00+02:00",
                                                             "2026-07-01T10:00:00Z", "2026-07-01T10:00:00Z"],
                         "q": ["1", "1.0", "2", "1"], "a": ["9.99", "9.990", "9.99", "9.99"], "source_row": [2, 3, 4, 5]})
    ids = canonicalise(rows, "till", cfg, settings, "f").events["event_id"]
    assert ids.iloc[0] == ids.iloc[1]  # same instant, same numbers written differently: the same event
    assert ids.iloc[0] != ids.iloc[2] and ids.iloc[0] != ids.iloc[3]
    again = canonicalise(rows.iloc[::-1].reset_index(drop=True), "till", cfg, settings, "f").events["event_id"]
    assert set(again) == set(ids)


AMBIGUOUS, SKIPPED = "2026-10-25 02:30:00", "2026-03-29 02:30:00"  # Europe/Berlin: clocks back / forward


@pytest.mark.parametrize("ambiguous,nonexistent,want", [
    ("earliest", "shift_forward", ["2026-10-25 00:30", "2026-03-29 01:00"]),  # first instant (CEST); next valid
    ("latest", "shift_forward", ["2026-10-25 01:30", "2026-03-29 01:00"]),  # second instant (CET)
    ("quarantine", "quarantine", [None, None]),
])
def test_dst_local_times_follow_the_configured_policy(settings: Settings, ambiguous: str, nonexistent: str,
                                                      want: list) -> None:
    spec = settings.channels["orders"].timestamp.model_copy(update={"ambiguous": ambiguous, "nonexistent": nonexistent})
    cfg = settings.channels["orders"].model_copy(update={"timestamp": spec})
    rows = [{**ORDER, "order_id": "A", "order_date": AMBIGUOUS}, {**ORDER, "order_id": "S", "order_date": SKIPPED}]
    out = canonicalise(_orders(rows), "orders", cfg, settings, "raw/orders/dst.csv")
    got = dict(zip(out.events["event_id"], out.events["timestamp"]))
    for order_id, expected in zip("AS", want):
        key = f"orders:{order_id}|purchase"
        if expected is None:
            assert key not in got
        else:
            assert got[key] == pd.Timestamp(expected, tz="UTC")
    if ambiguous == "quarantine":
        reasons = dict(zip(out.rejects["order_id"], out.rejects["reason"]))
        assert set(reasons) == {"A", "S"}
        assert all("is ambiguous or does not exist in Europe/Berlin" in r for r in reasons.values())
        assert set(out.rejects["column"]) == {"timestamp"}
