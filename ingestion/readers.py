"""Read one channel file into a raw frame of strings, keeping every unreadable row as a reject.

Whole files are parsed in bulk by pyarrow (CSV and JSON lines); only lines that fail a cheap,
vectorised pre-screen are looked at one by one. A JSON file whose bulk parse fails is screened line by line
with a fast parser and parsed in bulk again without the lines it refuses; only a file that still fails (mixed
types) is read line by line.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from base.config import ChannelConfig, ReaderLimits

if TYPE_CHECKING:
    import pyarrow.parquet as pq

_RUNS_OF_BLANKS = re.compile(rb"[ \t]+")
_EDGE_BLANKS = re.compile(rb"^[ \t]+|[ \t]+$", re.MULTILINE)

JSON_BLOCK = 1 << 22
"""Bytes per JSON parse block: blocks are parsed on Arrow's threads, so a file spans several."""

Reject = tuple[int, str, str]
"""(line number, reason, original text) of a row that could not be read."""


@dataclass
class RawBatch:
    """A file's rows as read: ``table`` has one text column per source column plus ``source_row``."""

    path: Path
    table: pa.Table = field(default_factory=lambda: pa.table({}))
    rejects: list[Reject] = field(default_factory=list)
    """(line number, reason, original text) for rows that could not be read."""
    error: str | None = None
    """A whole-file problem (unreadable, empty); set when nothing could be read."""

    @cached_property
    def rows(self) -> pd.DataFrame:
        """The rows as a pandas frame of Python strings (None for nulls) and ``source_row``."""
        return self.table.to_pandas() if self.table.num_columns else pd.DataFrame()


class LimitBreached(ValueError):
    """A whole file breaks a reader limit (``validation.limits``); the message names file and bound."""


GZIP_FLOOR = 1 << 20
"""A compressed file may always expand to this many bytes, whatever the ratio (tiny files compress oddly)."""


def _gunzip(data: bytes, path: Path, limits: ReaderLimits) -> bytes:
    """Decompress gzip (every member) in steps, stopping as soon as the output passes the limits: a
    bomb never takes more memory than the bound allows. A truncated file raises ``EOFError``."""
    cap = min(limits.max_decompressed_bytes, max(int(limits.max_compression_ratio * len(data)), GZIP_FLOOR))
    out, size, rest = [], 0, data
    while rest:
        d = zlib.decompressobj(wbits=31)
        pending = rest
        while pending and not d.eof:
            chunk = d.decompress(pending, max_length=max(1, cap + 1 - size))
            out.append(chunk)
            size += len(chunk)
            if size > cap:
                raise LimitBreached(
                    f"{path}: decompresses to more than {cap} bytes from {len(data)} (limits: "
                    f"validation.limits.max_decompressed_bytes={limits.max_decompressed_bytes}, "
                    f"max_compression_ratio={limits.max_compression_ratio:g})")
            pending = d.unconsumed_tail
        if not d.eof:
            raise EOFError(f"{path}: compressed file ended before the end-of-stream marker (truncated)")
        rest = d.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            break  # trailing bytes after the last member (as gzip tolerates padding)
    return b"".join(out)


def load_bytes(path: Path, limits: ReaderLimits) -> bytes:
    """A file's bytes, gunzipped within the limits (:class:`LimitBreached`, ``EOFError`` when truncated)."""
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        data = _gunzip(data, path, limits)
    return data[3:] if data[:3] == b"\xef\xbb\xbf" else data  # a UTF-8 byte-order mark is not data


_BLANK_BYTES = np.array([32, 9, 13], dtype=np.uint8)  # space, tab, carriage return


@dataclass(frozen=True)
class _Lines:
    """Line boundaries of a buffer (``buf[starts[i]:ends[i]]`` is line ``i + 1`` without its newline)."""

    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, data: bytes) -> "_Lines":
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 10)
        ends = newlines if len(buf) and buf[-1] == 10 else np.append(newlines, len(buf))
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        return cls(buf, starts, ends.astype(np.int64))

    def line(self, i: int) -> bytes:
        return self.buf[self.starts[i]:self.ends[i]].tobytes()

    def first_last(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(non-empty mask, first byte, last byte) per line (bytes are 0 for empty lines)."""
        full = self.ends > self.starts
        first = np.where(full, self.buf[np.minimum(self.starts, len(self.buf) - 1)], 0)
        last = np.where(full, self.buf[np.maximum(self.ends - 1, 0)], 0)
        return full, first, last

    def blank(self) -> np.ndarray:
        """Lines that are empty or only blanks (only the few candidates are looked at one by one)."""
        full, first, _ = self.first_last()
        out = ~full
        for i in np.flatnonzero(full & np.isin(first, _BLANK_BYTES)):
            out[i] = not self.line(int(i)).strip()
        return out

    def select(self, keep: np.ndarray) -> bytes:
        """The kept lines joined by newlines, gathered with one vectorised byte mask."""
        if keep.all():
            out = self.buf.tobytes()
            return out if out.endswith(b"\n") or not out else out + b"\n"
        lengths = self.ends - self.starts + 1  # with the newline
        mask = np.repeat(keep, lengths)[: len(self.buf)]
        out = self.buf[mask].tobytes()
        return out if out.endswith(b"\n") or not out else out + b"\n"


def _read_csv(lines: _Lines, numbers: np.ndarray, cfg: ChannelConfig,
              block: int = 1 << 20) -> tuple[pa.Table, list[Reject]]:
    """Parse the non-blank lines in one go; rows with the wrong field count become rejects."""
    import pyarrow.csv as pcsv

    keep = ~lines.blank()  # drop blank lines ourselves so numbering stays exact
    numbers = numbers[keep]
    body = lines.select(keep)
    if not body.strip():
        raise ValueError("file is empty")
    delimiter = cfg.delimiter
    if delimiter == "whitespace":
        body = _RUNS_OF_BLANKS.sub(b"\t", _EDGE_BLANKS.sub(b"", body))
        delimiter = "\t"
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row) -> str:  # type: ignore[no-untyped-def]
        bad.append((row.number, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.text))
        return "skip"

    header = body[: body.find(b"\n")].decode("utf-8").rstrip("\r").split(delimiter)
    table = pcsv.read_csv(
        io.BytesIO(body),
        read_options=pcsv.ReadOptions(use_threads=False, block_size=max(1 << 20, 2 * block + 2)),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                            strings_can_be_null=True),
    )
    line_no = numbers[1:]  # pyarrow numbers lines from 1 and the header is line 1
    bad_positions = np.asarray([n - 2 for n, _, _ in bad], dtype=np.int64)
    good = np.delete(np.arange(len(line_no)), bad_positions)
    rows = line_no[good] if len(good) == table.num_rows else np.arange(2, table.num_rows + 2)
    rejects = [(int(line_no[n - 2]), reason, text) for n, reason, text in bad]
    return _strings(table, rows), rejects


def _unique_names(names: list[str]) -> list[str]:
    """Column names made unique the way pandas reads a CSV (``x``, ``x.1``, ...); ``source_row`` is
    ours, so a source column of that name becomes ``source_row.1``."""
    seen, out = {"source_row"}, []
    for name in names:
        new, k = name, 0
        while new in seen:
            k += 1
            new = f"{name}.{k}"
        seen.add(new)
        out.append(new)
    return out


def _strings(table: pa.Table, source_rows: np.ndarray) -> pa.Table:
    """Every column as Arrow text (nested values become JSON text), plus ``source_row``."""
    names, columns = _unique_names(table.column_names), []
    for col in table.columns:
        if pa.types.is_nested(col.type):  # rare: objects/lists inside a field
            col = pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()],
                           type=pa.string())
        elif not pa.types.is_string(col.type):
            col = col.cast(pa.string())
        columns.append(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    names.append("source_row")
    columns.append(pa.array(np.asarray(source_rows, dtype=np.int64)))
    return pa.Table.from_arrays(columns, names=names)


def _line_reject(line: bytes, number: int) -> Reject | None:
    """Why one JSON line is unusable, or None when it is an object."""
    text = line.decode("utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return (number, f"malformed JSON: {e.msg} at column {e.colno}", text)
    except RecursionError:
        return (number, "JSON nested too deep to read", _shown(line))
    return None if isinstance(obj, dict) else (number, "JSON line is not an object", text)


def _jsonl_per_line(lines: list[bytes], numbers: np.ndarray) -> tuple[pa.Table, list[Reject]]:
    """The slow path (a file whose bulk parse failed): one ``json.loads`` per line."""
    records, rows, rejects = [], [], []
    for line, number in zip(lines, numbers):
        reject = _line_reject(line, int(number))
        if reject is not None:
            rejects.append(reject)
            continue
        obj = json.loads(line)
        records.append({k: v if v is None or isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list))
                        else str(v) for k, v in obj.items()})
        rows.append(int(number))
    names = list(dict.fromkeys(k for r in records for k in r))
    table = pa.table({k: pa.array([r.get(k) for r in records], type=pa.string()) for k in names})
    return _strings(table, np.asarray(rows, dtype=np.int64)), rejects


JSON_PROBE = 1 << 18
"""Bytes of a JSON-lines body parsed first to find the fields Arrow would turn into timestamps."""


def _parse_json(body: bytes, block: int = JSON_BLOCK) -> pa.Table:
    """Bulk-parse JSON lines keeping date-like strings as text. Arrow's inference would turn
    ``2026-07-01T08:00:00+02:00`` into a zone-less UTC time and lose that it had an offset, so the
    fields it infers as times on a first slice of the file are read as strings (the whole body is
    parsed again in the rare case a later block makes another field a time)."""
    import pyarrow.json as pj

    text: dict[str, pa.DataType] = {}
    cut = body.rfind(b"\n", 0, JSON_PROBE) + 1 if len(body) > JSON_PROBE else 0
    for part in (body[:cut], body, body) if cut else (body, body):
        options = pj.ParseOptions(explicit_schema=pa.schema(list(text.items())) if text else None,
                                  unexpected_field_behavior="infer")
        table = pj.read_json(io.BytesIO(part), read_options=pj.ReadOptions(block_size=block),
                             parse_options=options)
        timed = {f.name: pa.string() for f in table.schema if pa.types.is_temporal(f.type)}
        if part is body and not timed.keys() - text.keys():
            return table
        text.update(timed)
    return table


def _read_jsonl(lines: _Lines, numbers: np.ndarray, block: int = JSON_BLOCK) -> tuple[pa.Table, list[Reject]]:
    """Pre-screen lines (``{...}``, vectorised), bulk-parse the good ones with pyarrow, explain the others."""
    full, first, last = lines.first_last()
    good = full & (first == ord("{")) & (last == ord("}"))
    rejects = []
    for i in np.flatnonzero(~good):  # the few lines that do not look like one object
        line = lines.line(int(i))
        if line.strip() and (r := _line_reject(line, int(numbers[i]))) is not None:
            rejects.append(r)
        elif line.strip():
            good[i] = True  # an object with blanks around it
    good_numbers = numbers[good]
    if not good.any():
        return pa.table({"source_row": pa.array([], type=pa.int64())}), rejects
    table = _try_parse_json(lines.select(good), block)
    if table is None or table.num_rows != len(good_numbers):  # bad JSON inside braces, mixed types, ...
        retried = _without_bad_lines(lines, numbers, good, block)
        if retried is not None:
            table, more = retried
            return table, sorted(rejects + more)
        frame, more = _jsonl_per_line([lines.line(int(i)) for i in np.flatnonzero(good)], good_numbers)
        return frame, sorted(rejects + more)
    return _strings(table, good_numbers), rejects


def _try_parse_json(body: bytes, block: int) -> pa.Table | None:
    """:func:`_parse_json` of ``body``, None when Arrow refuses it (one bad line spoils a bulk parse)."""
    try:
        return _parse_json(body, block=max(JSON_BLOCK, 2 * block + 2))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _refused_lines(lines: _Lines, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` (line indexes) that are not one JSON object, by orjson (a few times faster than the
    standard library; what it refuses is asked again of the standard library for the reason)."""
    import orjson

    view = memoryview(lines.buf)
    starts, ends = lines.starts[rows].tolist(), lines.ends[rows].tolist()
    refused = []
    for k, (a, b) in enumerate(zip(starts, ends)):
        try:
            if type(orjson.loads(view[a:b])) is dict:
                continue
        except orjson.JSONDecodeError:
            pass
        refused.append(k)
    return rows[np.asarray(refused, dtype=np.int64)]


def _without_bad_lines(lines: _Lines, numbers: np.ndarray, good: np.ndarray,
                       block: int) -> tuple[pa.Table, list[Reject]] | None:
    """A failed bulk parse again without the lines a JSON parser refuses (a truncated line spliced into the
    next, bad JSON inside braces): those become rejects. None when that is not why the parse failed (every
    line is valid JSON yet Arrow refuses the body: mixed types), which the per-line path handles."""
    refused = _refused_lines(lines, np.flatnonzero(good))
    found = [_line_reject(lines.line(int(i)), int(numbers[i])) for i in refused]
    rejects = [r for r in found if r is not None]
    if not rejects or len(rejects) != len(found):  # nothing to drop, or the standard library reads one
        return None
    keep = good.copy()
    keep[refused] = False
    if not keep.any():
        return pa.table({"source_row": pa.array([], type=pa.int64())}), rejects
    table = _try_parse_json(lines.select(keep), block)
    if table is None or table.num_rows != int(keep.sum()):
        return None
    return _strings(table, numbers[keep]), rejects


def _utf8_lines(data: bytes) -> tuple[_Lines, np.ndarray, list[Reject]]:
    """Line boundaries of the valid-UTF-8 lines, their numbers, and rejects for the others."""
    try:
        data.decode("utf-8")
        lines = _Lines.of(data)
        return lines, np.arange(1, len(lines.starts) + 1, dtype=np.int64), []
    except UnicodeDecodeError:
        pass
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    kept, numbers, rejects = [], [], []
    for i, line in enumerate(raw, start=1):  # only for a file that has bad bytes somewhere
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            rejects.append((i, f"not valid UTF-8 at byte {e.start}", line.decode("utf-8", "replace")))
            continue
        kept.append(line)
        numbers.append(i)
    if not kept:
        empty = np.zeros(0, dtype=np.int64)
        return _Lines(np.zeros(0, dtype=np.uint8), empty, empty), empty, rejects
    return _Lines.of(b"\n".join(kept) + b"\n"), np.asarray(numbers, dtype=np.int64), rejects


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("{"), ord("[")]] = 1
_CLOSE = np.zeros(256, dtype=np.int8)
_CLOSE[[ord("}"), ord("]")]] = 1
SHOWN = 1000
"""Bytes of an over-long line kept in its quarantine record."""


def nesting_depth(line: bytes) -> int:
    """Deepest ``{``/``[`` nesting of one JSON text (brackets inside strings do not count)."""
    body = np.frombuffer(_STRINGS.sub(b'""', line), dtype=np.uint8)
    if not len(body):
        return 0
    return int(np.cumsum(_OPEN[body].astype(np.int64) - _CLOSE[body]).max(initial=0))


def _shown(line: bytes) -> str:
    text = line[:SHOWN].decode("utf-8", "replace")
    return text + f"... ({len(line)} bytes)" if len(line) > SHOWN else text


def _screen(lines: _Lines, numbers: np.ndarray, cfg: ChannelConfig,
            limits: ReaderLimits) -> tuple[_Lines, np.ndarray, list[Reject]]:
    """Lines no parser may see (longer than ``max_line_bytes``; JSON nested deeper than ``max_nesting``)
    become rejects before any bulk parse (pyarrow's JSON reader crashes on very deep nesting)."""
    lengths = lines.ends - lines.starts
    bad = lengths > limits.max_line_bytes
    reasons: dict[int, str] = {int(i): f"line is {int(lengths[i])} bytes, above validation.limits.max_line_bytes="
                                          f"{limits.max_line_bytes}" for i in np.flatnonzero(bad)}
    if cfg.format == "jsonl" and len(lines.buf):
        opening = np.concatenate([np.flatnonzero(lines.buf == ord("{")), np.flatnonzero(lines.buf == ord("["))])
        owner = np.searchsorted(lines.starts, opening, side="right") - 1  # the line of each opening bracket
        counts = np.bincount(owner, minlength=len(lines.starts))  # an upper bound of each line's depth
        for i in np.flatnonzero((counts > limits.max_nesting) & ~bad):
            depth = nesting_depth(lines.line(int(i)))
            if depth > limits.max_nesting:
                bad[i] = True
                reasons[int(i)] = f"JSON nesting depth {depth} is above validation.limits.max_nesting={limits.max_nesting}"
    if not bad.any():
        return lines, numbers, []
    rejects = [(int(numbers[i]), reasons[i], _shown(lines.line(i))) for i in sorted(reasons)]
    keep = ~bad
    if not keep.any():
        empty = np.zeros(0, dtype=np.int64)
        return _Lines(np.zeros(0, dtype=np.uint8), empty, empty), empty, rejects
    return _Lines.of(lines.select(keep)), numbers[keep], rejects


def _field_rejects(table: pa.Table, limits: ReaderLimits) -> tuple[pa.Table, list[Reject]]:
    """Rows with a value longer than ``max_field_bytes`` become rejects (the rest of the file is kept)."""
    import pyarrow.compute as pc

    if not table.num_rows:
        return table, []
    long = np.zeros(table.num_rows, dtype=bool)
    where: dict[int, str] = {}
    for name, col in zip(table.column_names, table.columns):
        if name == "source_row" or not pa.types.is_string(col.type):
            continue
        sizes = pc.fill_null(pc.binary_length(col), 0).to_numpy()
        for i in np.flatnonzero((sizes > limits.max_field_bytes) & ~long):
            where[int(i)] = f"field {name!r} is {int(sizes[i])} bytes, above validation.limits.max_field_bytes=" \
                            f"{limits.max_field_bytes}"
        long |= sizes > limits.max_field_bytes
    if not long.any():
        return table, []
    rows = table.column("source_row").to_numpy()
    rejects = []
    for i in sorted(where):
        values = {n: c[i].as_py() for n, c in zip(table.column_names, table.columns) if n != "source_row"}
        rejects.append((int(rows[i]), where[i], _shown(json.dumps(values).encode())))
    return table.filter(pa.array(~long)), rejects


def parquet_breach(meta: "pq.FileMetaData", path: Path, limits: ReaderLimits) -> str | None:
    """Why a Parquet file may not be read, from its footer alone (before any page is decompressed): more
    rows than ``max_rows_per_file``, or row groups whose total uncompressed size passes the decompressed
    bounds (``max_decompressed_bytes``, ``max_compression_ratio`` of the file size); None when it fits."""
    if meta.num_rows > limits.max_rows_per_file:
        return f"{path}: {meta.num_rows} rows, above validation.limits.max_rows_per_file={limits.max_rows_per_file}"
    size = path.stat().st_size
    expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    cap = min(limits.max_decompressed_bytes, max(int(limits.max_compression_ratio * size), GZIP_FLOOR))
    if expanded > cap:
        return (f"{path}: row groups decompress to {expanded} bytes from {size}, above {cap} (limits: "
                f"validation.limits.max_decompressed_bytes={limits.max_decompressed_bytes}, "
                f"max_compression_ratio={limits.max_compression_ratio:g})")
    return None


def read_channel_file(path: Path, cfg: ChannelConfig, limits: ReaderLimits | None = None) -> RawBatch:
    """Read ``path`` as the channel's format within ``limits``; never raises for bad content (a bad row
    becomes a reject, a bad file an error naming the file and the bound it broke)."""
    try:
        return _read_channel_file(path, cfg, limits or ReaderLimits())
    except MemoryError:
        raise  # the isolated reader names the memory bound (validation.limits.read_memory_bytes)
    except RecursionError:
        return RawBatch(path, error=f"{path}: nesting too deep to read (validation.limits.max_nesting)")
    except Exception as e:  # noqa: BLE001 - one file's reader failure must not stop the others
        return RawBatch(path, error=f"{path}: reader failed: {type(e).__name__}: {str(e)[:500]}")


def _read_channel_file(path: Path, cfg: ChannelConfig, limits: ReaderLimits) -> RawBatch:
    """Read ``path`` as the channel's format; never raises for bad content (it is reported instead)."""
    try:
        if cfg.format == "parquet":
            import pyarrow.parquet as pq

            breach = parquet_breach(pq.ParquetFile(path).metadata, path, limits)
            if breach:
                return RawBatch(path, error=breach)
            table = pq.read_table(path)
            if table.num_rows == 0:
                return RawBatch(path, error=f"{path}: file is empty")
            return RawBatch(path, _strings(table, np.arange(1, table.num_rows + 1, dtype=np.int64)))
        data = load_bytes(path, limits)
    except LimitBreached as e:
        return RawBatch(path, error=str(e))
    except (OSError, ValueError, EOFError, gzip.BadGzipFile, zlib.error, pa.ArrowException) as e:
        return RawBatch(path, error=f"{path}: cannot read file: {e}")
    if not data.strip():
        return RawBatch(path, error=f"{path}: file is empty")
    count = data.count(b"\n") + (not data.endswith(b"\n"))
    if count > limits.max_rows_per_file:
        return RawBatch(path, error=f"{path}: {count} lines, above validation.limits.max_rows_per_file="
                                    f"{limits.max_rows_per_file}")
    lines, numbers, rejects = _utf8_lines(data)
    lines, numbers, screened = _screen(lines, numbers, cfg, limits)
    rejects += screened
    try:
        if not len(numbers):
            table, more = pa.table({"source_row": pa.array([], type=pa.int64())}), []
        elif cfg.format == "csv":
            table, more = _read_csv(lines, numbers, cfg, block=limits.max_line_bytes)
        else:
            table, more = _read_jsonl(lines, numbers, block=limits.max_line_bytes)
    except (ValueError, UnicodeDecodeError, RecursionError, pa.ArrowException) as e:
        return RawBatch(path, rejects=rejects, error=f"{path}: cannot parse {cfg.format}: {e}")
    table, long = _field_rejects(table, limits)
    return RawBatch(path, table, rejects=sorted(rejects + more + long))
