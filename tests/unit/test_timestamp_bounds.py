"""Timestamps have no built-in era: plausibility bounds are configuration, relative to the data, and
every quarantine reason names the bound it broke."""

from __future__ import annotations

import pandas as pd

from base.config import TimestampBounds
from tests.unit.test_gate import NOW, events, gate
from validation.gate import GateResult, timestamp_bounds


def in_1997(n: int) -> pd.DataFrame:
    frame = events(n)
    frame["timestamp"] = pd.Timestamp("1997-03-01", tz="UTC") + pd.to_timedelta(range(n), unit="D")
    return frame


def reason_of(result: GateResult, row: int) -> str:
    return result.quarantined.loc[result.quarantined["source_row"] == row, "reason"].iloc[0]


def test_an_export_from_1997_passes_the_default_bounds() -> None:
    result = gate(in_1997(12))
    assert result.success and len(result.accepted) == 12


def test_an_epoch_mix_up_is_quarantined_below_the_bound_relative_to_the_newest_event() -> None:
    frame = in_1997(12)
    frame.loc[3, "timestamp"] = pd.Timestamp("1970-01-11", tz="UTC")  # seconds read as milliseconds
    result = gate(frame)
    assert len(result.accepted) == 11
    reason = reason_of(result, 5)
    assert reason.startswith("expect_column_values_to_be_between(timestamp): got 1970-01-11")
    assert "below the minimum 1987-" in reason
    assert "the newest event 1997-03-12" in reason and "validation.timestamps.max_span_days=3650" in reason


def test_a_future_event_names_now_and_the_future_tolerance() -> None:
    frame = in_1997(6)
    frame.loc[0, "timestamp"] = NOW + pd.Timedelta(days=3)
    result = gate(frame, timestamps=TimestampBounds(max_future_hours=12))
    reason = reason_of(result, 2)
    assert "above the maximum 2026-07-02 00:00:00Z (now plus validation.timestamps.max_future_hours=12)" in reason
    assert len(result.accepted) == 5  # the future row does not drag the lower bound with it


def test_a_configured_floor_is_named_and_a_narrower_span_moves_the_bound() -> None:
    floor = gate(in_1997(6), timestamps=TimestampBounds(earliest="2000-01-01"))
    assert floor.accepted.empty and len(floor.quarantined) == 6
    assert "below the minimum 2000-01-01Z (validation.timestamps.earliest)" in reason_of(floor, 2)
    span = gate(in_1997(40), timestamps=TimestampBounds(max_span_days=30))
    assert len(span.accepted) == 31  # 1997-04-09 minus 30 days keeps the last 31 days
    assert "validation.timestamps.max_span_days=30" in reason_of(span, 2)


def test_amount_and_quantity_reasons_name_their_bounds_too() -> None:
    frame = events(6)
    frame.loc[0, "amount"] = -5.0
    frame.loc[3, "quantity"] = 5000.0
    result = gate(frame)
    assert "below the minimum 0" in reason_of(result, 2)
    assert "above the maximum 1000" in reason_of(result, 5)


def test_bounds_follow_the_newest_plausible_event() -> None:
    ts = pd.Series(pd.to_datetime(["1997-01-01", "1998-06-30", "2199-01-01"], utc=True))
    bounds = timestamp_bounds(ts, TimestampBounds(max_span_days=365), NOW)
    assert bounds.low == pd.Timestamp("1997-06-30", tz="UTC")
    assert bounds.high == NOW + pd.Timedelta(hours=24)


def test_a_file_of_only_1970_rows_is_caught_once_the_store_has_newer_events() -> None:
    alone = in_1997(5).assign(timestamp=pd.Timestamp("1970-01-11", tz="UTC"))
    assert gate(alone).success  # its own newest event is the only reference: `earliest` guards this case
    bounds = timestamp_bounds(alone["timestamp"], TimestampBounds(), NOW, stored=pd.Timestamp("1997-06-01", tz="UTC"))
    assert bounds.low == pd.Timestamp("1987-06-04", tz="UTC") and "the newest event 1997-06-01" in bounds.low_text
