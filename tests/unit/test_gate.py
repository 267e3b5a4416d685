"""The data-quality gate: a real Great Expectations checkpoint splits accepted / quarantined rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from base.schema import CANONICAL_COLUMNS
from validation.gate import GateResult, run_gate
from base.config import ChannelConfig
from validation.quarantine import QUARANTINE_COLUMNS

NOW = pd.Timestamp("2026-07-01 12:00", tz="UTC")
PROJECT = Path(__file__).resolve().parents[2]


def events(n: int, *, source: str = "raw/web/a.csv") -> pd.DataFrame:
    """``n`` valid canonical events (every third one a purchase), source rows 2..n+1."""
    purchase = np.arange(n) % 3 == 0
    frame = pd.DataFrame({c: pd.Series([None] * n, dtype=object) for c in CANONICAL_COLUMNS})
    frame["event_id"] = [f"web:{i}" for i in range(n)]
    frame["user_id"] = [f"u{i % 4}" for i in range(n)]
    frame["event_type"] = np.where(purchase, "purchase", "page_view")
    frame["channel"] = "web"
    frame["timestamp"] = pd.Timestamp("2026-06-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="min")
    frame["amount"] = np.where(purchase, 20.0 + np.arange(n), np.nan)
    frame["currency"] = ["EUR" if p else None for p in purchase]
    frame["quantity"] = np.where(purchase, 1.0, np.nan)
    frame["source_file"] = source
    frame["source_row"] = np.arange(n, dtype="int64") + 2
    return frame


def gate(frame: pd.DataFrame, **kwargs: object) -> GateResult:
    """Run the gate with a fixed clock and batch id."""
    return run_gate(frame, batch_id="web-test", now=NOW, **kwargs)  # type: ignore[arg-type]


def test_importing_the_gate_does_not_import_great_expectations() -> None:
    code = "import sys, validation.gate; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_clean_batch_is_accepted_whole() -> None:
    batch = events(12)
    result = gate(batch)
    assert result.success and not result.batch_failed and result.failures == []
    assert result.quarantined.empty and list(result.quarantined.columns) == list(QUARANTINE_COLUMNS)
    pd.testing.assert_frame_equal(result.accepted, batch)
    assert result.statistics["evaluated_expectations"] >= 15  # includes the purchase median check
    assert result.statistics["unsuccessful_expectations"] == 0


BAD_ROWS = {
    "bad event type": ({"event_type": "teleport"}, "expect_column_values_to_be_in_set", "event_type"),
    "null user": ({"user_id": None}, "expect_column_values_to_not_be_null", "user_id"),
    "negative amount": ({"amount": -5.0}, "expect_column_values_to_be_between", "amount"),
    "purchase without amount": ({"amount": np.nan, "currency": None}, "expect_column_values_to_not_be_null", "amount"),
    "future timestamp": ({"timestamp": NOW + pd.Timedelta(days=2)}, "expect_column_values_to_be_between", "timestamp"),
    "ancient timestamp": ({"timestamp": pd.Timestamp("1999-12-31", tz="UTC")}, "expect_column_values_to_be_between", "timestamp"),
    "foreign currency": ({"currency": "USD"}, "expect_column_values_to_be_in_set", "currency"),
    "huge quantity": ({"quantity": 5000.0}, "expect_column_values_to_be_between", "quantity"),
}


@pytest.mark.parametrize("change,expectation,column", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_bad_row_is_quarantined_with_its_source(change: dict, expectation: str, column: str) -> None:
    batch = events(9)
    batch.loc[6, "source_file"] = "raw/web/bad.csv"  # row 6 is a purchase
    for key, value in change.items():
        batch[key] = batch[key].astype(object) if value is None else batch[key]
        batch.loc[6, key] = value
    result = gate(batch)
    assert not result.success and not result.batch_failed
    assert len(result.quarantined) == 1 and len(result.accepted) == 8
    record = result.quarantined.iloc[0]
    assert (record["source_file"], record["source_row"]) == ("raw/web/bad.csv", 8)
    assert record["batch_id"] == "web-test"
    assert record["check"] == expectation and record["column"] == column
    assert record["reason"].startswith(f"{expectation}({column}")
    assert json.loads(record["original"])["event_id"] == "web:6"
    assert 6 not in result.accepted.index
    assert any(f.startswith(f"{expectation}({column}") and f.endswith(": 1 rows") for f in result.failures)


def test_rows_map_back_through_a_shuffled_index_and_reasons_list_every_failure() -> None:
    batch = events(30).sample(frac=1.0, random_state=3)  # index no longer 0..n-1
    batch.index = batch.index + 1000
    batch.loc[1004, "event_type"] = "teleport"
    batch.loc[1010, ["user_id", "channel"]] = None
    batch.loc[1021, "quantity"] = -1.0
    result = gate(batch)
    assert len(result.accepted) + len(result.quarantined) == len(batch)
    assert sorted(result.quarantined["source_row"]) == [6, 12, 23]
    assert set(result.accepted.index) == set(batch.index) - {1004, 1010, 1021}
    pd.testing.assert_frame_equal(result.accepted, batch.drop(index=[1004, 1010, 1021]))
    double = result.quarantined.set_index("source_row").loc[12]
    assert "(user_id)" in double["reason"] and "(channel)" in double["reason"]
    assert double["column"] == "user_id,channel"


def test_many_bad_rows_are_all_found() -> None:
    batch = events(3000)
    bad = np.arange(5, 3000, 7)
    batch.loc[bad, "channel"] = None
    result = gate(batch)
    assert not result.batch_failed
    assert sorted(result.quarantined["source_row"]) == sorted(bad + 2)  # more than GX's partial cap of 20
    assert len(result.accepted) == 3000 - len(bad)


def test_missing_column_quarantines_the_whole_batch() -> None:
    batch = events(5).drop(columns=["channel"])
    result = gate(batch)
    assert result.batch_failed and not result.success
    assert result.accepted.empty and len(result.quarantined) == 5
    assert sorted(result.quarantined["source_row"]) == [2, 3, 4, 5, 6]
    assert any("expect_table_columns_to_match_set" in f and "'channel'" in f for f in result.failures)
    assert result.quarantined["reason"].str.startswith("batch failed:").all()


def test_duplicate_event_ids_fail_the_batch() -> None:
    batch = events(6)
    batch.loc[4, "event_id"] = batch.loc[1, "event_id"]
    result = gate(batch)
    assert result.batch_failed and result.accepted.empty and len(result.quarantined) == 6
    assert any(f.startswith("expect_column_values_to_be_unique(event_id)") for f in result.failures)


def test_implausible_purchase_median_fails_the_batch() -> None:
    batch = events(9)
    batch.loc[batch["event_type"] == "purchase", "amount"] = 0.10  # valid per row, absurd as a median
    result = gate(batch)
    assert result.batch_failed and result.accepted.empty
    assert any(f.startswith("expect_column_median_to_be_between(amount") for f in result.failures)


def test_batch_without_purchases_skips_the_median_check() -> None:
    batch = events(9)
    batch["event_type"] = "page_view"
    batch[["amount", "currency", "quantity"]] = None
    result = gate(batch)
    assert result.success and len(result.accepted) == 9


@pytest.mark.parametrize("frame", [events(3).iloc[0:0], pd.DataFrame()], ids=["no rows", "no columns"])
def test_empty_batch_fails_without_crashing(frame: pd.DataFrame) -> None:
    result = gate(frame)
    assert result.batch_failed and not result.success
    assert result.accepted.empty and result.quarantined.empty
    assert any("batch is empty" in f for f in result.failures)


def test_base_currency_is_a_parameter() -> None:
    result = run_gate(events(6), batch_id="b", base_currency="USD", now=NOW)
    assert len(result.quarantined) == 2  # both EUR purchases
    assert set(result.quarantined["column"]) == {"currency"}


@pytest.fixture(scope="module")
def file_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GateResult, GateResult]:
    """Two runs against one file-backed GX context."""
    root = tmp_path_factory.mktemp("gx")
    first = gate(events(6), context_root=root)
    bad = events(6)
    bad.loc[2, "event_type"] = "teleport"
    second = gate(bad, context_root=root)
    return root, first, second


def test_file_context_builds_data_docs(file_context: tuple[Path, GateResult, GateResult]) -> None:
    root, first, _ = file_context
    assert first.success
    site = root / "uncommitted" / "data_docs" / "local_site"
    assert (site / "index.html").is_file()
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "persona_canonical_rows" in index and "persona_canonical_batches" in index
    config = (root / "great_expectations.yml").read_text(encoding="utf-8")
    assert "analytics_enabled: false" in config


def test_second_run_in_same_context_works(file_context: tuple[Path, GateResult, GateResult]) -> None:
    root, _, second = file_context
    assert not second.success and len(second.quarantined) == 1 and len(second.accepted) == 5
    results = [p.relative_to(root / "uncommitted" / "validations").parts
               for p in (root / "uncommitted" / "validations").rglob("*.json")]
    assert len(results) == 4  # per run: one result of the row suite, one of the batch suite
    assert {parts[0] for parts in results} == {"persona_canonical_rows", "persona_canonical_batches"}
    assert {parts[1] for parts in results} == {"web-test"}  # run name


def test_one_session_serves_many_batches_and_builds_docs_once(tmp_path: Path) -> None:
    from validation.gate import GateSession

    session = GateSession(now=NOW, context_root=tmp_path / "gx")
    good, bad = events(9), events(9)
    bad.loc[3, "event_type"] = "teleport"
    results = [session.check_events(b, batch_id=f"web-{i}") for i, b in enumerate((good, bad, good))]
    assert [len(r.quarantined) for r in results] == [0, 1, 0]
    assert not list((tmp_path / "gx" / "uncommitted").rglob("*.html"))  # nothing rendered per batch
    index = session.build_docs()
    assert index is not None and index.is_file()
    pages = list((index.parent / "validations").rglob("*.html"))
    assert {p.relative_to(index.parent / "validations").parts[1] for p in pages} == {"web-0", "web-1", "web-2"}
    assert session.seconds > 0


def _raw_cfg(unit: str = "ms") -> "ChannelConfig":
    from base.config import ChannelConfig

    return ChannelConfig(path="x", format="csv", columns={"event_id": "id", "timestamp": "t", "event_type": "e",
                                                          "amount": "total"},
                         timestamp={"unit": unit})


def _raw(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"id": [str(i) for i in range(n)], "t": [str(1782900000000 + i) for i in range(n)],
                         "e": ["buy"] * n, "total": ["12.50"] * n}, dtype=object)


def test_raw_shape_suite_passes_a_plausible_file() -> None:
    from validation.gate import GateSession

    assert GateSession(now=NOW).check_raw(_raw(), channel="shop", cfg=_raw_cfg(), batch_id="b") == []


@pytest.mark.parametrize("change,expected", [
    (lambda f: f.drop(columns=["total"]), "expect_table_columns_to_match_set"),
    (lambda f: f.assign(t=(f["t"].str.slice(0, 10))), "expect_column_values_to_match_regex(t)"),  # seconds, not ms
    (lambda f: f.assign(total="n/a"), "expect_column_values_to_match_regex(total)"),
    (lambda f: f.assign(id=None), "expect_column_values_to_not_be_null(id)"),
], ids=["missing column", "unit drift", "amount not numeric", "ids gone"])
def test_raw_shape_suite_fails_the_batch(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    from validation.gate import GateSession

    failures = GateSession(now=NOW).check_raw(change(_raw()), channel="shop", cfg=_raw_cfg(), batch_id="b")
    assert any(f.startswith(expected) for f in failures), failures


def test_outlier_flag_column_is_part_of_the_canonical_batch() -> None:
    batch = events(9)
    batch["is_outlier"] = False
    batch.loc[3, "is_outlier"] = True
    result = gate(batch)
    assert result.success and result.accepted["is_outlier"].sum() == 1


def test_raw_shape_sample_is_even_and_bounded() -> None:
    from validation.raw_suite import shape_sample

    frame = _raw(1000)
    assert len(shape_sample(frame, limit=2000)) == 1000
    sample = shape_sample(frame, limit=300)
    assert len(sample) <= 300 and sample.index[0] == 0 and len(set(pd.Series(sample.index).diff().dropna())) == 1


def test_validation_results_of_old_runs_are_pruned(tmp_path: Path) -> None:
    from validation.gate import GateSession

    root = tmp_path / "gx"
    for _ in range(4):  # four ingest runs (sessions), two batches each
        session = GateSession(now=NOW, context_root=root, keep_runs=2)
        for b in ("web-a", "web-b"):
            session.check_events(events(6), batch_id=b)
        session.build_docs()
    results = root / "uncommitted" / "validations"
    run_times = {p.parent.name for p in results.rglob("*.json")}
    assert len(run_times) == 2  # only the two latest runs are kept
    assert len(list(results.rglob("*.json"))) == 2 * 2 * 2  # runs x batches x suites
    pages = root / "uncommitted" / "data_docs" / "local_site" / "validations"
    assert {p.parent.name for p in pages.rglob("*.html")} == run_times  # their Data Docs pages, no others
    assert len(run_times | {session.run_time.strftime("%Y%m%dT%H%M%S.%fZ")}) == 2  # the newest run is kept
