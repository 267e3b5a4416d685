"""A fast path from snapshots to the online store, byte for byte what Feast would write.

Feast's ``materialize`` scans every snapshot in the offline store and converts values row by row
(about 2,000 users/s from a single day here, far fewer over a long history). Every user has a snapshot in the newest day partition, so the
newest partition *is* the latest value of every user: this writer takes only that partition and

- encodes each column once: doubles straight into the fixed 9-byte ``Value`` layout with numpy,
  every other type as Feast's own protos of the column's distinct values (values repeat a lot);
- SQLite: binds one staging row per entity (all its values) and lets SQLite fan them out into
  Feast's one-row-per-feature table with a single ``INSERT ... SELECT`` upsert in key order, in one
  transaction (binding one row per value from Python was the bottleneck);
- Redis: ``HSET`` of each entity's hash in pipelined chunks, with Feast's key and field layout;
- one rule on both: a stored row with a *newer* event time is kept, a row of the same time is replaced
  (so a persona re-scored for the same snapshot with new models replaces the old one); on Redis
  ``skip_dedup`` turns the check off. Values the real-time path folded in after the snapshot's time
  stay until a newer snapshot (built from the clean store those events reach) replaces them. (Feast's
  own SQLite write always overwrites and its Redis write skips equal times, so the two profiles used
  to disagree.)
- any other online store: Feast's own ``online_write_batch``.

It then records the interval in the registry, so ``materialize_incremental`` and freshness stay right.
The layout itself is in features/online_layout.py; tests/integration/test_online_writer.py compares
the stored bytes with Feast's own materialize.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.online_layout import (
    entity_keys,
    join_key,
    key_version,
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
    from feast import FeatureStore, FeatureView

SQLITE_FEATURES_PER_PASS = 400
"""Features staged per pass (SQLite allows 2,000 columns and 32,766 parameters per statement)."""
REDIS_CHUNK = 2_000
"""Entities per Redis pipeline round trip."""


@dataclass
class Encoded:
    """One feature column as Feast stores it: serialized Value protos and SQLite's ``value_text``."""

    name: str
    values: np.ndarray  # object array of bytes (b"" is null)
    texts: np.ndarray  # object array of str | None


def _value_type(fv: "FeatureView", name: str) -> Any:
    return next(f.dtype.to_value_type() for f in fv.features if f.name == name)


def _by_distinct(codes: np.ndarray, uniques: list[Any], value_type: Any) -> tuple[np.ndarray, np.ndarray]:
    """Values and texts from Feast's protos of the distinct values (code -1 is null)."""
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.type_map import python_values_to_proto_values

    protos = python_values_to_proto_values(uniques, value_type) if uniques else []
    values = np.array([p.SerializeToString() for p in protos] + [b""], dtype=object)
    texts = np.array([extract_text_and_num(p, False)[0] for p in protos] + [None], dtype=object)
    return values[codes], texts[codes]


def encode_column(name: str, column: pd.Series, value_type: Any) -> Encoded:
    """Serialize one column the way Feast's materialize would (null for missing)."""
    from feast.value_type import ValueType

    if value_type == ValueType.DOUBLE:
        floats = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        raw = np.empty((len(floats), 9), dtype=np.uint8)
        raw[:, 0] = 0x29  # Value.double_val: field 5, fixed 64-bit
        raw[:, 1:] = floats.astype("<f8").view(np.uint8).reshape(-1, 8)
        values = raw.view("V9").ravel().astype(object)
        null = np.isnan(floats)
        codes, bits = pd.factorize(floats.view(np.int64))  # exact bits: 0.0 and -0.0 print differently
        texts = np.array([repr(float(b)) for b in bits.view(np.float64)] + [None], dtype=object)[codes]
        values[null], texts[null] = b"", None
        return Encoded(name, values, texts)
    if value_type in (ValueType.INT64, ValueType.INT32):
        ints = pd.to_numeric(column, errors="coerce")
        codes, uniques = pd.factorize(ints, use_na_sentinel=True)
        return Encoded(name, *_by_distinct(codes, [int(u) for u in uniques], value_type))
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return Encoded(name, *_by_distinct(codes, list(uniques), value_type))


def _epochs(times: pd.Series, convert: Any) -> list[Any]:
    """``convert`` applied once per distinct timestamp, spread over the rows."""
    codes, uniques = pd.factorize(times)
    converted = np.array([convert(t.to_pydatetime()) for t in uniques], dtype=object)
    return converted[codes].tolist()


def _sqlite_write(store: "FeatureStore", fv: "FeatureView", keys: list[bytes], columns: list[Encoded],
                  event: list[int], created: list[int]) -> None:
    """Upsert into Feast's table: one staging row per entity, fanned out by SQLite, in key order."""
    table = sqlite_table(store, fv)
    order = sorted(range(len(keys)), key=keys.__getitem__)  # the primary key's order: appends, not seeks
    path = sqlite_path(store)
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
            raise RuntimeError(f"{path}: no online table {table!r} for view {fv.name!r}: run `persona apply` first")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: the table's indexes stay in memory
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(columns), SQLITE_FEATURES_PER_PASS):
                _sqlite_pass(conn, table, keys, columns[start:start + SQLITE_FEATURES_PER_PASS], event, created, order)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _sqlite_pass(conn: sqlite3.Connection, table: str, keys: list[bytes], columns: list[Encoded],
                 event: list[int], created: list[int], order: list[int]) -> None:
    """Stage some features of every entity and upsert them into ``table``."""
    n = len(columns)
    conn.execute("DROP TABLE IF EXISTS temp.persona_stage")
    conn.execute("DROP TABLE IF EXISTS temp.persona_stage_names")
    conn.execute("CREATE TEMP TABLE persona_stage_names (i INTEGER, name TEXT)")
    ranked = sorted(range(n), key=lambda i: columns[i].name)  # names in primary key order too
    conn.executemany("INSERT INTO persona_stage_names VALUES (?, ?)", [(i, columns[i].name) for i in ranked])
    conn.execute("CREATE TEMP TABLE persona_stage (k BLOB, e INTEGER, c INTEGER, "
                 + ", ".join(f"v{i} BLOB, t{i} TEXT" for i in range(n)) + ")")
    idx = np.asarray(order, dtype=np.intp)
    lists = [x for col in columns for x in (col.values[idx].tolist(), col.texts[idx].tolist())]
    rows = zip([keys[i] for i in order], [event[i] for i in order], [created[i] for i in order], *lists)
    conn.executemany(f"INSERT INTO persona_stage VALUES ({', '.join('?' * (3 + 2 * n))})", rows)
    pick = lambda col: "CASE f.i " + " ".join(f"WHEN {i} THEN s.{col}{i}" for i in range(n)) + " END"  # noqa: E731
    conn.execute(
        f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
        f"SELECT s.k, f.name, {pick('v')}, {pick('t')}, s.e, s.c "
        "FROM persona_stage AS s CROSS JOIN persona_stage_names AS f WHERE true "
        "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
        "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts "
        f'WHERE excluded.event_ts >= "{table}".event_ts')  # a newer stored row (live values after the snapshot) stays
    conn.execute("DROP TABLE temp.persona_stage")
    conn.execute("DROP TABLE temp.persona_stage_names")


def _redis_write(store: "FeatureStore", fv: "FeatureView", keys: list[bytes], columns: list[Encoded],
                 times: pd.Series) -> None:
    """HSET each entity's hash in pipelined chunks.

    An entity whose stored event is newer is left alone unless the store sets ``skip_dedup`` (Feast
    also skips equal times; here a row of the same time is replaced, as on SQLite).
    """
    from google.protobuf.timestamp_pb2 import Timestamp

    cfg = store.config.online_store
    client = redis_client(store)
    view = online_name(store, fv)
    project = store.project.encode()
    rkeys = [k + project for k in keys]
    ts_field = redis_ts_field(view)
    stamps = _epochs(times, redis_timestamp)
    nanos = (times.astype("int64") // 1000 * 1000).to_numpy()  # Feast keeps microseconds
    fields = [ts_field] + [redis_field(view, c.name) for c in columns]
    cells = np.empty((len(keys), 2 * len(fields)), dtype=object)
    cells[:, 0::2] = np.array(fields, dtype=object)
    cells[:, 1] = stamps
    for i, col in enumerate(columns):
        cells[:, 3 + 2 * i] = col.values
    keep = np.ones(len(keys), dtype=bool)
    if not getattr(cfg, "skip_dedup", False):
        prev = Timestamp()
        for start in range(0, len(keys), REDIS_CHUNK):
            with client.pipeline(transaction=False) as pipe:
                for k in rkeys[start:start + REDIS_CHUNK]:
                    pipe.hget(k, ts_field)
                for j, raw in enumerate(pipe.execute(), start):
                    if raw:
                        prev.ParseFromString(raw)
                        keep[j] = nanos[j] >= prev.seconds * 1_000_000_000 + prev.nanos
    ttl = getattr(cfg, "key_ttl_seconds", None)
    rows = cells.tolist()
    chosen = np.flatnonzero(keep).tolist()
    for start in range(0, len(chosen), REDIS_CHUNK):
        with client.pipeline(transaction=False) as pipe:
            for j in chosen[start:start + REDIS_CHUNK]:
                pipe.execute_command("HSET", rkeys[j], *rows[j])
                if ttl:
                    pipe.expire(rkeys[j], ttl)
            pipe.execute()


def _feast_write(store: "FeatureStore", fv: "FeatureView", key_name: str, ids: list[str],
                 columns: list[Encoded], times: pd.Series, created: pd.Series) -> None:
    """Any other online store: Feast's own batch write, from the same encoded values."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    def proto(raw: bytes) -> Value:
        val = Value()
        val.ParseFromString(raw)
        return val

    names = [c.name for c in columns]
    rows = [(EntityKey(join_keys=[key_name], entity_values=[Value(string_val=u)]),
             dict(zip(names, (proto(v) for v in vals))), t, c)
            for u, vals, t, c in zip(ids, zip(*(c.values for c in columns)), times.dt.to_pydatetime(),
                                     created.dt.to_pydatetime())]
    store._get_provider().online_write_batch(store.config, fv, rows, progress=None)


def write_latest(store: "FeatureStore", view: str, frame: pd.DataFrame) -> int:
    """Write one row per entity (the newest) of ``frame`` to the online store; returns the entities.

    On both stores an entity whose stored event is newer is left as it is.
    """
    fv = store.get_feature_view(view)
    key_name = join_key(fv)
    missing = [c for c in [key_name, "event_timestamp", *(f.name for f in fv.features)] if c not in frame]
    if missing:
        raise ValueError(f"feature view {view!r}: snapshot frame lacks columns {missing}")
    frame = frame.sort_values("event_timestamp", kind="stable").drop_duplicates(key_name, keep="last")
    if frame.empty:
        return 0
    ids = frame[key_name].astype(str).tolist()
    times = pd.to_datetime(frame["event_timestamp"], utc=True)
    created = pd.to_datetime(frame["created"], utc=True) if "created" in frame else times
    columns = [encode_column(f.name, frame[f.name], _value_type(fv, f.name)) for f in fv.features]
    keys = entity_keys(key_name, ids, key_version(store))
    if plain_sqlite(store):
        _sqlite_write(store, fv, keys, columns, _epochs(times, sqlite_epoch), _epochs(created, sqlite_epoch))
    elif plain_redis(store):
        _redis_write(store, fv, keys, columns, times)
    else:
        _feast_write(store, fv, key_name, ids, columns, times, created)
    start: datetime = times.min().to_pydatetime()
    end: datetime = times.max().to_pydatetime()
    store.registry.apply_materialization(fv, store.project, start, end, commit=True)
    return len(ids)
