"""Personal data at the door of the file channels: before a new inbox file is ingested it is rewritten
in place with every e-mail address and phone number replaced by its keyed token
(``pii.<kind>.<hex>``, see :mod:`base.pseudonym`), personal ``properties`` keys hashed or dropped
(JSON-lines channels), and the lines of forgotten people (the suppression list) removed. So the
inbox, the quarantine (which keeps rows as read) and everything after hold no raw e-mail or phone,
and ``quarantine release`` re-reads the same scrubbed file.

The rewrite is atomic (temporary file, fsync, rename); the ledger then records the scrubbed file's
digest, so the same export delivered again is scrubbed to the same bytes and skipped.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from base.config import ChannelConfig, ReaderLimits, Settings
from base.durable import replace_durably
from base.paths import DataPaths
from base.pseudonym import (
    ID_KINDS,
    scrub_mapping,
    scrub_properties,
    scrub_text,
    suppression_token,
    token,
)
from base.suppression import read_tokens
from base.text_values import distinct
from ingestion.ledger import file_digest, read_ledger

WORD_CHARS = r"A-Za-z0-9_.@+\-"
WORD = re.compile(f"[{WORD_CHARS}]+")
"""An identifier as it appears in a line of text (ids, aliases, ``pii.<kind>.<hex>`` tokens)."""


def read_text(path: Path, limits: ReaderLimits) -> str:
    """A text file's content, gunzipped (named ``.gz`` or starting with the gzip magic) within the reader's
    bounds (``validation.limits``): a bomb is never expanded (``LimitBreached`` names file and bound; a
    truncated file raises ``EOFError``)."""
    from ingestion.readers import load_bytes

    return load_bytes(path, limits).decode("utf-8", errors="surrogateescape")


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (no time stamp): the same text always gives the same file and digest."""
    return gzip.compress(data, mtime=0)


def write_text(path: Path, text: str) -> None:
    """Replace a file's content atomically and durably (gzip again when it was compressed)."""
    data = text.encode("utf-8", errors="surrogateescape")
    if path.suffix == ".gz":
        data = gzip_bytes(data)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    replace_durably(tmp, path)


_WORD_SET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@+-")
_WORD_BYTES = frozenset(ord(c) for c in _WORD_SET)


def word_spans(text: str | bytes, words: Iterable[str]) -> list[tuple[int, int]]:
    """Where ``words`` occur in ``text`` as whole identifiers (not inside a longer id), in order. Each word
    is looked for with a plain substring search (fast on large files) and its neighbours checked."""
    chars = _WORD_BYTES if isinstance(text, bytes) else _WORD_SET
    n, spans = len(text), []
    for word in {w for w in words if w}:
        needle = word.encode() if isinstance(text, bytes) else word
        at = text.find(needle)  # type: ignore[arg-type]
        while at >= 0:
            end = at + len(needle)
            if (at == 0 or text[at - 1] not in chars) and (end == n or text[end] not in chars):
                spans.append((at, end))
            at = text.find(needle, at + 1)  # type: ignore[arg-type]
    return sorted(spans)


def lines_with(text: str, words: Iterable[str], keep_first: bool = False) -> tuple[str, int]:
    """``text`` without the lines that contain any of ``words`` as a whole identifier; and how many went.
    ``keep_first`` keeps line 1 (a CSV header)."""
    if not text:
        return text, 0
    spans: list[tuple[int, int]] = []
    for hit, _ in word_spans(text, words):
        start = text.rfind("\n", 0, hit) + 1
        if spans and start < spans[-1][1]:
            continue  # same line as the previous hit
        if keep_first and start == 0:
            continue
        end = text.find("\n", hit)
        spans.append((start, len(text) if end < 0 else end + 1))
    if not spans:
        return text, 0
    parts, at = [], 0
    for start, end in spans:
        parts.append(text[at:start])
        at = end
    parts.append(text[at:])
    return "".join(parts), len(spans)


def suppressed_words(text: str, tokens: frozenset[str], key: str) -> set[str]:
    """The identifiers in ``text`` whose suppression token is on the list (each distinct word hashed once)."""
    if not tokens:
        return set()
    return {w for w in set(WORD.findall(text)) if suppression_token(w, key) in tokens}




def _scrub_json_lines(text: str, cfg: ChannelConfig, settings: Settings) -> str:
    """The channel's PII fields tokenised and personal keys of the ``properties`` field hashed or dropped
    in a JSON-lines file (only lines that hold such a field are parsed; the others keep their bytes)."""
    roles = _column_roles(cfg, settings)
    if not roles or not text:
        return text
    personal = _personal(settings)
    memo: dict[tuple[str, str], str] = {}
    text = _tokenise_json_strings(text, {k: r for k, r in roles.items() if r != "properties"}, settings, memo)
    out, done = [], 0
    for start in _lines_to_parse(text, roles, personal):
        end = text.find("\n", start) + 1 or len(text)
        line = text[start:end]
        new = _scrub_json_line(line, roles, settings, personal, memo)
        if new is not None:
            out += [text[done:start], new]
            done = end
    return "".join([*out, text[done:]]) if out else text


def _lines_to_parse(text: str, roles: dict[str, str], personal: dict[str, str]) -> list[int]:
    """Starts of the lines :func:`_scrub_json_lines` must parse, found by one search over the text: a
    numeric id (string ids were tokenised without parsing), or a properties field on a line that names a
    personal key (any case) or holds an escape (a key may be spelled with one)."""
    numbers = [re.escape(k) for k, r in roles.items() if r != "properties"]
    props = [re.escape(k) for k, r in roles.items() if r == "properties"]
    parts = ([f'"(?:{"|".join(numbers)})"\\s*:\\s*-?[0-9]'] if numbers else []) \
        + ([f'"(?:{"|".join(props)})"\\s*:'] if props else [])
    if not parts:
        return []
    starts: list[int] = []
    for m in re.finditer("|".join(parts), text):
        start = text.rfind("\n", 0, m.start()) + 1
        if starts and starts[-1] == start:
            continue
        if not m.group(0).endswith(":"):  # a numeric id
            starts.append(start)
            continue
        line = text[start:text.find("\n", start) + 1 or len(text)]
        if "\\" in line or _mentions_personal(line, personal):
            starts.append(start)
    return starts


def _scrub_json_line(line: str, roles: dict[str, str], settings: Settings, personal: dict[str, str],
                     memo: dict[tuple[str, str], str]) -> str | None:
    """One JSON line with its numeric ids tokenised and personal properties hashed or dropped; None when
    nothing changes. A line that is not one JSON object (the reader rejects it) keeps its bytes but the
    value after each personal key (:func:`redact_personal`); its strings were tokenised already."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict):  # the reader rejects it and the quarantine keeps its text: not its values
        redacted = redact_personal(line, personal)
        return redacted if redacted != line else None
    changed = False
    for name, role in roles.items():
        value = row.get(name)
        if isinstance(value, dict) and role == "properties":
            new = scrub_mapping(value, personal, settings.hash_salt)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            new = _scrub_field(str(value), role, settings, personal, memo)
            if new == str(value):
                new = value
        else:
            continue
        if new != value:
            row[name], changed = new, True
    if not changed:
        return None
    return json.dumps(row, separators=(",", ":")) + ("\n" if line.endswith("\n") else "")


def _tokenise_json_strings(text: str, roles: dict[str, str], settings: Settings,
                           memo: dict[tuple[str, str], str]) -> str:
    """String values of the ``roles`` fields (``"field": "value"``) replaced by their tokens in one pass
    over the text (no line is parsed; an escaped value is decoded first, as a JSON reader would)."""
    if not roles:
        return text
    names = "|".join(map(re.escape, roles))
    # the string body as an unrolled loop (runs of plain characters, then one escape): far fewer steps
    # for the regex engine than one alternation per character
    pattern = re.compile(f'("({names})"\\s*:\\s*")([^"\\\\]*(?:\\\\.[^"\\\\]*)*)"')
    personal = _personal(settings)

    def one(m: re.Match[str]) -> str:
        raw = m.group(3)
        try:
            value = json.loads(f'"{raw}"') if "\\" in raw else raw
        except json.JSONDecodeError:  # a broken escape: the reader rejects the line; hash the text as it is
            value = raw
        if not value.strip():
            return m.group(0)
        return f'{m.group(1)}{_scrub_field(value, roles[m.group(2)], settings, personal, memo)}"'

    return pattern.sub(one, text)


REDACTED = "[personal value removed]"
"""What stands in an unreadable line for the value of a personal key."""


def redact_personal(text: str, personal: dict[str, str]) -> str:
    """``text`` that no JSON parser reads (a truncated or spliced line) with the value after each personal
    key (any case) replaced by :data:`REDACTED`: a string (closed or cut off), a flat object, or anything up
    to the next ``,``, ``}`` or ``]``. The line stays unreadable, so the reader still rejects it with its
    reason, and the quarantine keeps no personal value of it. (A key spelled with escapes cannot be told
    in text that does not parse.)"""
    if not personal:
        return text
    keys = "|".join(re.escape(k) for k in sorted(personal, key=len, reverse=True))
    pattern = re.compile(rf'("(?:{keys})"\s*:\s*)(?:"(?:[^"\\\n]|\\.)*"?|\{{[^{{}}\n]*\}}?|[^,}}\]\n]*)',
                         re.IGNORECASE)
    return pattern.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)


def _personal(settings: Settings) -> dict[str, str]:
    """``privacy.personal_properties`` with lower-case keys."""
    return {k.lower(): v for k, v in settings.privacy.personal_properties.items()}


def _mentions_personal(text: str, personal: dict[str, str]) -> bool:
    """Whether JSON text may hold a personal key (a quick test before parsing)."""
    low = text.lower()
    return any(f'"{k}"' in low or f'""{k}""' in low for k in personal)


def _csv_fields(line: str, delimiter: str) -> list[str] | None:
    """One CSV line's fields as the reader splits them (double quotes, doubled to escape), None when the
    line is not one record."""
    import csv

    try:
        rows = list(csv.reader([line], delimiter=delimiter, quotechar='"', doublequote=True, strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _csv_line(fields: list[str], delimiter: str) -> str:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quotechar='"', doublequote=True, lineterminator="").writerow(fields)
    return out.getvalue()


def _scrub_field(value: str, role: str, settings: Settings, personal: dict[str, str],
                 memo: dict[tuple[str, str], str] | None = None) -> str:
    """A field of a PII or identifier column (its token) or of the properties column (personal keys
    hashed or dropped); ``memo`` keeps the tokens already computed for this file (ids repeat on many
    lines)."""
    if not value.strip():
        return value
    if role == "properties":
        return value if not _mentions_personal(value, personal) else (
            scrub_properties(value, personal, settings.hash_salt) or value)
    if memo is None:
        return token(value, settings.hash_salt, role)
    found = memo.get((role, value))
    if found is None:
        found = memo[(role, value)] = token(value, settings.hash_salt, role)
    return found


def _column_roles(cfg: ChannelConfig, settings: Settings) -> dict[str, str]:
    """Source column -> ``email``/``phone`` (the channel's ``pii``), ``anonymous``/``device``/``session``
    (identifiers pseudonymised at the door) or ``properties`` (personal keys)."""
    roles = {cfg.columns[f]: ID_KINDS[f] for f in settings.privacy.pseudonymised_ids if cfg.columns.get(f)}
    roles.update(cfg.pii)
    if cfg.columns.get("properties") and settings.privacy.personal_properties:
        roles[cfg.columns["properties"]] = "properties"
    return roles


def _scrub_csv(text: str, cfg: ChannelConfig, settings: Settings) -> str:
    """The channel's PII columns tokenised field by field (a phone without a ``+`` is not found in free
    text) and personal keys of a properties column holding JSON text hashed or dropped; other lines keep
    their bytes."""
    roles = _column_roles(cfg, settings)
    if not roles or not text:
        return text
    personal = _personal(settings)
    memo: dict[tuple[str, str], str] = {}
    lines = text.splitlines(keepends=True)
    whitespace = cfg.delimiter == "whitespace"
    if whitespace:
        header = lines[0].split()
    else:
        header = _csv_fields(lines[0].rstrip("\r\n"), cfg.delimiter) or []
    where = {i: roles[name] for i, name in enumerate(header) if name in roles}
    if not where:
        return text
    special = re.compile(f'[{re.escape(cfg.delimiter)}"\r\n]')  # what makes the CSV writer quote a field
    out = [lines[0]]
    for line in lines[1:]:
        body = line.rstrip("\r\n")
        end = line[len(body):]
        if whitespace:
            parts = re.split(r"(\s+)", body)  # fields at even places, the blanks between them kept
            lead = 1 if parts and parts[0] == "" else 0
            for i, role in where.items():
                at = lead + 2 * i
                if at < len(parts) and role != "properties":
                    parts[at] = _scrub_field(parts[at], role, settings, personal, memo)
            out.append("".join(parts) + end)
            continue
        plain = '"' not in body and "\r" not in body  # split as the CSV reader splits it, written back the same
        fields = body.split(cfg.delimiter) if plain else _csv_fields(body, cfg.delimiter)
        if fields is None:
            out.append(line)
            continue
        new = list(fields)
        quote = not plain  # a plain line's other fields hold no delimiter, quote or line break
        for i, role in where.items():
            if i < len(new):
                new[i] = value = _scrub_field(new[i], role, settings, personal, memo)
                quote = quote or (value is not fields[i] and special.search(value) is not None)
        if new == fields:
            out.append(line)
        elif not quote:
            out.append(cfg.delimiter.join(new) + end)
        else:
            out.append(_csv_line(new, cfg.delimiter) + end)
    return "".join(out)


def _json_text(value: Any) -> str | None:
    """A nested Parquet value (struct as dict, map as pairs) as JSON text."""
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        value = dict(value)
    return json.dumps(value, default=str, sort_keys=True, separators=(",", ":"))


def _scrub_parquet_column(col: pa.ChunkedArray, role: str | None, settings: Settings,
                          personal: dict[str, str]) -> pa.Array | None:
    """A column scrubbed (None when unchanged): a PII column tokenised, the properties column as JSON text
    with personal keys hashed or dropped (a struct or map becomes JSON text, as the reader reads it), any
    other text column with e-mails and phones tokenised."""
    if role == "properties" and pa.types.is_nested(col.type):
        values = [_json_text(v) for v in col.to_pylist()]
        return pa.array([None if v is None else _scrub_field(scrub_text(v, settings.hash_salt), role, settings,
                                                             personal) for v in values], type=pa.string())
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if role in ("email", "phone", *ID_KINDS.values()):
            col = col.cast(pa.string())
        else:
            return None
    arr = col.combine_chunks()
    values, codes = distinct(arr)

    def one(v: str) -> str:
        v2 = scrub_text(v, settings.hash_salt)
        return _scrub_field(v2, role, settings, personal) if role else v2

    scrubbed = [one(v) for v in values]
    if scrubbed == values:
        return None
    return pa.array(scrubbed + [None], type=pa.string()).take(codes)


def _scrub_parquet(path: Path, cfg: ChannelConfig, settings: Settings, tokens: frozenset[str]) -> tuple[bool, int]:
    """A Parquet inbox file rewritten with PII columns tokenised, personal properties hashed or dropped
    (string, struct or map column), e-mails and phones in text tokenised and suppressed people's rows
    removed; returns (changed, rows removed)."""
    import pyarrow.parquet as pq

    try:
        from ingestion.readers import parquet_breach

        if parquet_breach(pq.ParquetFile(path).metadata, path, settings.validation.limits):
            return False, 0  # left to the reader, which quarantines the file whole naming the bound
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException):
        return False, 0  # unreadable: left to the reader, which quarantines it whole
    roles = _column_roles(cfg, settings)
    personal = _personal(settings)
    changed = False
    for i, name in enumerate(table.column_names):
        new = _scrub_parquet_column(table.column(i), roles.get(name), settings, personal)
        if new is not None:
            table = table.set_column(i, pa.field(name, new.type), new)
            changed = True
    removed = 0
    if tokens:
        mask = None
        for col in table.columns:
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                continue
            words = {w for v in pc.unique(col).to_pylist() if v for w in WORD.findall(v)}
            hit_words = [w for w in words if suppression_token(w, settings.hash_salt) in tokens]
            if not hit_words:
                continue
            pattern = f"(?:^|[^{WORD_CHARS}])(?:{'|'.join(map(re.escape, hit_words))})(?:$|[^{WORD_CHARS}])"
            hit = pc.fill_null(pc.match_substring_regex(col, pattern), False)
            mask = hit if mask is None else pc.or_(mask, hit)
        if mask is not None:
            removed = int(pc.sum(mask).as_py() or 0)
            if removed:
                table = table.filter(pc.invert(mask))
                changed = True
    if changed:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp)
        replace_durably(tmp, path)
    return changed, removed


def scrub_file(path: Path, cfg: ChannelConfig, settings: Settings, tokens: frozenset[str]) -> tuple[bool, int]:
    """Rewrite one inbox file without raw e-mails, phones, personal properties and suppressed people's
    lines (rows of a Parquet file); returns (changed, lines removed)."""
    if cfg.format == "parquet":
        return _scrub_parquet(path, cfg, settings, tokens)
    try:
        text = read_text(path, settings.validation.limits)
    except (ValueError, EOFError, OSError, zlib.error):  # a bomb, a truncated gzip: left to the reader,
        return False, 0  # which quarantines the file whole with the reason (its rows never reach a store)
    scrubbed = scrub_text(text, settings.hash_salt)
    if cfg.format == "jsonl":
        scrubbed = _scrub_json_lines(scrubbed, cfg, settings)
    else:
        scrubbed = _scrub_csv(scrubbed, cfg, settings)
    removed = 0
    if tokens:
        scrubbed, removed = lines_with(scrubbed, suppressed_words(scrubbed, tokens, settings.hash_salt),
                                       keep_first=cfg.format == "csv")
    if scrubbed == text:
        return False, 0
    write_text(path, scrubbed)
    return True, removed


def admit_files(settings: Settings, todo: list[Any]) -> list[Any]:
    """The door: scrub each pending file (``ingestion.ingest.PendingFile``) in place; a file whose scrubbed content the ledger already
    holds (an export delivered again) is dropped from the run."""
    return list(admitted(settings, todo))


def admitted(settings: Settings, todo: list[Any]) -> Iterator[Any]:
    """:func:`admit_files` one file at a time, in order, each as soon as it is scrubbed: the reader parses
    the first files while the door still scrubs the next (no file is handed on before it is scrubbed)."""
    paths = DataPaths(settings.data_dir)
    tokens = read_tokens(paths.suppression)
    _scrub_redelivered(settings, paths, {item.path for item in todo}, tokens)
    if not todo:
        return
    done = {r.sha256 for r in read_ledger(paths.ledger)}
    seen = set()
    jobs = [(item.path, item.cfg, settings, tokens) for item in todo]
    for item, (changed, new_digest) in zip(todo, _scrub_all(jobs)):
        digest = new_digest if changed else item.digest
        if digest in done or digest in seen:
            continue
        seen.add(digest)
        yield replace(item, digest=digest) if changed else item


PARALLEL_SCRUB_BYTES = 64 * 2**20
"""Pending inbox bytes from which the door scrubs files in several processes (one per core, at most 2)."""


def _scrub_one(path: Path, cfg: ChannelConfig, settings: Settings, tokens: frozenset[str]) -> tuple[bool, str]:
    """:func:`scrub_file`, and the file's new digest when it changed."""
    changed, _ = scrub_file(path, cfg, settings, tokens)
    return changed, file_digest(path) if changed else ""


def _scrub_all(jobs: list[tuple[Path, ChannelConfig, Settings, frozenset[str]]]) -> Iterator[tuple[bool, str]]:
    """:func:`_scrub_one` of each file, in order, each result as soon as it is ready; files are
    independent, so a large inbox is scrubbed by two processes at once (each file is still rewritten
    atomically by one of them). A caller that stops early cancels the files not started."""
    import os

    workers = min(2, os.cpu_count() or 1, len(jobs))
    size = sum(path.stat().st_size for path, *_ in jobs if path.is_file())
    if workers < 2 or size < PARALLEL_SCRUB_BYTES:
        yield from (_scrub_one(*job) for job in jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the ingest process already runs Arrow threads (a forked child could inherit a held lock)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield from pool.map(_scrub_one, *zip(*jobs))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _scrub_redelivered(settings: Settings, paths: DataPaths, pending: set[Path], tokens: frozenset[str]) -> int:
    """An export delivered again byte for byte is not pending (the ledger has its digest), yet it may hold
    people forgotten since: files changed after the last erasure are scrubbed too (their suppressed lines
    removed; the remainder is content the ledger already holds or new rows ingest dedupes). Returns files
    rewritten."""
    if not tokens:
        return 0
    since = paths.suppression.stat().st_mtime
    rewritten = 0
    for cfg in settings.channels.values():
        for path in settings.data_dir.glob(cfg.path):
            if path in pending or not path.is_file() or path.stat().st_mtime <= since:
                continue
            rewritten += scrub_file(path, cfg, settings, tokens)[0]
    return rewritten
