"""Forget people: erase every trace of a user (and all their aliases) from every store.

Order of work, so that a crash at any point is completed by running the same erasure again:

1. **Resolve** the identifiers: the user ids, their aliases from the identity graph and conflicts,
   and from the clean events the anonymous ids, device ids and e-mail/phone pseudonyms of their rows.
   They are written to a journal (``privacy/pending/<id>.json``) before anything is erased, because
   the stores they come from are erased too; a re-run finds the journal and finishes it.
2. **Suppress**: the identifiers' one-way tokens go on the suppression list first, so nothing comes
   back while (or after) the stores are erased: ingest drops suppressed lines at the door, the service
   refuses suppressed events.
3. **Erase** store by store (each eraser is idempotent: rows already gone are not found again):
   inbox files and the service's event log are rewritten without the person's lines (the rewritten
   file's digest is recorded in the ledger so it is not ingested again); Parquet stores (clean events,
   identity graph, quarantine, feature snapshots and the push source's offline table, persona
   history, training and evaluation sets) are rewritten without the person's rows; SQLite and Redis
   online stores lose the person's entity keys; derived documents that mention an identifier (reports,
   Great Expectations results and Data Docs, drift results, MLflow artifacts) are deleted (they are
   rebuilt by the next update); logs lose the lines.
4. **Audit**: one line in ``privacy/audit.jsonl`` with the time, the caller and the counts per store,
   then the journal is removed. The audit line holds no identifier.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from base.config import ReaderLimits, Settings
from base.durable import replace_durably
from base.paths import DataPaths
from base.pseudonym import suppression_tokens
from base.suppression import add_tokens
from ingestion.ledger import BatchRecord, append_torn_safe, file_digest, read_ledger
from ingestion.privacy import gzip_bytes, lines_with, read_text, write_text

ID_COLUMNS = ("user_id", "anonymous_id", "device_id", "email_hash", "phone_hash", "alias", "claimed_by")
"""Columns whose whole value may be an identifier (matched exactly)."""
TEXT_COLUMNS = ("original", "reason", "properties", "text", "message")
"""Free-text columns (matched on substrings: a quarantined row keeps the original line)."""
DELETED_SUFFIXES = (".html", ".htm", ".png", ".yaml", ".yml", ".pkl", ".txt")
"""Derived documents deleted whole when they mention an identifier (rebuilt by the next update)."""
LINE_SUFFIXES = (".jsonl", ".csv", ".log", ".tsv")
"""Text stores that lose the lines mentioning an identifier."""


@dataclass
class Erasure:
    """One erasure request: the identifiers to erase and what was done, store by store."""

    request: str
    user_ids: list[str]
    identifiers: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    timings: Counter = field(default_factory=Counter)
    """Seconds spent per store (for the bench; not in the audit line)."""

    def audit_line(self, caller: str) -> dict[str, Any]:
        """The audit record: no identifier, only the request id, the caller, counts and time."""
        return {"time": datetime.now(UTC).isoformat(timespec="seconds"), "request": self.request,
                "caller": caller, "users": len(self.user_ids), "identifiers": len(self.identifiers),
                "counts": dict(sorted(self.counts.items())), "seconds": round(self.seconds, 3)}


# ------------------------------------------------------------------------------------ resolving


def _read(path: Path, columns: list[str]) -> pa.Table:
    names = pq.read_schema(path).names
    return pq.read_table(path, columns=[c for c in columns if c in names])


def _parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if p.is_file()) if root.exists() else []


def resolve(settings: Settings, user_ids: list[str]) -> list[str]:
    """Every identifier of the users: ids, aliases (and their ``anon:``/``device:`` pointers) from the
    identity graph and conflicts, and the alias ids and e-mail/phone pseudonyms of their events."""
    paths = DataPaths(settings.data_dir)
    users = set(user_ids)
    aliases: set[str] = set()
    for path in _parquet_files(paths.identity_graph.parent):
        t = pq.read_table(path)
        names = t.column_names
        if "alias" not in names:
            continue
        mine = pc.is_in(t["user_id"], pa.array(sorted(users), pa.string()))
        if "claimed_by" in names:
            mine = pc.or_(mine, pc.is_in(t["claimed_by"], pa.array(sorted(users), pa.string())))
        aliases.update(v for v in t.filter(pc.fill_null(mine, False))["alias"].to_pylist() if v)
    pointers = {f"anon:{a}" for a in aliases} | {f"device:{a}" for a in aliases}
    hashes: set[str] = set()
    wanted = ["user_id", "anonymous_id", "device_id", "email_hash", "phone_hash"]
    keys = pa.array(sorted(users | aliases | pointers), pa.string())
    for path in _parquet_files(paths.events):
        t = _read(path, wanted)
        mask = None
        for name in ("user_id", "anonymous_id", "device_id"):
            if name in t.column_names:
                hit = pc.fill_null(pc.is_in(t[name], keys), False)
                mask = hit if mask is None else pc.or_(mask, hit)
        if mask is None or not pc.any(mask).as_py():
            continue
        rows = t.filter(mask)
        for name in ("anonymous_id", "device_id"):
            if name in rows.column_names:
                aliases.update(v for v in rows[name].to_pylist() if v)
        for kind in ("email", "phone"):
            if f"{kind}_hash" in rows.column_names:
                hashes.update(f"{h}|{kind}" for h in rows[f"{kind}_hash"].to_pylist() if h)
    pointers = {f"anon:{a}" for a in aliases} | {f"device:{a}" for a in aliases}
    found = {h.split("|")[0] for h in hashes} | {f"pii.{h.split('|')[1]}.{h.split('|')[0]}" for h in hashes}
    return sorted(users | aliases | pointers | found)


# ------------------------------------------------------------------------------------ erasers


def _store_of(path: Path, paths: DataPaths, artifacts: Path | None) -> str:
    """The store a file belongs to (for the audit counts)."""
    named = [("inbox and event log", paths.raw), ("clean events", paths.events),
             ("identity graph", paths.identity_graph.parent), ("quarantine", paths.quarantine),
             ("feature snapshots and push source", paths.features), ("online store (SQLite)", paths.feast),
             ("training and evaluation sets", paths.training), ("persona history", paths.history.parent),
             ("reports", paths.reports), ("Great Expectations results", paths.gx),
             ("drift results", paths.drift.parent), ("MLflow", paths.mlflow), ("update loop", paths.update),
             ("logs", paths.logs), ("BentoML", paths.bentoml_home), ("ledger", paths.ledger.parent)]
    if artifacts is not None:
        named.append(("MLflow", artifacts))
    for name, root in named:
        if path.is_relative_to(root):
            return name
    return "other files"


def _text_pattern(words: list[str]) -> str:
    """An RE2 pattern matching any of ``words`` as a whole identifier inside text."""
    import re

    from ingestion.privacy import WORD_CHARS

    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return f"(?:^|[^{WORD_CHARS}])(?:{alternatives})(?:$|[^{WORD_CHARS}])"


def _string_columns(schema: pa.Schema) -> list[str]:
    """Names of the text columns (plain or dictionary-encoded) of a Parquet schema."""
    out = []
    for f in schema:
        t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out.append(f.name)
    return out


def _hits(table: pa.Table, words: list[str]) -> pa.ChunkedArray | pa.Array | None:
    """Rows of ``table`` (text columns only) that hold an identifier: a whole value of any column, or a
    whole identifier inside a free-text column (a plain substring test first; the pattern only when a
    word occurs at all)."""
    keys = pa.array(words, pa.string())
    mask = None
    for name in table.column_names:
        col = table[name]
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        hit = pc.fill_null(pc.is_in(col, keys), False)
        if name in TEXT_COLUMNS:  # whole identifiers inside text (RE2: no look-behind, so match the neighbours)
            present = [w for w in words if pc.any(pc.fill_null(pc.match_substring(col, w), False)).as_py()]
            if present:
                hit = pc.or_(hit, pc.fill_null(pc.match_substring_regex(col, _text_pattern(present)), False))
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


def erase_parquet(path: Path, words: list[str]) -> int:
    """Rewrite a Parquet file without rows that hold an identifier; returns rows removed. Only the text
    columns are read to look (a feature snapshot's numbers are not); the file is read whole and
    rewritten only when it holds the person."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return 0
    texts = _string_columns(schema)
    if not texts:
        return 0
    mask = _hits(pq.read_table(path, columns=texts), words)
    removed = 0 if mask is None else int(pc.sum(mask).as_py() or 0)
    if not removed:
        return 0
    table = pq.read_table(path)
    kept = table.filter(pc.invert(mask))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(kept, tmp)
    replace_durably(tmp, path)
    return removed


def erase_sqlite(path: Path, words: list[str]) -> int:
    """Delete Feast online rows (tables with an ``entity_key``) and stored persona records (tables with a
    ``user_id``) of the identifiers, with ``secure_delete`` so the freed space does not keep the bytes
    (overwritten in place: cheaper than a VACUUM that rewrites the whole store); returns rows deleted."""
    from features.online_layout import entity_keys

    with path.open("rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            return 0  # not SQLite (Feast's file registry is a protobuf named .db)
    con = sqlite3.connect(path)
    con.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros (no VACUUM of the whole file)
    removed = 0
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            if "user_id" in cols:  # keyed by the plain id: the stored persona records (features/online_records.py)
                for i in range(0, len(words), 500):
                    chunk = words[i:i + 500]
                    cur = con.execute(f'DELETE FROM "{table}" WHERE user_id IN ({",".join("?" * len(chunk))})', chunk)
                    removed += cur.rowcount
            if "entity_key" not in cols:
                continue
            keys = entity_keys("user_id", words)
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                cur = con.execute(f'DELETE FROM "{table}" WHERE entity_key IN ({",".join("?" * len(chunk))})', chunk)
                removed += cur.rowcount
        con.commit()
        if removed:  # the service's writers use WAL: the zeroed pages go back into the main file now
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return removed


def erase_redis(settings: Settings, words: list[str]) -> int:
    """Delete the users' hashes from the Redis online store of the production profile (Feast's key is
    the serialized entity key followed by the project name); returns keys deleted."""
    import redis

    from base.config import read_yaml
    from features.online_layout import entity_keys
    from features.store import repo_yaml

    cfg = read_yaml(repo_yaml(settings, "production"))
    online = cfg.get("online_store", {})
    host, _, port = str(online.get("connection_string", "127.0.0.1:6379")).split(",")[0].partition(":")
    client = redis.Redis(host=host, port=int(port or 6379))
    from features.store import FEAST_PROJECT_ENV

    project = str(os.environ.get(FEAST_PROJECT_ENV) or cfg.get("project", "persona")).encode()  # as open_store
    keys = [k + project for k in entity_keys("user_id", words)]
    keys += [f"persona:record:{project.decode()}:{w}".encode() for w in words]  # stored persona records
    return int(client.delete(*keys)) if keys else 0


def _bounded_text(path: Path, limits: ReaderLimits) -> str:
    """A text file's content within the reader limits; a file that breaks them (a gzip bomb, a truncated
    gzip) stops the erasure naming file and bound (it stays journaled: remove or repair the file, run again)."""
    import zlib

    try:
        return read_text(path, limits)
    except (ValueError, EOFError, zlib.error) as e:
        raise ErasureBlocked(f"{path}: cannot be read within validation.limits to erase from it ({e}); the erasure "
                             "is journaled and its people suppressed: remove or repair the file, then run "
                             "`persona forget` again") from e


def _record_rewrite(path: Path, data: bytes, paths: DataPaths) -> None:
    """When an inbox file's content was ingested, its rewritten content (``data``) is recorded in the
    ledger first (as already ingested), so a crash between the two never lets ingest take the file
    again; a re-run writes the same bytes."""
    import hashlib

    ledger = read_ledger(paths.ledger)
    old = file_digest(path)
    original = next((r for r in reversed(ledger) if r.sha256 == old), None)
    if original is None:
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest not in {r.sha256 for r in ledger}:
        append_torn_safe(paths.ledger, BatchRecord(
            batch_id=f"{original.batch_id}.erased-{digest[:8]}", channel=original.channel, file=original.file,
            sha256=digest, rows_read=0, accepted=0, quarantined=0, duplicates=0, status="erasure_rewrite",
            message="rewritten without a forgotten person's rows (its content was ingested before)",
            processed_at=datetime.now(UTC).isoformat()))


def _erase_inbox_file(path: Path, words: list[str], paths: DataPaths, limits: ReaderLimits) -> int:
    """Rewrite an inbox text file without the lines (the new content recorded in the ledger first)."""
    text = _bounded_text(path, limits)
    kept, removed = lines_with(text, words, keep_first=".csv" in path.name or path.suffix == ".txt")
    if not removed:
        return 0
    data = kept.encode("utf-8", errors="surrogateescape")
    _record_rewrite(path, gzip_bytes(data) if path.suffix == ".gz" else data, paths)
    write_text(path, kept)
    return removed


def _erase_inbox_parquet(path: Path, words: list[str], paths: DataPaths, limits: ReaderLimits) -> int:
    """Rewrite a Parquet inbox file without the person's rows (the new content recorded in the ledger
    first, as for text files); a file beyond the reader limits stops the erasure, as for text files."""
    from ingestion.readers import parquet_breach

    breach = parquet_breach(pq.ParquetFile(path).metadata, path, limits)
    if breach:
        raise ErasureBlocked(f"{breach}: cannot be read within validation.limits to erase from it; the erasure is "
                             "journaled and its people suppressed: remove or repair the file, then run "
                             "`persona forget` again")
    texts = _string_columns(pq.read_schema(path))
    mask = _hits(pq.read_table(path, columns=texts), words) if texts else None
    removed = 0 if mask is None else int(pc.sum(mask).as_py() or 0)
    if not removed:
        return 0
    kept = pq.read_table(path).filter(pc.invert(mask))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(kept, tmp)
    _record_rewrite(path, tmp.read_bytes(), paths)
    replace_durably(tmp, path)
    return removed


def _prune(node: Any, mentions: Any) -> tuple[Any, int]:
    """``node`` without list items and mapping entries whose text mentions an identifier; and how many went."""
    if isinstance(node, dict):
        out, removed = {}, 0
        for k, v in node.items():
            if mentions(str(k)) or (isinstance(v, str) and mentions(v)):
                removed += 1
                continue
            out[k], n = _prune(v, mentions)
            removed += n
        return out, removed
    if isinstance(node, list):
        items, removed = [], 0
        for v in node:
            if isinstance(v, str) and mentions(v):
                removed += 1
                continue
            v, n = _prune(v, mentions)
            items.append(v)
            removed += n
        return items, removed
    return node, 0


def erase_json(path: Path, words: list[str]) -> int:
    """Rewrite a JSON document without the entries that mention an identifier (state files, validation
    results, drift results keep their shape); returns entries removed."""
    import re

    from ingestion.privacy import WORD_CHARS

    pattern = re.compile(f"(?<![{WORD_CHARS}])(?:{'|'.join(map(re.escape, sorted(words, key=len, reverse=True)))})"
                         f"(?![{WORD_CHARS}])")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        path.unlink()
        return 1
    pruned, removed = _prune(doc, lambda text: pattern.search(text) is not None)
    if removed:
        write_text(path, json.dumps(pruned))
    return removed


def _contains(path: Path, needles: list[bytes]) -> bool:
    """Whether the file's bytes hold any identifier as a whole (not inside a longer id)."""
    from ingestion.privacy import word_spans

    data = path.read_bytes()
    if not any(n in data for n in needles):
        return False
    return bool(word_spans(data, [n.decode() for n in needles]))


def erase_files(settings: Settings, erasure: Erasure) -> None:
    """Run every eraser over the data directory and the MLflow artifact store."""
    paths = DataPaths(settings.data_dir)
    words = erasure.identifiers
    needles = [w.encode() for w in words]
    inbox = {p.resolve() for cfg in settings.channels.values() for p in settings.data_dir.glob(cfg.path)}
    artifact_uri = settings.ml.artifact_location
    artifacts = Path(artifact_uri.removeprefix("file://")) if artifact_uri.startswith("file://") else None
    roots = [settings.data_dir] + ([artifacts] if artifacts and not artifacts.is_relative_to(settings.data_dir)
                                   else [])
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.is_relative_to(paths.privacy) or path.name.startswith(".") or path == paths.ledger:
                continue
            store = _store_of(path, paths, artifacts)
            name = path.name.lower()
            started = time.perf_counter()
            if path.resolve() in inbox and name.endswith(".parquet"):
                erasure.counts[f"{store}: rows"] += _erase_inbox_parquet(path, words, paths, settings.validation.limits)
            elif path.resolve() in inbox:
                if name.endswith(".gz") or _contains(path, needles):
                    erasure.counts[f"{store}: lines"] += _erase_inbox_file(path, words, paths, settings.validation.limits)
            elif name.endswith(".parquet"):
                erasure.counts[f"{store}: rows"] += erase_parquet(path, words)
            elif name.endswith((".db", ".sqlite")) and "mlflow" not in name:
                erasure.counts[f"{store}: rows"] += erase_sqlite(path, words)
            elif name.endswith(LINE_SUFFIXES) or name.endswith(".gz"):
                if _contains(path, needles) or name.endswith(".gz"):
                    kept, removed = lines_with(_bounded_text(path, settings.validation.limits), words, keep_first=".csv" in name)
                    if removed:
                        write_text(path, kept)
                        erasure.counts[f"{store}: lines"] += removed
            elif name.endswith(".json") and _contains(path, needles):
                erasure.counts[f"{store}: entries"] += erase_json(path, words)
            elif name.endswith(DELETED_SUFFIXES) and _contains(path, needles):
                path.unlink()
                erasure.counts[f"{store}: files deleted"] += 1
            erasure.timings[store] += time.perf_counter() - started
    if settings.profile == "production":
        started = time.perf_counter()
        erasure.counts["online store (Redis): keys"] += erase_redis(settings, words)
        erasure.timings["online store (Redis)"] += time.perf_counter() - started


# ------------------------------------------------------------------------------------ the request


def _journal(paths: DataPaths, erasure: Erasure) -> Path:
    folder = paths.erasures_pending
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{erasure.request}.json"
    tmp = folder / f".{erasure.request}.tmp"
    tmp.write_text(json.dumps({"request": erasure.request, "user_ids": erasure.user_ids,
                               "identifiers": erasure.identifiers}), encoding="utf-8")
    return replace_durably(tmp, path)


class ErasureBusy(RuntimeError):
    """An update held the data directory for too long; the erasure stays journaled (run it again)."""


class ErasureBlocked(ErasureBusy):
    """A file in a store cannot be read within the reader limits; the erasure stays journaled."""


def _finish(settings: Settings, erasure: Erasure, journal: Path, caller: str, wait_seconds: float) -> Erasure:
    from base.writer_lock import WriterBusy, writer_lock

    paths = DataPaths(settings.data_dir)
    try:  # the writer lock: no ingest, release or update (which holds it throughout) meanwhile
        with writer_lock(settings.data_dir, "persona forget", wait=wait_seconds):
            t = time.perf_counter()
            erase_files(settings, erasure)
    except WriterBusy as e:
        raise ErasureBusy(f"{e}; the erasure is journaled and its people suppressed: run `persona forget` "
                          "again to complete it") from e
    erasure.counts = +erasure.counts  # only the stores where something was erased
    erasure.seconds += time.perf_counter() - t
    paths.audit_log.parent.mkdir(parents=True, exist_ok=True)
    with paths.audit_log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(erasure.audit_line(caller)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    journal.unlink(missing_ok=True)
    return erasure


def pending(settings: Settings) -> list[Path]:
    """Journals of erasures that began and did not finish."""
    folder = DataPaths(settings.data_dir).erasures_pending
    return sorted(folder.glob("*.json")) if folder.exists() else []


def forget(settings: Settings, user_ids: list[str], caller: str, wait_seconds: float = 600.0) -> list[Erasure]:
    """Erase the users everywhere (finishing any erasure a crash interrupted first); idempotent. Waits up to
    ``wait_seconds`` for a running update to finish (:class:`ErasureBusy` after that)."""
    paths = DataPaths(settings.data_dir)
    done = []
    for journal in pending(settings):
        saved = json.loads(journal.read_text(encoding="utf-8"))
        erasure = Erasure(saved["request"], saved["user_ids"], saved["identifiers"])
        done.append(_finish(settings, erasure, journal, caller, wait_seconds))
    if not user_ids:
        return done
    t = time.perf_counter()
    erasure = Erasure(uuid.uuid4().hex[:16], sorted(set(user_ids)))
    erasure.identifiers = resolve(settings, erasure.user_ids)
    erasure.seconds = time.perf_counter() - t
    journal = _journal(paths, erasure)
    erasure.counts["suppression list: new tokens"] += add_tokens(
        paths.suppression, suppression_tokens(erasure.identifiers, settings.hash_salt))
    done.append(_finish(settings, erasure, journal, caller, wait_seconds))
    return done
