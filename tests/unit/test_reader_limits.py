"""Reader limits (issue 13): a row or file that breaks a bound is quarantined naming the file, the row
and the bound; the rest of the file is read and nothing reaches pyarrow that could crash it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from base.config import ChannelConfig, ReaderLimits
from ingestion.readers import nesting_depth, read_channel_file


def _cfg(fmt: str, delimiter: str = ",") -> ChannelConfig:
    return ChannelConfig(path="x", format=fmt, delimiter=delimiter, columns={"timestamp": "ts"})


def _jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = [json.dumps({"id": str(i), "ts": "2026-01-01T00:00:00Z"}).encode() for i in range(5)]


def test_a_json_line_nested_100000_deep_is_one_rejected_row(tmp_path: Path) -> None:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000  # crashed pyarrow's JSON reader (segfault)
    batch = read_channel_file(_jsonl(tmp_path / "a.jsonl", [GOOD[0], deep, *GOOD[1:]]), _cfg("jsonl"))
    assert batch.error is None
    assert list(batch.rows["id"]) == ["0", "1", "2", "3", "4"]
    [(row, reason, text)] = batch.rejects
    assert row == 2 and "nesting depth 100000" in reason and "max_nesting=32" in reason and len(text) < 2000


def test_a_line_of_100000_brackets_is_one_rejected_row_not_a_recursion_error(tmp_path: Path) -> None:
    batch = read_channel_file(_jsonl(tmp_path / "a.jsonl", [*GOOD[:2], b"[" * 100_000, *GOOD[2:]]), _cfg("jsonl"))
    assert batch.error is None and len(batch.rows) == 5
    assert [r[0] for r in batch.rejects] == [3] and "nesting depth" in batch.rejects[0][1]


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]]"}]}') == 3


def test_gzip_bomb_is_stopped_at_the_bound_and_named(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (64 << 20), compresslevel=9))  # ~64 KB → 64 MB
    batch = read_channel_file(bomb, _cfg("jsonl"), ReaderLimits(max_decompressed_bytes=1 << 30,
                                                                max_compression_ratio=200))
    assert batch.error is not None and "bomb.jsonl.gz" in batch.error and "max_compression_ratio=200" in batch.error
    small = ReaderLimits(max_decompressed_bytes=1 << 20, max_compression_ratio=1e6)
    assert "max_decompressed_bytes=1048576" in (read_channel_file(bomb, _cfg("jsonl"), small).error or "")


def test_truncated_gzip_is_a_file_error(tmp_path: Path) -> None:
    whole = gzip.compress(b"\n".join(GOOD) + b"\n")
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(whole[: len(whole) // 2])
    batch = read_channel_file(p, _cfg("jsonl"))
    assert batch.error is not None and "cut.jsonl.gz" in batch.error


def test_multi_member_gzip_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "two.jsonl.gz"
    p.write_bytes(gzip.compress(b"\n".join(GOOD[:2]) + b"\n") + gzip.compress(b"\n".join(GOOD[2:]) + b"\n"))
    assert len(read_channel_file(p, _cfg("jsonl")).rows) == 5


def test_a_2mb_csv_field_rejects_its_row_not_the_file(tmp_path: Path) -> None:
    rows = [f"{i},2026-01-01,x" for i in range(200)]
    rows.insert(100, "huge,2026-01-01," + "y" * (2 << 20))
    p = tmp_path / "a.csv"
    p.write_text("id,ts,v\n" + "\n".join(rows) + "\n")
    batch = read_channel_file(p, _cfg("csv"))
    assert batch.error is None and len(batch.rows) == 200
    [(row, reason, text)] = batch.rejects
    assert row == 102 and "max_line_bytes=1048576" in reason and text.startswith("huge,")


def test_a_field_over_the_field_bound_rejects_its_row(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("id,ts,v\n1,2026-01-01,x\n2,2026-01-01," + "z" * 300_000 + "\n3,2026-01-01,y\n")
    batch = read_channel_file(p, _cfg("csv"))
    assert list(batch.rows["id"]) == ["1", "3"]
    assert batch.rejects[0][0] == 3 and "field 'v' is 300000 bytes" in batch.rejects[0][1]


def test_rows_per_file_bound_quarantines_the_file(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "a.jsonl", GOOD)
    batch = read_channel_file(p, _cfg("jsonl"), ReaderLimits(max_rows_per_file=3))
    assert batch.error is not None and "5 lines" in batch.error and "max_rows_per_file=3" in batch.error


def test_bom_crlf_and_header_only(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfid,ts\r\n1,2026-01-01\r\n2,2026-01-02\r\n")
    batch = read_channel_file(p, _cfg("csv"))
    assert batch.rows.columns[0] == "id" and list(batch.rows["ts"]) == ["2026-01-01", "2026-01-02"]
    head = tmp_path / "head.csv"
    head.write_text("id,ts\n")
    assert read_channel_file(head, _cfg("csv")).table.num_rows == 0
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty" in (read_channel_file(empty, _cfg("csv")).error or "")


def test_binary_garbage_is_rejected_row_by_row(tmp_path: Path) -> None:
    p = tmp_path / "junk.jsonl"
    p.write_bytes(GOOD[0] + b"\n" + bytes(range(256)) * 4 + b"\n" + GOOD[1] + b"\n")
    batch = read_channel_file(p, _cfg("jsonl"))
    assert batch.error is None and list(batch.rows["id"]) == ["0", "1"] and len(batch.rejects) >= 1


def test_a_parquet_file_is_bounded_by_its_footer_before_reading(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"ts": ["2026-01-01T00:00:00Z"] * 200_000,
                             "pad": [f"{i * 2654435761 % 2**32:08x}" * 6 for i in range(200_000)]}), p,
                   compression="zstd", use_dictionary=False)  # ~14 MB of values in a few MB
    batch = read_channel_file(p, _cfg("parquet"), ReaderLimits(max_decompressed_bytes=1 << 20))
    assert batch.error is not None and str(p) in batch.error
    assert "row groups decompress to" in batch.error and "max_decompressed_bytes=1048576" in batch.error
    assert "max_compression_ratio" in (read_channel_file(p, _cfg("parquet"), ReaderLimits(
        max_compression_ratio=2)).error or "")
    assert "max_rows_per_file=1000" in (read_channel_file(p, _cfg("parquet"), ReaderLimits(
        max_rows_per_file=1000)).error or "")
    assert read_channel_file(p, _cfg("parquet")).table.num_rows == 200_000  # within the default bounds


def test_the_privacy_door_reads_gzip_within_the_limits(tmp_path: Path) -> None:
    import pytest

    from ingestion.privacy import read_text
    from ingestion.readers import LimitBreached

    bomb = tmp_path / "b.jsonl.gz"
    bomb.write_bytes(gzip.compress(b'{"a":1}\n' * (4 << 20), compresslevel=9))  # 32 MB from ~60 KB
    with pytest.raises(LimitBreached, match="max_compression_ratio"):
        read_text(bomb, ReaderLimits())
    assert read_text(bomb, ReaderLimits(max_compression_ratio=10_000)).count("\n") == 4 << 20
