"""The ledger (issue 13): a torn last line is the only unreadable line a run may pass over."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.ledger import BatchRecord, LedgerCorrupt, append_torn_safe, read_ledger


def _record(i: int) -> BatchRecord:
    return BatchRecord(batch_id=f"b{i}", channel="web", file=f"raw/web/{i}.jsonl", sha256=f"{i:064d}", rows_read=1,
                       accepted=1, quarantined=0, duplicates=0, status="accepted", message="", processed_at="t")


def test_an_unreadable_line_in_the_middle_stops_the_run(tmp_path: Path) -> None:
    ledger = tmp_path / "batches.jsonl"
    for i in range(3):
        append_torn_safe(ledger, _record(i))
    lines = ledger.read_bytes().split(b"\n")
    lines[1] = lines[1][:20] + b"\x00garbage"
    ledger.write_bytes(b"\n".join(lines))
    with pytest.raises(LedgerCorrupt, match=r"batches.jsonl line 2 cannot be read"):
        read_ledger(ledger)


def test_a_torn_tail_is_ignored_then_cut_not_healed_into_the_middle(tmp_path: Path) -> None:
    ledger = tmp_path / "batches.jsonl"
    append_torn_safe(ledger, _record(0))
    with ledger.open("ab") as f:
        f.write(b'{"batch_id": "b1", "chan')  # a crash mid-append
    assert [r.batch_id for r in read_ledger(ledger)] == ["b0"]
    append_torn_safe(ledger, _record(2))
    assert [r.batch_id for r in read_ledger(ledger)] == ["b0", "b2"]
    assert b"\"chan\n" not in ledger.read_bytes() and ledger.read_bytes().count(b"\n") == 2


def test_a_whole_last_record_without_its_newline_counts(tmp_path: Path) -> None:
    ledger = tmp_path / "batches.jsonl"
    append_torn_safe(ledger, _record(0))
    append_torn_safe(ledger, _record(1))
    ledger.write_bytes(ledger.read_bytes().rstrip(b"\n"))
    assert [r.batch_id for r in read_ledger(ledger)] == ["b0", "b1"]
    append_torn_safe(ledger, _record(2))
    assert [r.batch_id for r in read_ledger(ledger)] == ["b0", "b1", "b2"]
