"""Fast in-process online reads of a feature service, straight from Feast's online store.

``store.get_online_features`` spends most of a one-user read in Python bookkeeping (resolving
references, building protos, converting the response). ``OnlineReader`` resolves the service's
views, fields, tables and hash fields once, then each ``read`` is one query (SQLite: a single
``SELECT ... UNION ALL`` over the views' tables; Redis: one pipelined ``HMGET`` per user and view)
and a direct decode of Feast's serialized values into a numpy matrix; no pandas on the path.

It reads batch views (materialized) and push views (``store.push``) alike: a value pushed a moment
ago is read by the next call. Like Feast's online read, it does not apply the views' TTL.

Values: numeric fields (Int32/Int64, Float32/Float64, Bool as 0/1, UnixTimestamp as epoch seconds)
fill ``OnlineBatch.values`` (NaN when missing). Non-numeric fields (String, Bytes, lists, ...) keep
their column in ``values`` as NaN, so columns always match ``features``, and their decoded Python
values (as ``get_online_features`` returns them, None when missing) are in ``OnlineBatch.other``.
On-demand views whose inputs are batch-view fields and the request time (``user_time``: recency,
tenure, the BTYD age; features/time_features.py) are computed here per read with the view's own
function and ``request_ts`` = now (or the time given); other on-demand views are refused.

A reader is bound to the registry as it was when it was made: make a new one after ``apply``.
"""

from __future__ import annotations

import copy
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from features.online_layout import (
    NAN,
    entity_keys,
    from_redis_timestamp,
    from_sqlite_epoch,
    join_key,
    key_version,
    number,
    online_name,
    plain_redis,
    plain_sqlite,
    python_value,
    redis_client,
    redis_field,
    redis_ts_field,
    sqlite_path,
    sqlite_table,
)
from features.store import FEATURE_SERVICE

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

_double = struct.Struct("<d").unpack_from
_length = struct.Struct("<I").unpack_from
_MISSING = 0xFFFFFFFF

HMGET_PACKED = """
local out = {}
for i, key in ipairs(KEYS) do
  local vals = redis.call('HMGET', key, unpack(ARGV))
  local parts = {}
  for j = 1, #ARGV do
    local v = vals[j]
    if v then parts[j] = struct.pack('<I4', #v) .. v else parts[j] = '\\255\\255\\255\\255' end
  end
  out[i] = table.concat(parts)
end
return out
"""
"""Per key, HMGET of the fields (ARGV) as one string: each value prefixed by its little-endian
32-bit length, 0xFFFFFFFF for a missing field."""


def _unpack(blob: bytes, n: int) -> list[bytes | None]:
    """The ``n`` values of one ``HMGET_PACKED`` string (None for a missing field)."""
    out: list[bytes | None] = []
    pos = 0
    for _ in range(n):
        size = _length(blob, pos)[0]
        pos += 4
        if size == _MISSING:
            out.append(None)
        else:
            out.append(blob[pos:pos + size])
            pos += size
    return out

SCRIPT_MIN_USERS = 8  # below this a plain HMGET pipeline is cheaper than the packing script
MAX_SQL_PARAMS = 30_000  # below SQLite's 32,766 parameters per statement
NUMERIC_TYPES = frozenset({"INT32", "INT64", "FLOAT", "DOUBLE", "BOOL", "UNIX_TIMESTAMP"})


@dataclass
class OnlineBatch:
    """Feature values of a batch of users, in the order they were asked for."""

    features: list[str]
    """The service's feature names, in the service's order (the columns of ``values``)."""
    values: np.ndarray
    """float64 matrix, users x features; NaN where a value is missing or not numeric."""
    times: list[float | None]
    """Per user, the newest event time (epoch seconds) across the views; None for an unknown user."""
    other: dict[str, list[Any]] = field(default_factory=dict)
    """Non-numeric features by name: one decoded value (or None) per user."""

    def column(self, name: str) -> np.ndarray:
        """The values of one feature, one per user."""
        return self.values[:, self.features.index(name)]


@dataclass
class _View:
    """One feature view of the service, resolved for reading."""

    name: str
    table: str  # SQLite table
    numbers: dict[str, int]  # numeric feature -> column in the batch
    other: dict[str, int]  # non-numeric feature -> column in the batch
    fields: list[bytes]  # Redis hash fields of the requested features, then the _ts field
    names: list[str]  # the requested features, in the order of ``fields``


class OnlineReader:
    """Reads one feature service for batches of users; construct once, call ``read`` per request."""

    def __init__(self, store: "FeatureStore", feature_service: "str | FeatureService" = FEATURE_SERVICE,
                 *, full_feature_names: bool = False) -> None:
        from feast import FeatureService

        from features.time_features import udf_grid

        service = (feature_service if isinstance(feature_service, FeatureService)
                   else store.get_feature_service(feature_service))
        self.service = service.name
        self._sqlite = plain_sqlite(store)
        self._redis = plain_redis(store)
        if not (self._sqlite or self._redis):
            kind = store.config.online_store.type
            raise ValueError(f"OnlineReader reads SQLite or Redis online stores, not {kind!r}")
        self.features: list[str] = []
        self._views: list[_View] = []
        self._join_key = ""
        self._version = key_version(store)
        views = {v.name: v for v in store.list_feature_views()}
        odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
        wanted: dict[str, Any] = {}  # view -> projection read (the service's fields, then the on-demand inputs)
        outputs: list[tuple[str, str]] = []  # (view or on-demand view, feature) of each public feature
        self._on_demand: list[tuple[Any, list[str], list[tuple[str, str]], int | None]] = []
        self.on_arrays: list[str] = []
        """On-demand views computed on the arrays (``time_arrays``), not through their pandas function."""
        for proj in service.feature_view_projections:
            if proj.name in odfvs:
                odfv = odfvs[proj.name]
                self._check_on_demand(service.name, odfv, views)
                inputs = [(p.name, f.name) for p in odfv.source_feature_view_projections.values() for f in p.features]
                for view, name in inputs:
                    self._want(wanted, views[view], name)
                grid = udf_grid(odfv.name, getattr(odfv.feature_transformation, "udf_string", ""))
                self._on_demand.append((odfv.feature_transformation.udf, [f.name for f in proj.features], inputs, grid))
                if grid is not None:
                    self.on_arrays.append(odfv.name)
            elif proj.name in views:
                for f in proj.features:
                    self._want(wanted, views[proj.name], f.name, proj)
            else:
                raise ValueError(f"feature service {service.name!r}: {proj.name!r} is not a feature view")
            outputs += [(proj.name, f.name) for f in proj.features]
        internal: list[tuple[str, str]] = []
        for name, proj in wanted.items():
            self._views.append(self._resolve(store, views[name], proj, full_feature_names))
            internal += [(name, f.name) for f in proj.features]
        self._internal = {key: i for i, key in enumerate(internal)}
        public = self.features
        if self._on_demand:  # internal columns (every field read), then the public ones picked from them
            on_demand_names = {(p.name, f.name) for p in service.feature_view_projections if p.name in odfvs
                               for f in p.features}
            prefix = "{}__" if full_feature_names else ""
            public = [prefix.format(v) + n for v, n in outputs]
            width = len(internal)
            self._odfv_cols = {key: width + i for i, key in enumerate(sorted(on_demand_names))}
            self._pick = np.array([self._odfv_cols[key] if key in self._odfv_cols else self._internal[key]
                                   for key in outputs], dtype=np.intp)
            self._internal_names = list(self.features)
            self.features = public
        else:
            self._pick = None
        self._project = store.project.encode()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._path = sqlite_path(store) if self._sqlite else None
        self._client = redis_client(store) if self._redis else None
        cluster = self._redis and store.config.online_store.redis_type != "redis"
        self._script = self._client.register_script(HMGET_PACKED) if self._redis and not cluster else None

    @staticmethod
    def _want(wanted: dict[str, Any], fv: Any, name: str, proj: Any = None) -> None:
        """Add field ``name`` of view ``fv`` to the projections read (once)."""
        got = wanted.get(fv.name)
        if got is None:
            got = wanted[fv.name] = copy.copy(proj if proj is not None else fv.projection)
            got.features = []
        if name not in [f.name for f in got.features]:
            got.features = [*got.features, next(f for f in fv.features if f.name == name)]

    @staticmethod
    def _check_on_demand(service: str, odfv: Any, views: dict[str, Any]) -> None:
        """Only on-demand views over batch-view fields and the request time are computed here."""
        from features.time_features import REQUEST_TS

        requests = [f.name for r in odfv.source_request_sources.values() for f in r.schema]
        sources = list(odfv.source_feature_view_projections)
        if any(r != REQUEST_TS for r in requests) or any(v not in views for v in sources):
            raise ValueError(f"feature service {service!r}: {odfv.name!r} is not a feature view "
                             f"(only on-demand views over feature views and {REQUEST_TS!r} are computed here; "
                             "use get_online_features for the others)")

    def _resolve(self, store: "FeatureStore", fv: Any, proj: Any, full_names: bool) -> _View:
        """Columns, types, table and hash fields of one projection."""
        key = join_key(fv)
        if self._join_key and key != self._join_key:
            raise ValueError(f"feature service {self.service!r}: views join on different keys "
                             f"({self._join_key!r} and {key!r} in {fv.name!r})")
        if proj.join_key_map:
            raise ValueError(f"feature service {self.service!r}: view {fv.name!r} maps join keys, not supported")
        self._join_key = key
        stored = online_name(store, fv)
        prefix = f"{proj.name_to_use()}__" if full_names else ""
        numbers: dict[str, int] = {}
        other: dict[str, int] = {}
        for f in proj.features:
            name = prefix + f.name
            if name in self.features:
                raise ValueError(f"feature service {self.service!r}: two features named {name!r}; "
                                 "use full_feature_names=True")
            kind = numbers if f.dtype.to_value_type().name in NUMERIC_TYPES else other
            kind[f.name] = len(self.features)
            self.features.append(name)
        names = [f.name for f in proj.features]
        return _View(name=fv.name, table=sqlite_table(store, fv) if self._sqlite else "", numbers=numbers,
                     other=other, fields=[redis_field(stored, n) for n in names] + [redis_ts_field(stored)],
                     names=names)

    def read(self, user_ids: Sequence[str], request_ts: float | None = None) -> OnlineBatch:
        """The service's features of these users (duplicates and unknown users allowed); on-demand
        features as of ``request_ts`` (epoch seconds; default now)."""
        ids = [str(u) for u in user_ids]
        unique = list(dict.fromkeys(ids))
        read = self._internal_names if self._pick is not None else self.features
        n, width = len(unique), len(read)
        flat = [NAN] * (n * width)
        other = {read[c]: [None] * n for v in self._views for c in v.other.values()}
        top: list[Any] = [-1] * n
        if unique:
            keys = entity_keys(self._join_key, unique, self._version)
            numbers = [v.numbers for v in self._views]
            others = [v.other for v in self._views]
            for view, row, name, raw, stamp in (self._sqlite_rows(keys) if self._sqlite else self._redis_rows(keys)):
                if stamp > top[row]:
                    top[row] = stamp
                col = numbers[view].get(name)
                if col is not None:
                    is_double = raw and len(raw) == 9 and raw[0] == 0x29  # the common case, decoded inline
                    flat[row * width + col] = _double(raw, 1)[0] if is_double else number(raw)
                elif (col := others[view].get(name)) is not None:
                    other[read[col]][row] = python_value(raw)
        convert = from_sqlite_epoch if self._sqlite else float
        newest = [None if t == -1 else convert(t) for t in top]
        values = np.array(flat, dtype=np.float64).reshape(n, width)
        if self._pick is not None:
            values = self._with_on_demand(values, request_ts)
        if n != len(ids):
            index = {u: i for i, u in enumerate(unique)}
            pick = [index[u] for u in ids]
            values = values[pick]
            newest = [newest[i] for i in pick]
            other = {k: [v[i] for i in pick] for k, v in other.items()}
        return OnlineBatch(features=list(self.features), values=values, times=newest, other=other)

    def _with_on_demand(self, values: np.ndarray, request_ts: float | None) -> np.ndarray:
        """The public columns: the read ones and each on-demand view's outputs, computed by its own
        function from its input fields and the request time. The project's time view (a function made
        by ``features.time_features.feast_udf``, recognised by its source text) is computed on the
        arrays by the same numpy code the function runs, without a pandas frame per request."""
        import time

        from features.time_features import REQUEST_TS, time_arrays

        now = time.time() if request_ts is None else float(request_ts)
        extra = np.full((len(values), len(self._odfv_cols)), np.nan)
        base = values.shape[1]
        for udf, names, inputs, grid in self._on_demand:
            columns: dict[str, np.ndarray] = {}
            for view, name in inputs:  # the first of equal names, as the function's frame has it
                columns.setdefault(name, values[:, self._internal[(view, name)]])
            if grid is not None:
                out = time_arrays(columns.get, now, len(values), grid)
                got = {name: out[name] for name in names}
            else:
                import pandas as pd

                frame = pd.DataFrame(columns)
                frame[REQUEST_TS] = now
                result = udf(frame)
                got = {name: result[name].to_numpy(dtype=float) for name in names}
            for name in names:
                key = next(k for k in self._odfv_cols if k[1] == name)
                extra[:, self._odfv_cols[key] - base] = got[name]
        return np.concatenate([values, extra], axis=1)[:, self._pick]

    def _sqlite_rows(self, keys: list[bytes]) -> list[tuple[int, int, str, bytes, int]]:
        """(view, user row, feature, value bytes, stored event_ts) of every stored value of these keys."""
        step = max(MAX_SQL_PARAMS // (2 * len(self._views)), 1)
        rows: list[Any] = []
        with self._lock:
            if self._conn is None:
                if self._path is None or not self._path.exists():
                    raise FileNotFoundError(f"{self._path}: no online store yet: run `persona materialize` first")
                uri = f"{self._path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            for start in range(0, len(keys), step):
                chunk = keys[start:start + step]
                params = [x for pair in enumerate(chunk, start) for x in pair]
                try:
                    rows += self._conn.execute(self._select(len(chunk)), params).fetchall()
                except sqlite3.OperationalError as e:  # e.g. a view applied after the store was opened
                    raise RuntimeError(f"{self._path}: cannot read {self.service!r}: {e} "
                                       "(run `persona apply`, then `persona materialize`)") from e
        return rows

    def _redis_rows(self, keys: list[bytes]) -> list[tuple[int, int, str, bytes, float]]:
        """The same from Feast's Redis hashes, with the event time in epoch seconds (a user is
        unknown to a view whose hash lacks the view's ``_ts`` field).

        One server-side script per view returns each user's fields as one length-prefixed string:
        redis-py parses replies in Python, and one string per user is far cheaper than one per
        value. A few users, or Redis Cluster (keys in many slots), get a pipeline of HMGETs instead.
        """
        assert self._client is not None
        if self._script is None or len(keys) < SCRIPT_MIN_USERS:
            with self._client.pipeline(transaction=False) as pipe:
                for v in self._views:
                    for k in keys:
                        pipe.hmget(k + self._project, v.fields)
                replies = pipe.execute()
            packed = None
        else:
            with self._client.pipeline(transaction=False) as pipe:
                for v in self._views:
                    self._script(keys=[k + self._project for k in keys], args=v.fields, client=pipe)
                packed = pipe.execute()
            replies = [_unpack(blob, len(v.fields)) for v, blobs in zip(self._views, packed) for blob in blobs]
        rows = []
        for i, v in enumerate(self._views):
            for row, reply in enumerate(replies[i * len(keys):(i + 1) * len(keys)]):
                if reply[-1]:
                    when = from_redis_timestamp(reply[-1])
                    rows.extend((i, row, name, raw or b"", when) for name, raw in zip(v.names, reply))
        return rows

    def _select(self, n: int) -> str:
        """One statement over every view's table for ``n`` (row, key) pairs."""
        keys = ", ".join(["(?, ?)"] * n)
        return f"WITH k(r, key) AS (VALUES {keys}) " + " UNION ALL ".join(
            f'SELECT {i}, k.r, t.feature_name, t.value, t.event_ts FROM k JOIN "{v.table}" AS t '
            "ON t.entity_key = k.key" for i, v in enumerate(self._views))

    def close(self) -> None:
        """Close the SQLite connection (the reader reopens it when used again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
