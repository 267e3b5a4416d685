"""The reader worker (issue 13): files come back in order, as the in-process reader reads them; a file
that kills the worker costs only that file, and the files the worker had not answered yet are read by its
replacement."""

from __future__ import annotations

import json
from pathlib import Path

from base.config import ChannelConfig, ReaderLimits
from ingestion.isolated_reader import IsolatedReader
from ingestion.readers import read_channel_file

CFG = ChannelConfig(path="x", format="jsonl", columns={"timestamp": "ts"})
HOSTILE = "tests.faults.hostile_reader:read"


def _file(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"{path.stem}-{i}", "ts": "2026-01-01T00:00:00Z"}) + "\n"
                            for i in range(n)))
    return path


def test_files_read_ahead_come_back_in_order_and_equal_the_in_process_reader(tmp_path: Path) -> None:
    files = [_file(tmp_path / f"f{i}.jsonl", 10 + i) for i in range(20)]
    with IsolatedReader(ReaderLimits(), HOSTILE) as reader:
        read = list(reader.read_all([(p, CFG) for p in files], ahead=4))
    assert [r.path for r in read] == files
    for raw, path in zip(read, files):
        assert raw.error is None and raw.table.equals(read_channel_file(path, CFG).table)
    assert reader.replaced == 0


def test_a_crash_costs_one_file_and_the_replacement_reads_the_rest(tmp_path: Path) -> None:
    files = [_file(tmp_path / "a.jsonl", 3), _file(tmp_path / "segfault.jsonl", 3),
             *(_file(tmp_path / f"z{i}.jsonl", 5) for i in range(5))]
    with IsolatedReader(ReaderLimits(), HOSTILE) as reader:
        read = list(reader.read_all([(p, CFG) for p in files], ahead=8))
        assert reader.replaced == 1
    assert [r.path for r in read] == files
    assert read[1].error is not None and "segfault.jsonl: reader crashed with signal 11 (SIGSEGV)" in read[1].error
    assert [r.table.num_rows for r in read] == [3, 0, 5, 5, 5, 5, 5]
    assert all(r.error is None for i, r in enumerate(read) if i != 1)
