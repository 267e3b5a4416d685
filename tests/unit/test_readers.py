"""Channel readers: every unreadable row is reported with its line number, the rest is read."""

import gzip
from pathlib import Path

from ingestion.readers import read_channel_file
from base.config import ChannelConfig


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


def test_jsonl_bulk_path_keeps_numbers_and_nested_values_as_text(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"ts": 1782900000, "v": 1.5, "o": {"k": [1]}, "n": null}\n\n  \n{"ts": 1782900001, "v": 2, "o": null}\n')
    batch = read_channel_file(p, _cfg("jsonl"))
    assert batch.rejects == []
    assert list(batch.rows["ts"]) == ["1782900000", "1782900001"]
    assert list(batch.rows["source_row"]) == [1, 4]
    assert batch.rows["o"].iloc[0] == '{"k": [1]}' and batch.rows["o"].iloc[1] is None
    assert batch.rows["n"].isna().all()


def test_jsonl_mixed_types_fall_back_per_line(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"ts": 1}\n{"ts": "two"}\n{"ts": 3, }\n')
    batch = read_channel_file(p, _cfg("jsonl"))
    assert list(batch.rows["ts"]) == ["1", "two"]
    assert [r[0] for r in batch.rejects] == [3] and "malformed JSON" in batch.rejects[0][1]


def test_parquet_file_read_as_text(tmp_path: Path) -> None:
    import pandas as pd

    p = tmp_path / "a.parquet"
    pd.DataFrame({"ts": [1, 2], "x": ["a", None]}).to_parquet(p)
    batch = read_channel_file(p, _cfg("parquet"))
    assert list(batch.rows["ts"]) == ["1", "2"] and batch.rows["x"].iloc[1] is None
    assert list(batch.rows["source_row"]) == [1, 2]
    garbage = tmp_path / "b.parquet"
    garbage.write_bytes(b"not parquet")
    assert str(garbage) in (read_channel_file(garbage, _cfg("parquet")).error or "")


def test_repeated_and_reserved_column_names_are_renamed_not_fatal(tmp_path: Path) -> None:
    """A header naming a column twice, or a column called ``source_row`` (ours), is renamed the way
    pandas does (``x.1``) instead of failing the file later on."""
    p = tmp_path / "a.csv"
    p.write_text("ts,amount,amount,source_row\n2026-01-01,1,2,x\n")
    batch = read_channel_file(p, _cfg("csv"))
    assert batch.table.column_names == ["ts", "amount", "amount.1", "source_row.1", "source_row"]
    assert batch.rows["amount.1"].tolist() == ["2"] and batch.rows["source_row"].tolist() == [2]


def test_jsonl_times_keep_their_text_so_offsets_survive(tmp_path: Path) -> None:
    """Arrow would read ISO strings as zone-less UTC times (losing the offset, so a channel in local
    time would shift them); they stay text, also when such a field first appears in a later block."""
    from ingestion import readers

    p = tmp_path / "a.jsonl"
    early = '{"ts": "2026-07-01T10:00:00+02:00", "n": {"t": "2026-07-01T10:00:00"}}\n'
    late = '{"ts": "2026-07-02T10:00:00+02:00", "later": "2026-07-03T00:00:00Z"}\n'
    p.write_text(early * (readers.JSON_PROBE // len(early) + 10) + late)
    batch = read_channel_file(p, _cfg("jsonl"))
    assert batch.error is None and batch.rejects == []
    assert batch.rows["ts"].iloc[0] == "2026-07-01T10:00:00+02:00"
    assert batch.rows["later"].iloc[-1] == "2026-07-03T00:00:00Z"
    assert batch.rows["n"].iloc[0].startswith('{"t": "2026-07-01')


def test_jsonl_spliced_lines_are_rejected_and_the_rest_read_in_bulk(tmp_path: Path) -> None:
    """A truncated line spliced into the next still looks like an object (``{...}``) and spoils Arrow's
    bulk parse; the lines a JSON parser refuses become rejects and the rest reads exactly as the
    line-by-line reference reads it (same columns, values and row numbers; Arrow orders columns its way)."""
    import numpy as np

    from ingestion import readers

    good = [f'{{"id": "e{i}", "ts": "2026-07-01T10:{i % 60:02d}:00Z", "n": {i}, "o": {{"k": [{i}]}}, "x": null}}'
            for i in range(40)]
    spliced = '{"id": "e99", "ts": "2026-07-01T1{"id": "e98", "ts": "2026-07-01T10:00:00Z"}'
    lines = [*good[:10], spliced, *good[10:30], '{"id": "e97", "n": 1,, "x": 2}', *good[30:]]
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join(lines) + "\n")
    batch = read_channel_file(p, _cfg("jsonl"))
    assert [r[0] for r in batch.rejects] == [11, 32]
    assert all("malformed JSON" in r[1] for r in batch.rejects) and batch.rejects[0][2] == spliced
    kept = [i for i in range(1, len(lines) + 1) if i not in (11, 32)]
    reference, more = readers._jsonl_per_line([lines[i - 1].encode() for i in kept], np.asarray(kept))
    assert more == []
    names = sorted(reference.column_names)  # Arrow puts the fields read as text first
    assert sorted(batch.table.column_names) == names and batch.table.select(names).equals(reference.select(names))
    assert batch.rows["o"].iloc[3] == '{"k": [3]}' and batch.rows["source_row"].tolist() == kept
