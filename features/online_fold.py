"""Fold real-time events into the online store atomically, once per event id, across workers.

One call of :meth:`OnlineFold.apply` is one atomic unit in the online store itself:

1. claim the batch's event ids in a durable table of ids already folded (kept
   ``serving.dedup_retention_days``); ids already there are duplicates and are not folded again;
2. read the users' current ``user_behaviour`` and ``user_activity`` values (and ``user_lifetime``'s, when
   the fold is given that view);
3. fold the new events in (features/live_behaviour.py, features/realtime.py, and the lifetime fold of
   features/lifetime.py with each buyer's ``last_purchase_ts`` as it was before these events);
4. write the views' rows and the claimed ids.

SQLite: all four steps run in one ``BEGIN IMMEDIATE`` transaction on Feast's online database
(the id table lives in the same file), so two workers, two threads or a crash never apply an event
twice or lose an update: the transaction commits whole or not at all. Redis: an optimistic
transaction (``WATCH`` the users' hashes and the ids' keys, read everything in one pipelined round
trip, fold, ``MULTI``/``EXEC``), retried when another writer touched a watched key in between; ids are
keys with an expiry. The lifetime values are folded in the same atomic step, so a crash never leaves
them behind the behaviour values. Values and keys are
written in Feast's own layout (features/online_layout.py), so Feast and the fast reader read them.

Durability (the fsync policy): an event is durable once the service's event log has it (flushed with
``fsync`` before the answer, serving/event_log.py); the online values are derived from that log and
rebuilt by the next snapshot. So the online SQLite database runs in WAL mode with ``synchronous=NORMAL``
on the fold's and the record store's connections (:func:`wal_connection`): a commit is atomic and
survives a killed process whole (the ids with the values: never half a fold), without waiting for the
disk at each commit (a rollback-journal commit waits for several fsyncs, tens of milliseconds on a busy
disk). Only a power loss can take back the last commits, ids and values together; the next snapshot
holds those events anyway, and a re-sent one is folded once.

The retention only has to outlast the next snapshot: the snapshot built from the clean store (where
ingest de-duplicates by event id for good) replaces the folded values with exact ones.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.online_layout import (
    entity_keys,
    from_redis_timestamp,
    from_sqlite_epoch,
    join_key,
    key_version,
    number,
    online_name,
    plain_redis,
    plain_sqlite,
    redis_client,
    redis_field,
    redis_timestamp,
    redis_ts_field,
    sqlite_epoch,
    sqlite_path,
    sqlite_table,
)

if TYPE_CHECKING:
    from feast import FeatureStore

REDIS_ATTEMPTS = 100
SMALL_FOLD = 64  # rows up to which values are encoded one by one (_encoded)
_DOUBLE = struct.Struct("<d")
_DOUBLE_TAG, _INT64_TAG, _INT32_TAG = b"\x29", b"\x20", b"\x18"  # Value.double_val = 5, int64_val = 4, int32_val = 3
PRUNE_EVERY = 500  # SQLite: forget expired ids every this many folds
Current = dict[str, dict[str, float | None]]
READ_ALL = """
local n = tonumber(ARGV[1])
local out = {}
if n > 0 then out[1] = redis.call('MGET', unpack(KEYS, 1, n)) else out[1] = {} end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
for i = n + 1, #KEYS do out[#out + 1] = redis.call('HMGET', KEYS[i], unpack(fields)) end
return out
"""
"""Redis: the ids' markers (MGET) and the users' hashes (HMGET of every view's fields), one round trip."""


@dataclass(frozen=True)
class FoldResult:
    """What one atomic fold did."""

    fresh: list[str]
    """Event ids folded now (the others of the batch had been folded before)."""
    users: list[str]
    """Users whose online values changed."""
    activity: pd.DataFrame
    """The ``user_activity`` rows written (for the append-only offline copy)."""
    lifetime_users: list[str] = ()  # type: ignore[assignment]
    """Users whose ``user_lifetime`` values were folded (buyers among ``users``)."""


@dataclass
class _View:
    """One view as the fold reads and writes it."""

    name: str
    fields: list[str]
    types: list[Any]  # Feast ValueType per field
    table: str
    hash_fields: list[bytes]
    ts_field: bytes


class OnlineFold:
    """Atomic, de-duplicated folds of events into the behaviour and activity views (thread-safe)."""

    def __init__(self, store: FeatureStore, behaviour_view: str, activity_view: str, retention_s: float,
                 lifetime_view: str | None = None) -> None:
        self.store = store
        self.retention_s = retention_s
        self._sqlite = plain_sqlite(store)
        if not (self._sqlite or plain_redis(store)):
            raise ValueError(f"the real-time fold needs a SQLite or Redis online store, not "
                             f"{store.config.online_store.type!r}")
        views = [store.get_feature_view(behaviour_view), store.get_feature_view(activity_view)]
        self._key_name = join_key(views[0])
        self._version = key_version(store)
        self.behaviour, self.activity = (self._layout(fv) for fv in views)
        self.lifetime = self._layout(store.get_feature_view(lifetime_view)) if lifetime_view else None
        self._project = store.project
        self._lock = threading.Lock()
        self._folds = 0
        self._conn: sqlite3.Connection | None = None
        self._ids_table = f"{self._project}_persona_event_ids"
        self._client = None if self._sqlite else redis_client(store)

    def _layout(self, fv: Any) -> _View:
        stored = online_name(self.store, fv)
        names = [f.name for f in fv.features]
        return _View(name=fv.name, fields=names, types=[f.dtype.to_value_type() for f in fv.features],
                     table=sqlite_table(self.store, fv) if self._sqlite else "",
                     hash_fields=[redis_field(stored, n) for n in names], ts_field=redis_ts_field(stored))

    # -- the fold itself (no I/O) -------------------------------------------------------------

    def _fold(self, frame: pd.DataFrame, behaviour: Current, behaviour_ts: dict[str, float | None],
              activity: Current, now_s: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        from features.live_behaviour import folded_rows
        from features.realtime import COUNTERS, fold, summarise

        rows = folded_rows(frame, behaviour, behaviour_ts, self.behaviour.fields, now_s)
        with_user = frame.loc[frame["user_id"].notna()]
        if with_user.empty:
            return rows, pd.DataFrame(columns=["user_id", "event_timestamp", *COUNTERS])
        new = summarise(with_user) if len(with_user) > SMALL_FOLD else summarise_small(with_user)
        stored = pd.DataFrame([{c: _nan(activity.get(u, {}).get(c)) for c in COUNTERS} for u in new.index],
                              index=new.index, columns=list(COUNTERS), dtype=float)
        return rows, fold(new, stored)

    def _buyers(self, frame: pd.DataFrame) -> list[str]:
        """Known users with a purchase in ``frame`` (whose lifetime values the fold moves)."""
        from features.compute import is_known_user

        if self.lifetime is None:
            return []
        buys = frame.loc[is_known_user(frame["user_id"]) & (frame["event_type"] == "purchase")]
        return sorted(buys["user_id"].astype(str).unique())

    def _fold_lifetime(self, frame: pd.DataFrame, behaviour: Current, lifetime: Current,
                       lifetime_ts: dict[str, float | None]) -> pd.DataFrame:
        """New ``user_lifetime`` rows of the buyers in ``frame``: their stored values folded with their
        purchases, with ``last_purchase_ts`` from ``behaviour`` as read before this fold (the values that
        move with time, such as the BTYD age, are derived at read time: features/time_features.py)."""
        from features.compute import is_known_user
        from features.lifetime import COLUMNS, INTEGER_COLUMNS, fold_lifetime

        assert self.lifetime is not None
        buys = frame.loc[is_known_user(frame["user_id"]) & (frame["event_type"] == "purchase")]
        if buys.empty:
            return pd.DataFrame()
        rows = []
        for user, group in buys.groupby("user_id", sort=True):
            last = behaviour.get(user, {}).get("last_purchase_ts")
            folded = fold_lifetime(lifetime.get(user, {}), group, last)
            newest = group["timestamp"].max()
            stored = lifetime_ts.get(user)
            stamp = max(newest, pd.Timestamp(stored, unit="s", tz="UTC")) if stored else newest
            rows.append({"user_id": user, "event_timestamp": stamp, **{c: folded.get(c) for c in COLUMNS}})
        out = pd.DataFrame(rows, columns=["user_id", "event_timestamp", *self.lifetime.fields])
        if len(out) > SMALL_FOLD:  # the bulk encoder wants numeric columns; _encoded takes the values as they are
            for c in self.lifetime.fields:
                out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64" if c in INTEGER_COLUMNS else float)
        return out

    def apply(self, frame: pd.DataFrame, now_s: float) -> FoldResult:
        """Fold the canonical events of ``frame`` whose ids were never folded; atomic in the store."""
        if frame.empty:
            return FoldResult([], [], pd.DataFrame())
        frame = frame.drop_duplicates("event_id")
        with self._lock:
            if self._sqlite:
                return self._sqlite_apply(frame, now_s)
            return self._redis_apply(frame, now_s)

    def seen(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` already folded (a quick look, outside any transaction)."""
        if not ids:
            return set()
        with self._lock:
            if self._sqlite:
                conn = self._connection()
                found: set[str] = set()
                for start in range(0, len(ids), 500):
                    chunk = list(ids[start:start + 500])
                    found |= {r[0] for r in conn.execute(
                        f'SELECT event_id FROM "{self._ids_table}" WHERE event_id IN ({", ".join("?" * len(chunk))})',
                        chunk)}
                return found
            assert self._client is not None
            got = self._client.mget([self._id_key(i) for i in ids])
            return {i for i, v in zip(ids, got) if v is not None}

    # -- SQLite ---------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            path = sqlite_path(self.store)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no online store yet: run `persona materialize` first")
            conn = wal_connection(path)
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{self._ids_table}" '
                         "(event_id TEXT PRIMARY KEY, seen REAL NOT NULL) WITHOUT ROWID")
            conn.execute(f'CREATE INDEX IF NOT EXISTS "{self._ids_table}_seen" ON "{self._ids_table}" (seen)')
            self._conn = conn
        return self._conn

    def _sqlite_read(self, conn: sqlite3.Connection, view: _View, users: list[str]) -> tuple[Current, dict]:
        keys = entity_keys(self._key_name, users, self._version)
        user_of = dict(zip(keys, users))
        values: Current = {u: {} for u in users}
        stamps: dict[str, float | None] = {}
        wanted = set(view.fields)
        for start in range(0, len(keys), 400):
            chunk = keys[start:start + 400]
            for key, name, raw, ts in conn.execute(
                    f'SELECT entity_key, feature_name, value, event_ts FROM "{view.table}" '
                    f"WHERE entity_key IN ({', '.join('?' * len(chunk))})", chunk):
                user = user_of[bytes(key)]
                if name in wanted:
                    values[user][name] = _none(number(raw))
                when = from_sqlite_epoch(ts)
                stamps[user] = max(stamps.get(user) or when, when)
        return values, stamps

    def _sqlite_write(self, conn: sqlite3.Connection, view: _View, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        keys = entity_keys(self._key_name, rows["user_id"].astype(str).tolist(), self._version)
        stamps = [sqlite_epoch(t.to_pydatetime()) for t in pd.to_datetime(rows["event_timestamp"], utc=True)]
        cells = []
        for name, kind in zip(view.fields, view.types):
            values, texts = _encoded(name, rows[name], kind)
            cells += [(k, name, v, t, s, s) for k, v, t, s in zip(keys, values, texts, stamps)]
        conn.executemany(
            f'INSERT INTO "{view.table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
            "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts",
            cells)

    def _sqlite_apply(self, frame: pd.DataFrame, now_s: float) -> FoldResult:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes
        try:
            ids = frame["event_id"].astype(str).tolist()
            done: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                done |= {r[0] for r in conn.execute(
                    f'SELECT event_id FROM "{self._ids_table}" WHERE event_id IN ({", ".join("?" * len(chunk))})',
                    chunk)}
            fresh = frame.loc[~frame["event_id"].isin(done)]
            users = sorted(fresh["user_id"].dropna().astype(str).unique())
            if fresh.empty:
                conn.execute("COMMIT")
                return FoldResult([], [], pd.DataFrame())
            behaviour, stamps = self._sqlite_read(conn, self.behaviour, users)
            activity, _ = self._sqlite_read(conn, self.activity, users)
            buyers = self._buyers(fresh)
            rows, act = self._fold(fresh, behaviour, stamps, activity, now_s)
            self._sqlite_write(conn, self.behaviour, rows)
            self._sqlite_write(conn, self.activity, act)
            if buyers:
                assert self.lifetime is not None
                lifetime, life_ts = self._sqlite_read(conn, self.lifetime, buyers)
                self._sqlite_write(conn, self.lifetime, self._fold_lifetime(fresh, behaviour, lifetime, life_ts))
            conn.executemany(f'INSERT INTO "{self._ids_table}" (event_id, seen) VALUES (?, ?)',
                             [(i, now_s) for i in fresh["event_id"].astype(str)])
            self._folds += 1
            if self._folds % PRUNE_EVERY == 0:
                conn.execute(f'DELETE FROM "{self._ids_table}" WHERE seen < ?', (now_s - self.retention_s,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return FoldResult(fresh["event_id"].astype(str).tolist(), users, act, buyers)

    # -- Redis ----------------------------------------------------------------------------------

    def _id_key(self, event_id: str) -> bytes:
        return f"persona:event_id:{self._project}:{event_id}".encode()

    def _redis_views(self) -> list[_View]:
        return [v for v in (self.behaviour, self.activity, self.lifetime) if v is not None]

    def _redis_read(self, pipe: Any, id_keys: list[bytes], keys: list[bytes],
                    users: list[str]) -> tuple[list[Any], dict[str, tuple[Current, dict]]]:
        """The ids' markers and every view's values of the users, in one round trip (READ_ALL)."""
        views = self._redis_views()
        fields = [f for v in views for f in (*v.hash_fields, v.ts_field)]
        reply = pipe.execute_command("EVAL", READ_ALL, len(id_keys) + len(keys), *id_keys, *keys,
                                     len(id_keys), *fields)
        marks, hashes = reply[0], reply[1:]
        out: dict[str, tuple[Current, dict]] = {v.name: ({}, {}) for v in views}
        for user, values in zip(users, hashes):
            at = 0
            for v in views:
                part = values[at:at + len(v.fields) + 1]
                at += len(v.fields) + 1
                out[v.name][0][user] = {n: _none(number(raw)) if raw else None for n, raw in zip(v.fields, part)}
                out[v.name][1][user] = from_redis_timestamp(part[-1]) if part[-1] else None
        return marks, out

    def _redis_write(self, pipe: Any, view: _View, rows: pd.DataFrame, ttl: int | None) -> None:
        if rows.empty:
            return
        keys = entity_keys(self._key_name, rows["user_id"].astype(str).tolist(), self._version)
        project = self._project.encode()
        columns = [_encoded(n, rows[n], k)[0] for n, k in zip(view.fields, view.types)]
        times = pd.to_datetime(rows["event_timestamp"], utc=True)
        for i, (key, when) in enumerate(zip(keys, times)):
            pairs: list[bytes] = [view.ts_field, redis_timestamp(when.to_pydatetime())]
            for f, col in zip(view.hash_fields, columns):
                pairs += [f, bytes(col[i])]
            pipe.execute_command("HSET", key + project, *pairs)
            if ttl:
                pipe.expire(key + project, ttl)

    def _redis_apply(self, frame: pd.DataFrame, now_s: float) -> FoldResult:
        from redis.exceptions import WatchError

        assert self._client is not None
        ttl = getattr(self.store.config.online_store, "key_ttl_seconds", None)
        all_users = sorted(frame["user_id"].dropna().astype(str).unique())
        keys = [k + self._project.encode() for k in entity_keys(self._key_name, all_users, self._version)]
        ids = frame["event_id"].astype(str).tolist()
        id_keys = [self._id_key(i) for i in ids]
        for _ in range(REDIS_ATTEMPTS):
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys, *id_keys)
                    marks, read = self._redis_read(pipe, id_keys, keys, all_users)
                    done = {i for i, v in zip(ids, marks) if v is not None}
                    fresh = frame.loc[~frame["event_id"].isin(done)]
                    if fresh.empty:
                        pipe.unwatch()
                        return FoldResult([], [], pd.DataFrame())
                    users = sorted(fresh["user_id"].dropna().astype(str).unique())
                    behaviour, stamps = read[self.behaviour.name]
                    activity, _ = read[self.activity.name]
                    rows, act = self._fold(fresh, behaviour, stamps, activity, now_s)
                    buyers = self._buyers(fresh)
                    pipe.multi()
                    self._redis_write(pipe, self.behaviour, rows, ttl)
                    self._redis_write(pipe, self.activity, act, ttl)
                    if buyers:
                        assert self.lifetime is not None
                        lifetime, life_ts = read[self.lifetime.name]
                        self._redis_write(pipe, self.lifetime,
                                          self._fold_lifetime(fresh, behaviour, lifetime, life_ts), ttl)
                    for i in fresh["event_id"].astype(str):
                        pipe.set(self._id_key(i), b"1", ex=max(1, int(self.retention_s)))
                    pipe.execute()
                    return FoldResult(fresh["event_id"].astype(str).tolist(), users, act, buyers)
                except WatchError:
                    continue
        raise RuntimeError(f"online fold: {REDIS_ATTEMPTS} attempts lost to concurrent writers of the same users")

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def wal_connection(path: Path) -> sqlite3.Connection:
    """A connection to the online SQLite database for the real-time writers (autocommit, any thread): WAL
    journal, ``synchronous=NORMAL`` (see the module docstring). The journal mode stays with the file;
    should another connection hold it in rollback mode at that moment, the writes are as safe, only slower."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def summarise_small(events: pd.DataFrame) -> pd.DataFrame:
    """``features.realtime.summarise`` for a few events, in plain Python (the same frame, dtypes included):
    per user and UTC day of the newest event, counts, spend, newest time and the events of its last hour."""
    from features.realtime import DAY_S

    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    by_user: dict[str, list[tuple[float, bool, float]]] = {}
    amounts = pd.to_numeric(events["amount"], errors="coerce").tolist()
    for user, when, kind, amount in zip(events["user_id"].tolist(), events["timestamp"].tolist(),
                                        events["event_type"].tolist(), amounts):
        buy = kind == "purchase"
        spend = float(amount) if buy and amount is not None and not math.isnan(amount) else 0.0
        by_user.setdefault(user, []).append(((when - epoch).total_seconds(), buy, spend))
    rows = []
    for user in sorted(by_user):
        got = by_user[user]
        newest = max(t for t, _, _ in got)
        day = int(newest // DAY_S)
        today = [g for g in got if int(g[0] // DAY_S) == day]
        rows.append((user, day, len(today), sum(1 for _, b, _ in today if b), sum(s for _, _, s in today),
                     max(t for t, _, _ in today), sum(1 for t, _, _ in got if t >= newest - 3600.0)))
    out = pd.DataFrame(rows, columns=["user_id", "day", "events", "purchases", "spend", "last_ts", "recent"])
    out = out.astype({"day": np.int64, "events": np.int64, "purchases": np.int64, "spend": float, "last_ts": float,
                      "recent": np.int64})
    return out.set_index("user_id")


def _encoded(name: str, column: pd.Series, kind: Any) -> tuple[list[bytes], list[str | None]]:
    """The column serialized as Feast stores it (values; SQLite's ``value_text``), b""/None for null.

    A real-time fold writes a row or a few: numbers are encoded one by one (a Value proto of one field),
    which costs microseconds where the vectorised encoder of bulk writes costs milliseconds of pandas;
    larger folds and other types use that encoder (features/online_writer.py), byte for byte the same."""
    from feast.value_type import ValueType

    from features.online_writer import encode_column

    if len(column) > SMALL_FOLD or kind not in (ValueType.DOUBLE, ValueType.INT64, ValueType.INT32):
        enc = encode_column(name, column, kind)
        return enc.values.tolist(), enc.texts.tolist()
    values: list[bytes] = []
    texts: list[str | None] = []
    for v in column.tolist():
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            values.append(b"")
            texts.append(None)
        elif kind == ValueType.DOUBLE:
            f = float(v)
            values.append(_DOUBLE_TAG + _DOUBLE.pack(f))
            texts.append(repr(f))
        else:
            i = int(v)
            values.append((_INT64_TAG if kind == ValueType.INT64 else _INT32_TAG) + _varint(i))
            texts.append(str(i))
    return values, texts


def _varint(i: int) -> bytes:
    """Protobuf varint of a signed 64-bit integer (two's complement for negatives)."""
    n = i & 0xFFFFFFFFFFFFFFFF if i < 0 else i
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)
