"""Look for identifiers in every store: files (Parquet read column by column, SQLite row by row, gzip
decompressed, anything else as bytes), Redis keys and values, PostgreSQL text in a schema.

Written apart from the erasure code on purpose: it only reads, and knows nothing of the stores' layout.
"""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
from pathlib import Path

from base.pseudonym import pseudonym


def forms(raw: dict[str, str], key: str) -> dict[str, str]:
    """Each identifier raw, normalised, keyed pseudonym (e-mail, phone) and plain SHA-256."""
    out = dict(raw)
    for kind in ("email", "phone"):
        if kind in raw:
            out[f"{kind} pseudonym"] = pseudonym(raw[kind], key, kind) or ""
            out[f"{kind} lower"] = raw[kind].lower()
    for name in ("anonymous", "device", "session"):  # identifiers pseudonymised at the door
        if name in raw:
            out[f"{name} pseudonym"] = pseudonym(raw[name], key, name) or ""
    out["phone digits"] = "".join(c for c in raw.get("phone", "") if c.isdigit() or c == "+")
    for name, value in list(raw.items()):
        out[f"{name} sha256"] = hashlib.sha256(value.encode()).hexdigest()
    return {k: v for k, v in out.items() if v}


def _file_texts(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception:  # noqa: BLE001 - a Parquet file that cannot be read is scanned as bytes
            return [data]
        return [data] + [repr(table[c].to_pylist()).encode() for c in table.column_names]
    if data[:16] == b"SQLite format 3\x00":
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            chunks = [data]
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                for row in con.execute(f'SELECT * FROM "{table}"'):
                    chunks.append(b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row))
            return chunks
        finally:
            con.close()
    if data[:2] == b"\x1f\x8b":
        return [data, gzip.decompress(data)]
    return [data]


def scan_files(roots: list[Path], identifiers: dict[str, str]) -> dict[str, list[str]]:
    """``{identifier name: [files holding it]}`` over every file under ``roots``."""
    hits: dict[str, list[str]] = {}
    needles = {name: value.encode() for name, value in identifiers.items()}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            texts = _file_texts(path)
            for name, needle in needles.items():
                if any(needle in t for t in texts):
                    hits.setdefault(name, []).append(str(path))
    return hits


def scan_redis(identifiers: dict[str, str], project: str) -> dict[str, int]:
    """Keys of the project (and their values) holding an identifier."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    hits: dict[str, int] = {}
    for key in client.scan_iter(match=b"*" + project.encode(), count=1000):
        blob = key + b"".join(k + v for k, v in client.hgetall(key).items())
        for name, value in identifiers.items():
            if value.encode() in blob:
                hits[name] = hits.get(name, 0) + 1
    return hits


def scan_postgres(identifiers: dict[str, str], url: str, schemas: list[str]) -> dict[str, int]:
    """Rows of every table in ``schemas`` whose text holds an identifier."""
    import psycopg

    hits: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_schema = ANY(%s)", (schemas,)).fetchall()
        for schema, table in tables:
            for (text,) in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                for name, value in identifiers.items():
                    if value in text:
                        hits[name] = hits.get(name, 0) + 1
    return hits


def scan_contacts(roots: list[Path]) -> dict[str, list[str]]:
    """Files holding anything shaped like an e-mail address or an international phone number (shipped
    static assets such as the fonts of Great Expectations' Data Docs, which name their designers, aside)."""
    import re

    from base.pseudonym import EMAIL, PHONE

    patterns = {"email": re.compile(EMAIL.pattern.encode()), "phone": re.compile(PHONE.pattern.encode())}
    hits: dict[str, list[str]] = {}
    assets = (".otf", ".ttf", ".woff", ".woff2", ".eot", ".svg", ".png", ".ico", ".gif", ".jpg", ".css", ".js")
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in assets):
            for text in _file_texts(path)[1:] or _file_texts(path):
                for name, pattern in patterns.items():
                    found = pattern.search(text)
                    if found:
                        hits.setdefault(name, []).append(f"{path}: {found.group(0)[:60]!r}")
    return hits
