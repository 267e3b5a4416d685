"""Finished persona records in the online store, one per user, read by ``POST /persona``.

A record is stored as opaque bytes (the record's JSON, see scoring/records.py) with what decides
whether it can be served: the model versions that scored it, the time of the features it was scored
from, and its segment (for the metrics). SQLite: a table ``{project}_persona_records`` in Feast's
online database; Redis: one key per user, ``persona:record:{project}:{user}``. A write never replaces
a record scored from newer features (a batch re-score that read a user's features before a real-time
event cannot undo the event's record).

Re-score claims (``claim``/``finish``/``done``) let several workers agree that exactly one of them
re-scores every user for a new generation (new champions or a new snapshot).

Redis reads are cached in the process with Redis's own client-side caching (``CLIENT TRACKING``,
RESP3): record reads go over one connection of their own, Redis remembers which keys it read and
pushes an invalidation on that same connection when any client changes or deletes one of them
(another worker's event, a re-score, an erasure, a flush). Before each read the pushes waiting on the
socket are applied, and a key read from Redis is cached only after every push that came before its
value. Redis queues the push while it runs the write and sends it in the same pass of its event loop
as the writer's answer, so another worker's change is seen by the next read unless that read falls in
the microseconds between those two socket writes; a worker's own writes are dropped from its cache
at once. A lost
connection clears the cache; the connection is checked with a round trip at least once a second (a
silently broken link cannot keep a stale cache for longer); the cache holds at most ``CACHE_MAX``
records. Without it every ``POST /persona`` on the production profile paid a Redis round trip.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.online_layout import plain_redis, plain_sqlite, redis_client, sqlite_path

if TYPE_CHECKING:
    from feast import FeatureStore

CACHE_MAX = 20_000
"""Records cached per process (Redis); the cache is emptied when it would hold more."""
CHECK_EVERY = 1.0
"""Seconds between round trips on the caching connection when every read was served from the cache."""
log = logging.getLogger("persona.features.records")
RETRY_AFTER = 5.0
"""Seconds before a failed caching connection is tried again (reads go to Redis meanwhile)."""
_HEAD = struct.Struct("<dH")  # Redis value: feature time, length of the versions text, then versions, segment\0, body
SQL_CHUNK = 500

WRITE_NEWER = """
for i, key in ipairs(KEYS) do
  local new = ARGV[i]
  local cur = redis.call('GET', key)
  if (not cur) or struct.unpack('<d', string.sub(cur, 1, 8)) <= struct.unpack('<d', string.sub(new, 1, 8)) then
    redis.call('SET', key, new)
  end
end
return #KEYS
"""
"""Set each key unless its stored record was scored from newer features."""


@dataclass(frozen=True)
class StoredRecord:
    """One user's stored record."""

    feature_ts: float  # epoch seconds of the features it was scored from (0 for a cold start)
    versions: str
    segment: str
    body: bytes


class RecordStore:
    """Reads and writes persona records in the online store (thread-safe)."""

    def __init__(self, store: FeatureStore, cache: bool = True) -> None:
        """``cache``: cache Redis reads in the process (client-side caching, see the module's doc)."""
        self._sqlite = plain_sqlite(store)
        if not (self._sqlite or plain_redis(store)):
            raise ValueError(f"persona records need a SQLite or Redis online store, not {store.config.online_store.type!r}")
        self._project = store.project
        self._table = f"{store.project}_persona_records"
        self._claims = f"{store.project}_persona_rescore"
        self._path = sqlite_path(store) if self._sqlite else None
        self._lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._client = None if self._sqlite else redis_client(store)
        self._write_script = None if self._client is None else self._client.register_script(WRITE_NEWER)
        plain = self._client is not None and store.config.online_store.redis_type == "redis"
        self._cached = TrackedReads(self._client) if plain and cache else None

    # -- SQLite connections -------------------------------------------------------------------

    def _writer(self) -> sqlite3.Connection:
        from features.online_fold import wal_connection

        if self._write_conn is None:
            assert self._path is not None
            conn = wal_connection(self._path)  # WAL, synchronous=NORMAL: records are derived, commits atomic
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{self._table}" (user_id TEXT PRIMARY KEY, feature_ts REAL, '
                         "versions TEXT, segment TEXT, body BLOB) WITHOUT ROWID")
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{self._claims}" (generation TEXT PRIMARY KEY, state TEXT, at REAL)')
            self._write_conn = conn
        return self._write_conn

    def _reader(self) -> sqlite3.Connection:
        if self._read_conn is None:
            self._writer()  # the tables exist before the first read
            self._read_conn = sqlite3.connect(self._path, timeout=60, check_same_thread=False)  # type: ignore[arg-type]
        return self._read_conn

    # -- records --------------------------------------------------------------------------------

    def read(self, users: Sequence[str]) -> dict[str, StoredRecord]:
        """The stored records of these users (users without one are absent)."""
        unique = list(dict.fromkeys(users))
        if not unique:
            return {}
        if self._client is not None:
            out = {}
            keys = [self._key(u) for u in unique]
            values = self._cached.mget(keys) if self._cached is not None else None
            if values is None:  # no caching connection (or it just failed): a plain read
                values = self._client.mget(keys)
            for user, raw in zip(unique, values):
                if raw:
                    out[user] = _unpack(raw)
            return out
        found: dict[str, StoredRecord] = {}
        with self._lock:
            conn = self._reader()
            for start in range(0, len(unique), SQL_CHUNK):
                chunk = unique[start:start + SQL_CHUNK]
                for user, ts, versions, segment, body in conn.execute(
                        f'SELECT user_id, feature_ts, versions, segment, body FROM "{self._table}" '
                        f"WHERE user_id IN ({', '.join('?' * len(chunk))})", chunk):
                    found[user] = StoredRecord(ts, versions, segment, bytes(body))
        return found

    def write(self, rows: Sequence[tuple[str, StoredRecord]]) -> None:
        """Store records (one transaction; a record scored from newer features is kept)."""
        if not rows:
            return
        if self._client is not None:
            assert self._write_script is not None
            for start in range(0, len(rows), 2000):
                chunk = rows[start:start + 2000]
                keys = [self._key(u) for u, _ in chunk]
                self._write_script(keys=keys, args=[_pack(r) for _, r in chunk])
                if self._cached is not None:  # this worker's next read sees its own write (the push may trail)
                    self._cached.forget(keys)
            return
        with self._lock:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f'INSERT INTO "{self._table}" (user_id, feature_ts, versions, segment, body) VALUES (?, ?, ?, ?, ?) '
                    "ON CONFLICT(user_id) DO UPDATE SET feature_ts = excluded.feature_ts, versions = excluded.versions, "
                    "segment = excluded.segment, body = excluded.body "
                    f'WHERE excluded.feature_ts >= "{self._table}".feature_ts',
                    [(u, r.feature_ts, r.versions, r.segment, r.body) for u, r in rows])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def users(self) -> list[str]:
        """Every user with a record."""
        if self._client is not None:
            prefix = len(self._key(""))
            return sorted(k[prefix:].decode() for k in self._client.scan_iter(match=self._key("*"), count=5000))
        with self._lock:
            return [r[0] for r in self._reader().execute(f'SELECT user_id FROM "{self._table}" ORDER BY user_id')]

    def delete(self, users: Sequence[str]) -> int:
        """Remove these users' records (erasure); returns how many were removed."""
        if not users:
            return 0
        if self._client is not None:
            keys = [self._key(u) for u in users]
            n = int(self._client.delete(*keys))
            if self._cached is not None:
                self._cached.forget(keys)
            return n
        with self._lock:
            conn = self._writer()
            n = 0
            for start in range(0, len(users), SQL_CHUNK):
                chunk = list(users[start:start + SQL_CHUNK])
                n += conn.execute(f'DELETE FROM "{self._table}" WHERE user_id IN ({", ".join("?" * len(chunk))})',
                                  chunk).rowcount
            return n

    # -- re-score claims ------------------------------------------------------------------------

    def claim(self, generation: str, now: float, stale_after: float = 3600.0) -> bool:
        """True for the one caller that should re-score ``generation`` (a claim older than
        ``stale_after`` seconds and never finished, from a worker that died, can be taken again)."""
        if self._client is not None:
            return bool(self._client.set(self._claim_key(generation), f"running {now}", nx=True, ex=int(stale_after)))
        with self._lock:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(f'SELECT state, at FROM "{self._claims}" WHERE generation = ?', (generation,)).fetchone()
                mine = row is None or (row[0] == "running" and now - row[1] > stale_after)
                if mine:
                    conn.execute(f'INSERT OR REPLACE INTO "{self._claims}" VALUES (?, ?, ?)', (generation, "running", now))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return mine

    def finish(self, generation: str, now: float) -> None:
        """Mark ``generation`` re-scored."""
        if self._client is not None:
            self._client.set(self._claim_key(generation), f"done {now}")
            return
        with self._lock:
            self._writer().execute(f'INSERT OR REPLACE INTO "{self._claims}" VALUES (?, ?, ?)', (generation, "done", now))

    def done(self, generation: str) -> bool:
        """True once ``generation`` has been re-scored by some worker."""
        if self._client is not None:
            raw = self._client.get(self._claim_key(generation))
            return bool(raw) and raw.startswith(b"done")
        with self._lock:
            row = self._reader().execute(f'SELECT state FROM "{self._claims}" WHERE generation = ?', (generation,)).fetchone()
        return row is not None and row[0] == "done"

    def _key(self, user: str) -> bytes:
        return f"persona:record:{self._project}:{user}".encode()

    def _claim_key(self, generation: str) -> bytes:
        return f"persona:rescore:{self._project}:{generation}".encode()

    def close(self) -> None:
        """Close the SQLite connections (and the Redis caching connection)."""
        if self._cached is not None:
            self._cached.close()
        with self._lock:
            for conn in (self._read_conn, self._write_conn):
                if conn is not None:
                    conn.close()
            self._read_conn = self._write_conn = None


class TrackedReads:
    """``MGET`` through one RESP3 connection with ``CLIENT TRACKING ON``, cached in the process."""

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        self._make = lambda: pool.connection_class(**(pool.connection_kwargs | {"protocol": 3}))
        self._conn: Any = None
        self._cache: dict[bytes, bytes | None] = {}
        self._lock = threading.Lock()
        self._checked = self._retry_at = 0.0
        self.hits = self.misses = 0

    def _invalidate(self, push: list) -> None:
        keys = push[1] if len(push) > 1 else None
        if keys is None:  # a flush: everything
            self._cache.clear()
        else:
            for key in keys:
                self._cache.pop(key, None)

    def _connect(self) -> Any:
        conn = self._make()
        conn.connect()
        conn._parser.set_invalidation_push_handler(self._invalidate)
        conn.send_command("CLIENT", "TRACKING", "ON")
        if conn.read_response() not in (b"OK", "OK"):
            conn.disconnect()
            raise ConnectionError("CLIENT TRACKING ON refused")
        self._cache.clear()  # nothing cached before this connection is known to be current
        self._checked = time.monotonic()
        return conn

    def mget(self, keys: list[bytes]) -> list[bytes | None] | None:
        """The values of ``keys`` (None for a missing key); None when the caching connection is unusable
        (the caller reads without it)."""
        with self._lock:
            if self._conn is None and time.monotonic() < self._retry_at:
                return None
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                while conn.can_read(timeout=0):  # invalidations waiting on the socket
                    conn.read_response(push_request=True)
                cache = self._cache
                out = [cache.get(k, _MISSING) for k in keys]
                missing = [k for k, v in zip(keys, out) if v is _MISSING]
                now = time.monotonic()
                if not missing:
                    if now - self._checked >= CHECK_EVERY:  # a round trip now and then: the link is alive
                        conn.send_command("PING")
                        if conn.read_response() not in (b"PONG", "PONG"):
                            raise ConnectionError("PING not answered")
                        self._checked = now
                    self.hits += len(keys)
                    return out  # type: ignore[return-value]
                conn.send_command("MGET", *missing)
                values = conn.read_response()  # pushes sent before it are applied while reading
                if isinstance(values, Exception):
                    raise values
                self._checked = now
                if len(cache) + len(missing) > CACHE_MAX:
                    cache.clear()
                got = dict(zip(missing, values))
                cache.update(got)
                out = [got[k] if v is _MISSING else v for k, v in zip(keys, out)]
                self.hits += len(keys) - len(missing)
                self.misses += len(missing)
                return out  # type: ignore[return-value]
            except Exception as exc:  # noqa: BLE001 - connection trouble: drop the cache, read without it
                log.warning("record cache connection failed (%s); reading without it, next try in %.0fs", exc, RETRY_AFTER)
                self._drop()
                self._retry_at = time.monotonic() + RETRY_AFTER
                return None

    def _drop(self) -> None:
        self._cache.clear()
        if self._conn is not None:
            try:
                self._conn.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self._conn = None

    def forget(self, keys: list[bytes]) -> None:
        """Drop these keys from the cache (this process just wrote them)."""
        with self._lock:
            for key in keys:
                self._cache.pop(key, None)

    def close(self) -> None:
        """Close the connection and forget the cache."""
        with self._lock:
            self._drop()


_MISSING = object()


def _pack(r: StoredRecord) -> bytes:
    versions = r.versions.encode()
    return _HEAD.pack(r.feature_ts, len(versions)) + versions + r.segment.encode() + b"\0" + r.body


def _unpack(raw: Any) -> StoredRecord:
    ts, n = _HEAD.unpack_from(raw, 0)
    start = _HEAD.size
    versions = raw[start:start + n].decode()
    end = raw.index(b"\0", start + n)
    return StoredRecord(ts, versions, raw[start + n:end].decode(), bytes(raw[end + 1:]))
