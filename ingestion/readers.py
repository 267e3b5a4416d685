"""Read one channel file into a raw frame of strings, keeping every unreadable row as a reject."""

from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from persona.config import ChannelConfig

_WHITESPACE = re.compile(rb"[ \t]+")


@dataclass
class RawBatch:
    """A file's rows as read: ``rows`` has one column per source column plus ``source_row``."""

    path: Path
    rows: pd.DataFrame
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    """(line number, reason, original text) for rows that could not be read."""
    error: str | None = None
    """A whole-file problem (unreadable, empty); set when nothing could be read."""


def _load_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


def _split_valid_utf8(data: bytes) -> tuple[list[bytes], list[int], list[tuple[int, str, str]]]:
    """Split into lines; lines that are not UTF-8 become rejects. Returns (lines, line numbers, rejects)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        data.decode("utf-8")
        return lines, list(range(1, len(lines) + 1)), []
    except UnicodeDecodeError:
        pass
    kept, numbers, rejects = [], [], []
    for i, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            rejects.append((i, f"not valid UTF-8 at byte {e.start}", line.decode("utf-8", "replace")))
            continue
        kept.append(line)
        numbers.append(i)
    return kept, numbers, rejects


def _read_csv(lines: list[bytes], numbers: list[int], cfg: ChannelConfig) -> tuple[pd.DataFrame, list]:
    import pyarrow.csv as pcsv

    delimiter = cfg.delimiter
    if delimiter == "whitespace":
        lines = [_WHITESPACE.sub(b"\t", ln.strip()) for ln in lines]
        delimiter = "\t"
    # drop blank lines ourselves so numbering stays exact
    keep = [i for i, ln in enumerate(lines) if ln.strip()]
    lines = [lines[i] for i in keep]
    numbers = [numbers[i] for i in keep]
    if not lines:
        raise ValueError("file is empty")
    bad: list[tuple[int, str]] = []

    def on_invalid(row) -> str:  # type: ignore[no-untyped-def]
        bad.append((row.number, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.text))
        return "skip"

    header = lines[0].decode("utf-8").split(delimiter)
    table = pcsv.read_csv(
        io.BytesIO(b"\n".join(lines) + b"\n"),
        read_options=pcsv.ReadOptions(use_threads=False),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(
            column_types={name: "string" for name in header}, strings_can_be_null=True
        ),
    )
    frame = table.to_pandas()
    line_no = np.asarray(numbers[1:], dtype="int64")
    bad_positions = {n - 2 for n, _, _ in bad}  # pyarrow numbers lines from 1, header is line 1
    good = np.array([i for i in range(len(line_no)) if i not in bad_positions], dtype="int64")
    frame["source_row"] = line_no[good] if len(good) == len(frame) else np.arange(2, len(frame) + 2)
    rejects = [(int(line_no[n - 2]), reason, text) for n, reason, text in bad]
    return frame, rejects


def _read_jsonl(lines: list[bytes], numbers: list[int]) -> tuple[pd.DataFrame, list]:
    records: list[dict] = []
    rows: list[int] = []
    rejects: list[tuple[int, str, str]] = []
    for line, number in zip(lines, numbers):
        if not line.strip():
            continue
        text = line.decode("utf-8")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            rejects.append((number, f"malformed JSON: {e.msg} at column {e.colno}", text))
            continue
        if not isinstance(obj, dict):
            rejects.append((number, "JSON line is not an object", text))
            continue
        records.append(obj)
        rows.append(number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame = frame.astype(object).where(frame.notna(), None)
    for col in frame.columns:
        frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    frame["source_row"] = np.asarray(rows, dtype="int64")
    return frame, rejects


def read_channel_file(path: Path, cfg: ChannelConfig) -> RawBatch:
    """Read ``path`` as the channel's format; never raises for bad content (it is reported instead)."""
    try:
        if cfg.format == "parquet":
            frame = pd.read_parquet(path)
            frame = frame.astype(object).where(frame.notna(), None).astype("string").astype(object)
            frame["source_row"] = np.arange(1, len(frame) + 1, dtype="int64")
            return RawBatch(path, frame)
        data = _load_bytes(path)
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as e:
        return RawBatch(path, pd.DataFrame(), error=f"{path}: cannot read file: {e}")
    if not data.strip():
        return RawBatch(path, pd.DataFrame(), error=f"{path}: file is empty")
    lines, numbers, rejects = _split_valid_utf8(data)
    try:
        if cfg.format == "csv":
            frame, more = _read_csv(lines, numbers, cfg)
        else:
            frame, more = _read_jsonl(lines, numbers)
    except (ValueError, UnicodeDecodeError) as e:
        return RawBatch(path, pd.DataFrame(), rejects=rejects, error=f"{path}: cannot parse {cfg.format}: {e}")
    return RawBatch(path, frame, rejects=rejects + more)
