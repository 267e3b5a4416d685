"""Canonical mapping: UTC timestamps, one currency, hashed PII, clear rejects."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ingestion.canonical import CanonicalTable, MissingColumns, canonicalise, canonicalise_table, hash_pii, parse_timestamps
from base.schema import CANONICAL_COLUMNS, CANONICAL_SCHEMA
from base.config import ChannelConfig, Settings


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
    phones = hash_pii(pd.Series(["+49-170-555 1234", "+4917055512 34", None, "  "]), "salt", "phone")
    assert phones.iloc[0] == phones.iloc[1] and len(phones.iloc[0]) == 64
    assert phones.iloc[2] is None and phones.iloc[3] is None
    assert hash_pii(pd.Series(["a@b.c"]), "other", "email").iloc[0] != hash_pii(pd.Series(["a@b.c"]), "salt", "email").iloc[0]


def test_channel_without_id_column_gets_stable_natural_key_ids(settings: Settings) -> None:
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


# --- the Arrow path (canonicalise_table) ----------------------------------------------------------


def _table(columns: dict[str, list]) -> pa.Table:
    n = len(next(iter(columns.values())))
    return pa.table({**{k: pa.array(v, type=pa.string()) for k, v in columns.items()},
                     "source_row": pa.array(np.arange(2, n + 2), type=pa.int64())})


def _web(timezone: str = "UTC") -> ChannelConfig:
    return ChannelConfig(path="x", format="jsonl", columns={"event_id": "id", "user_id": "u", "timestamp": "ts"},
                         timestamp={"unit": "iso8601", "timezone": timezone}, event_type="page_view")


def test_canonicalise_table_is_arrow_in_and_out_with_the_exact_schema(settings: Settings) -> None:
    raw = _table({"order_id": ["O1", "O2", "O3"], "customer_id": ["u1", None, "u3"], "email": [None, "a@b.c", " "],
                  "status": ["completed", "refunded", "exploded"], "order_date": ["2026-07-01 12:00:00"] * 3,
                  "total": ["10", "2.5", "1"], "currency": ["EUR", "GBP", "EUR"], "qty": ["1", "2", "3"],
                  "category": ["home", "\u3000", None], "sku": ["p1", "p2", "p3"]})
    out = canonicalise_table(raw, "orders", settings.channels["orders"], settings, "raw/orders/a.csv")
    assert isinstance(out, CanonicalTable)
    assert out.events.schema.equals(CANONICAL_SCHEMA)  # same names, order and types
    assert out.events["is_outlier"].null_count == out.events.num_rows == 2
    ev = out.events.to_pydict()
    assert ev["event_id"] == ["orders:O1|purchase", "orders:O2|refund"]  # input order, rejected row left out
    assert ev["user_id"] == ["u1", None] and ev["category"] == ["home", None]  # blank (ideographic space) → null
    assert ev["amount"] == [10.0, round(2.5 * settings.fx_rates["GBP"], 2)] and ev["currency"] == ["EUR", "EUR"]
    assert ev["source_row"] == [2, 3] and ev["channel"] == ["orders"] * 2 and ev["source_file"] == ["raw/orders/a.csv"] * 2
    assert ev["email_hash"][0] is None and len(ev["email_hash"][1]) == 64
    assert ev["timestamp"][0] == pd.Timestamp("2026-07-01 10:00", tz="UTC")
    rejects = out.rejects
    assert isinstance(rejects.index, pd.RangeIndex) and rejects["source_row"].dtype == "int64"
    assert rejects.to_dict("records") == [{**{c: v[2] for c, v in raw.to_pydict().items()},
                                           "check": "canonical_mapping", "column": "event_type",
                                           "reason": "unknown event type exploded"}]


def test_iso_times_fast_and_slow_spellings(settings: Settings) -> None:
    times = ["2026-07-04T02:30:48+02:00", "2026-07-04T00:30:48Z", "2026-07-04 00:30:48.123456Z",
             "2026-01-01T12:00:00", "2026-01-01 12:00:00.5", "2026-07-04T02:30:48-05:30", "2026-02-30T00:00:00Z",
             "soon", None]
    raw = _table({"id": [str(i) for i in range(len(times))], "u": ["u1"] * len(times), "ts": times})
    out = canonicalise_table(raw, "web", _web("Europe/Berlin"), settings, "f")
    got = dict(zip(out.events["event_id"].to_pylist(), out.events["timestamp"].to_pylist()))
    assert got == {
        "web:0": pd.Timestamp("2026-07-04 00:30:48", tz="UTC"),  # offset → UTC
        "web:1": pd.Timestamp("2026-07-04 00:30:48", tz="UTC"),
        "web:2": pd.Timestamp("2026-07-04 00:30:48.123456", tz="UTC"),  # fractional seconds (pandas path)
        "web:3": pd.Timestamp("2026-01-01 11:00", tz="UTC"),  # no offset: local (Berlin winter) time
        "web:4": pd.Timestamp("2026-01-01 11:00:00.5", tz="UTC"),
        "web:5": pd.Timestamp("2026-07-04 08:00:48", tz="UTC"),
    }
    reasons = dict(zip(out.rejects["id"], out.rejects["reason"]))
    assert reasons == {"6": "cannot parse timestamp 2026-02-30T00:00:00Z", "7": "cannot parse timestamp soon",
                       "8": "cannot parse timestamp None"}
    assert out.events.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_ambiguous_local_iso_time_is_quarantined_with_the_dst_reason(settings: Settings) -> None:
    raw = _table({"id": ["A", "B"], "u": ["u1", "u1"], "ts": ["2026-10-25T02:30:00", "2026-10-25T03:30:00"]})
    out = canonicalise_table(raw, "web", _web("Europe/Berlin"), settings, "f")
    assert out.events["event_id"].to_pylist() == ["web:B"]
    assert out.rejects["reason"].tolist() == [
        "local time 2026-10-25T02:30:00 is ambiguous or does not exist in Europe/Berlin "
        "(DST change; see timestamp.ambiguous / timestamp.nonexistent)"]


def test_bad_epochs_are_rejected(settings: Settings) -> None:
    cfg = settings.channels["app"]
    values = ["1782900000000", "1782900000000x", "99999999999999", "1.7829e12", " 1782900000000", None, "-5"]
    raw = _table({"uuid": [f"e{i}" for i in range(len(values))], "customer_ref": ["u1"] * len(values),
                  "device_id": ["d1"] * len(values), "action": ["screen_view"] * len(values), "epoch_ms": values})
    out = canonicalise_table(raw, "app", cfg, settings, "f")
    got = dict(zip(out.events["event_id"].to_pylist(), out.events["timestamp"].to_pylist()))
    instant = pd.Timestamp(1782900000, unit="s", tz="UTC")
    assert got == {"app:e0": instant, "app:e3": instant, "app:e4": instant,  # what pandas' to_numeric accepts
                   "app:e6": pd.Timestamp(-5, unit="ms", tz="UTC")}
    assert out.rejects["reason"].tolist() == ["cannot parse timestamp 1782900000000x",
                                              "cannot parse timestamp 99999999999999",  # beyond 2255
                                              "cannot parse timestamp None"]


def test_amount_spellings_and_first_failing_reason(settings: Settings) -> None:
    rows = [ORDER, {**ORDER, "order_id": "O2", "total": " 12.50 "}, {**ORDER, "order_id": "O3", "total": "1e3"},
            {**ORDER, "order_id": "O4", "total": "12,5", "currency": "XYZ"},
            {**ORDER, "order_id": "O5", "qty": "two", "currency": "XYZ"},
            {**ORDER, "order_id": "O6", "currency": "XYZ", "status": "nope"}]
    out = canonicalise_table(pa.Table.from_pandas(_orders(rows), preserve_index=False), "orders",
                             settings.channels["orders"], settings, "f")
    usd = settings.fx_rates["USD"]
    assert out.events["amount"].to_pylist() == [round(100 * usd, 2), round(12.5 * usd, 2), round(1000 * usd, 2)]
    assert list(zip(out.rejects["column"], out.rejects["reason"])) == [
        ("amount", "amount is not a number: 12,5"), ("quantity", "quantity is not a number: two"),
        ("event_type", "unknown event type nope")]


def test_wrapper_matches_the_arrow_path_and_sliced_or_chunked_input(settings: Settings) -> None:
    rows = [{**ORDER, "order_id": f"O{i}", "total": "x" if i % 5 == 0 else f"{i}.25"} for i in range(30)]
    frame = _orders(rows)
    cfg = settings.channels["orders"]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = canonicalise_table(table, "orders", cfg, settings, "f")
    wrapped = canonicalise(frame, "orders", cfg, settings, "f")
    pd.testing.assert_frame_equal(wrapped.events, arrow.events.to_pandas(coerce_temporal_nanoseconds=True))
    pd.testing.assert_frame_equal(wrapped.rejects, arrow.rejects)
    assert str(wrapped.events["timestamp"].dtype) == "datetime64[ns, UTC]"
    chunked = pa.concat_tables([table.slice(0, 11), table.slice(11)])
    assert canonicalise_table(chunked, "orders", cfg, settings, "f").events.equals(arrow.events)
    part = canonicalise_table(table.slice(7, 10), "orders", cfg, settings, "f")
    alone = canonicalise_table(pa.Table.from_pandas(frame.iloc[7:17], preserve_index=False), "orders", cfg, settings, "f")
    assert part.events.equals(alone.events)
    pd.testing.assert_frame_equal(part.rejects, alone.rejects)


def test_hashed_ids_and_digests_stay_as_stored(settings: Settings) -> None:
    """Values produced by the previous (pandas) implementation: stored ids must never change."""
    cfg = ChannelConfig(path="x", format="csv", columns={"user_id": "c", "timestamp": "d", "quantity": "q",
                                                         "amount": "a"}, event_type="purchase", currency="EUR")
    raw = _table({"c": ["u1", "u2", "u3"], "d": ["2026-07-01T10:00:00Z", "2026-07-01T12:00:00+02:00", "never"],
                  "q": ["1", "2", "1"], "a": ["9.99", "5", "1"]})
    clean = ["till:h11332953837402002273", "till:h15031975660916596279"]
    assert canonicalise_table(raw.slice(0, 2), "till", cfg, settings, "f").events["event_id"].to_pylist() == clean
    # a bad time elsewhere in the file does not change the others' ids (it once made every key a float)
    assert canonicalise_table(raw, "till", cfg, settings, "f").events["event_id"].to_pylist() == clean
    assert hash_pii(pd.Series(["Jane@Example.com "]), "salt", "email").iloc[0] == (
        "d8749a1ac3a0f617edd19411b6a59b14f32feffaf5c1d4a078178610169626f7")  # HMAC-SHA256(salt, "email:jane@example.com")
    assert hash_pii(pd.Series(["+49-170-555 1234"]), "salt", "phone").iloc[0] == (
        "ad62df778fab195032c008c44cf1ff186e1709e7138997006dc10b371affe310")


def test_blank_detection_knows_every_whitespace_character() -> None:
    from base.text_values import blank_to_null

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    values = spaces + [s * 3 for s in spaces] + ["", " x ", "\u200b", None]
    blanked = blank_to_null(pa.array(values, type=pa.string())).to_pylist()
    assert blanked == [None] * (2 * len(spaces) + 1) + [" x ", "\u200b", None]


def test_iso_times_with_blanks_or_odd_zones_never_fail_the_file() -> None:
    """Blanks around a time are ignored; an offset pandas finds outside the usual pattern keeps its
    instant; garbage becomes NaT without shifting its neighbours (it once failed the whole file)."""
    got = parse_timestamps(pd.Series(["2026-07-04T02:30:48Z ", "x+02:00[Europe/Berlin]", "2026-07-04T02:30:48+02",
                                      "2026-07-04T02:30:48", None]), "iso8601", None, "Europe/Berlin")
    assert got.tolist()[:4] == [pd.Timestamp("2026-07-04 02:30:48", tz="UTC"), pd.NaT,
                                pd.Timestamp("2026-07-04 00:30:48", tz="UTC"),
                                pd.Timestamp("2026-07-04 00:30:48", tz="UTC")]
    assert pd.isna(got.iloc[4])


def test_iso_times_with_different_short_offsets_in_one_file() -> None:
    """Pandas returns objects for ``+02`` and ``-05`` mixed; each value is then parsed on its own."""
    got = parse_timestamps(pd.Series(["2026-07-04T02:30:48+02", "2026-07-04T02:30:48-05", "2026-07-04T02:30:48"]),
                           "iso8601", None, "UTC")
    assert got.tolist() == [pd.Timestamp("2026-07-04 00:30:48", tz="UTC"), pd.Timestamp("2026-07-04 07:30:48", tz="UTC"),
                            pd.Timestamp("2026-07-04 02:30:48", tz="UTC")]
