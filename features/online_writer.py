"""A fast path from snapshots to the online store.

Feast's ``materialize`` scans every snapshot in the offline store and converts values row by row
(about 600 rows/s into SQLite here). Every user has a snapshot in the newest day partition, so the
newest partition *is* the latest value of every user: this writer reads only that partition, builds
the value protos column by column, hands them to the online store's own ``online_write_batch`` and
records the interval in the registry, so ``materialize_incremental`` and freshness stay correct.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from feast import FeatureStore


def _values(column: pd.Series, dtype_name: str) -> list[Any]:
    """Value protos for one column (null for missing)."""
    from feast.protos.feast.types.Value_pb2 import Value

    if dtype_name == "Int64":
        mask = column.isna().to_numpy()
        ints = column.fillna(0).astype("int64").tolist()
        return [Value() if m else Value(int64_val=v) for v, m in zip(ints, mask)]
    if dtype_name == "Float64":
        return [Value() if v != v else Value(double_val=v) for v in column.astype("float64").tolist()]
    if dtype_name == "String":
        return [Value() if v is None else Value(string_val=str(v)) for v in column.astype(object).tolist()]
    raise TypeError(f"unsupported feature type {dtype_name}")


def _plain_sqlite(store: "FeatureStore") -> bool:
    """SQLite without vector or text-search extras (the layout the fast upsert writes)."""
    cfg = store.config.online_store
    return (cfg.type == "sqlite" and not getattr(cfg, "vector_enabled", False)
            and not getattr(cfg, "enable_openai_compatible_store", False))


def _sqlite_upsert(store: "FeatureStore", fv: Any, keys: list[Any], names: list[str], columns: list[list[Any]],
                   times: Any, created: Any) -> None:
    """One ``executemany`` upsert into Feast's own SQLite table (Feast runs one statement per value)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.infra.online_stores.sqlite import _table_id

    config = store.config
    online = store._get_provider().online_store
    conn = online._get_conn(config)
    table = _table_id(store.project, fv, config.registry.enable_online_feature_view_versioning)
    version = config.entity_key_serialization_version
    rows = []
    for key, vals, ts, cts in zip(keys, zip(*columns), times, created):
        key_bin = serialize_entity_key(key, entity_key_serialization_version=version)
        ts, cts = ts.replace(tzinfo=None), cts.replace(tzinfo=None)
        for name, val in zip(names, vals):
            rows.append((key_bin, name, val.SerializeToString(), extract_text_and_num(val, False)[0], ts, cts))
    sql = (f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
           "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
           "created_ts = excluded.created_ts")
    with conn:
        conn.executemany(sql, rows)


def write_latest(store: "FeatureStore", view: str, frame: pd.DataFrame) -> int:
    """Write one row per entity (the newest) of ``frame`` to the online store; returns rows written."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    fv = store.get_feature_view(view)
    join_key = fv.entity_columns[0].name
    frame = frame.sort_values("event_timestamp").drop_duplicates(join_key, keep="last")
    names = [f.name for f in fv.features]
    columns = [_values(frame[n], str(f.dtype).split(".")[-1].capitalize()) for n, f in zip(names, fv.features)]
    keys = [EntityKey(join_keys=[join_key], entity_values=[Value(string_val=str(u))]) for u in frame[join_key]]
    times = list(frame["event_timestamp"].dt.to_pydatetime())
    created = list(frame["created"].dt.to_pydatetime()) if "created" in frame else times
    if _plain_sqlite(store):
        _sqlite_upsert(store, fv, keys, names, columns, times, created)
    else:
        rows = [(k, dict(zip(names, vals)), t, c) for k, vals, t, c in zip(keys, zip(*columns), times, created)]
        store._get_provider().online_write_batch(store.config, fv, rows, progress=None)
    start: datetime = frame["event_timestamp"].min().to_pydatetime()
    end: datetime = frame["event_timestamp"].max().to_pydatetime()
    store.registry.apply_materialization(fv, store.project, start, end, commit=True)
    return len(keys)

