"""Channel readers: every unreadable row is reported with its line number, the rest is read."""

import gzip
from pathlib import Path

from ingestion.readers import read_channel_file
from persona.config import ChannelConfig


def _cfg(fmt: str, delimiter: str = ",") -> ChannelConfig:
    return ChannelConfig(path="x", format=fmt, delimiter=delimiter, columns={"timestamp": "ts"})


def test_csv_bad_field_count_is_rejected_with_line_number(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("id;ts;v\n1;2026-01-01;a\n2;2026-01-02\n3;2026-01-03;c\n")
    batch = read_channel_file(p, _cfg("csv", ";"))
    assert batch.error is None
    assert list(batch.rows["id"]) == ["1", "3"]
    assert list(batch.rows["source_row"]) == [2, 4]
    assert batch.rejects[0][0] == 3 and "expected 3 fields" in batch.rejects[0][1]


def test_whitespace_delimiter_and_gzip(tmp_path: Path) -> None:
    p = tmp_path / "a.txt.gz"
    p.write_bytes(gzip.compress(b"id   ts\t  v\n1  2026-01-01   x\n\n2 2026-01-02 y\n"))
    batch = read_channel_file(p, _cfg("csv", "whitespace"))
    assert list(batch.rows["v"]) == ["x", "y"]
    assert list(batch.rows["source_row"]) == [2, 4]


def test_non_utf8_line_is_rejected_and_rest_read(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"id,ts\n1,a\n2,\xff\xfe\n3,c\n")
    batch = read_channel_file(p, _cfg("csv"))
    assert list(batch.rows["id"]) == ["1", "3"]
    assert batch.rejects[0][0] == 3 and "UTF-8" in batch.rejects[0][1]


def test_jsonl_malformed_line_named(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"ts": "x", "n": 1}\n{"ts": "y", \n[1,2]\n{"ts": "z", "n": {"a": 1}}\n')
    batch = read_channel_file(p, _cfg("jsonl"))
    assert list(batch.rows["ts"]) == ["x", "z"]
    assert list(batch.rows["source_row"]) == [1, 4]
    assert batch.rows["n"].iloc[1] == '{"a": 1}'
    assert [r[0] for r in batch.rejects] == [2, 3]
    assert "malformed JSON" in batch.rejects[0][1] and "not an object" in batch.rejects[1][1]


def test_empty_and_unreadable_files_are_errors_not_crashes(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert "empty" in (read_channel_file(empty, _cfg("csv")).error or "")
    bad_gz = tmp_path / "b.csv.gz"
    bad_gz.write_bytes(b"\x1f\x8bnot gzip")
    err = read_channel_file(bad_gz, _cfg("csv")).error or ""
    assert str(bad_gz) in err
