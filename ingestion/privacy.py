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
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from base.config import ChannelConfig, ReaderLimits, Settings
from base.durable import replace_durably
from base.paths import DataPaths
from base.pseudonym import (
    scrub_mapping,
    scrub_properties,
    scrub_text,
    suppression_token,
)
from base.suppression import read_tokens
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


def lines_with(text: str, words: Iterable[str], keep_first: bool = False) -> tuple[str, int]:
    """``text`` without the lines that contain any of ``words`` as a whole identifier; and how many went.
    ``keep_first`` keeps line 1 (a CSV header)."""
    words = sorted({w for w in words if w}, key=len, reverse=True)
    if not words or not text:
        return text, 0
    pattern = re.compile(f"(?<![{WORD_CHARS}])(?:{'|'.join(map(re.escape, words))})(?![{WORD_CHARS}])")
    spans: list[tuple[int, int]] = []
    for m in pattern.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        if spans and start < spans[-1][1]:
            continue  # same line as the previous hit
        if keep_first and start == 0:
            continue
        end = text.find("\n", m.end())
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


_QUOTED = re.compile(r'"([^"\\]{1,64})"\s*:')


def _scrub_json_lines(text: str, cfg: ChannelConfig, settings: Settings) -> str:
    """Personal keys of the ``properties`` column of a JSON-lines file hashed or dropped (lines that
    mention a personal key only)."""
    personal = {k.lower(): v for k, v in settings.privacy.personal_properties.items()}
    column = cfg.columns.get("properties")
    if not column or not personal or not any(f'"{k}' in text.lower() for k in personal):
        return text
    out = []
    for line in text.splitlines(keepends=True):
        keys = {k.lower() for k in _QUOTED.findall(line)}
        if not keys & set(personal):
            out.append(line)
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        value = row.get(column) if isinstance(row, dict) else None
        if isinstance(value, str):
            row[column] = scrub_properties(value, personal, settings.hash_salt)
        elif isinstance(value, dict):
            row[column] = scrub_mapping(value, personal, settings.hash_salt)
        else:
            out.append(line)
            continue
        out.append(json.dumps(row, separators=(",", ":")) + ("\n" if line.endswith("\n") else ""))
    return "".join(out)


def scrub_file(path: Path, cfg: ChannelConfig, settings: Settings, tokens: frozenset[str]) -> tuple[bool, int]:
    """Rewrite one inbox file without raw e-mails, phones, personal properties and suppressed people's
    lines; returns (changed, lines removed). Parquet files are left as they are."""
    if cfg.format == "parquet":
        return False, 0
    try:
        text = read_text(path, settings.validation.limits)
    except (ValueError, EOFError, OSError, zlib.error):  # a bomb, a truncated gzip: left to the reader,
        return False, 0  # which quarantines the file whole with the reason (its rows never reach a store)
    scrubbed = scrub_text(text, settings.hash_salt)
    if cfg.format == "jsonl":
        scrubbed = _scrub_json_lines(scrubbed, cfg, settings)
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
    paths = DataPaths(settings.data_dir)
    tokens = read_tokens(paths.suppression)
    _scrub_redelivered(settings, paths, {item.path for item in todo}, tokens)
    if not todo:
        return todo
    done = {r.sha256 for r in read_ledger(paths.ledger)}
    out, seen = [], set()
    for item in todo:
        changed, _ = scrub_file(item.path, item.cfg, settings, tokens)
        digest = file_digest(item.path) if changed else item.digest
        if digest in done or digest in seen:
            continue
        seen.add(digest)
        out.append(replace(item, digest=digest) if changed else item)
    return out


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
