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
On-demand views are computed per request and are not read here (the constructor refuses them).

A reader is bound to the registry as it was when it was made: make a new one after ``apply``.
"""

from __future__ import annotations

import sqlite3
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
    columns: dict[str, int]  # stored feature name -> column in the batch
    numeric: dict[str, bool]
    fields: list[bytes]  # Redis hash fields of the requested features, then the _ts field
    names: list[str]  # the requested features, in the order of ``fields``


class OnlineReader:
    """Reads one feature service for batches of users; construct once, call ``read`` per request."""

    def __init__(self, store: "FeatureStore", feature_service: "str | FeatureService" = FEATURE_SERVICE,
                 *, full_feature_names: bool = False) -> None:
        from feast import FeatureService

        service = (feature_service if isinstance(feature_service, FeatureService)
                   else store.get_feature_service(feature_service))
        self.service = service.name
        self._sqlite = plain_sqlite(store)
        self._redis = plain_redis(store)
        if not (self._sqlite or self._redis):
            raise ValueError(f"OnlineReader reads SQLite or Redis online stores, not {store.config.online_store.type!r}")
        self.features: list[str] = []
        self._views: list[_View] = []
        self._join_key = ""
        self._version = key_version(store)
        views = {v.name: v for v in store.list_feature_views()}
        for proj in service.feature_view_projections:
            if proj.name not in views:
                raise ValueError(f"feature service {service.name!r}: {proj.name!r} is not a feature view "
                                 "(on-demand views are computed per request; use get_online_features for them)")
            self._views.append(self._resolve(store, views[proj.name], proj, full_feature_names))
        self._project = store.project.encode()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._path = sqlite_path(store) if self._sqlite else None
        self._client = redis_client(store) if self._redis else None

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
        columns, numeric = {}, {}
        for f in proj.features:
            name = prefix + f.name
            if name in self.features:
                raise ValueError(f"feature service {self.service!r}: two features named {name!r}; "
                                 "use full_feature_names=True")
            columns[f.name] = len(self.features)
            numeric[f.name] = f.dtype.to_value_type().name in NUMERIC_TYPES
            self.features.append(name)
        names = list(columns)
        return _View(name=fv.name, table=sqlite_table(store, fv) if self._sqlite else "", columns=columns,
                     numeric=numeric, fields=[redis_field(stored, n) for n in names] + [redis_ts_field(stored)],
                     names=names)

    def read(self, user_ids: Sequence[str]) -> OnlineBatch:
        """The service's features of these users (duplicates and unknown users allowed)."""
        ids = [str(u) for u in user_ids]
        unique = list(dict.fromkeys(ids))
        keys = entity_keys(self._join_key, unique, self._version)
        values = np.full((len(unique), len(self.features)), NAN)
        newest: list[float | None] = [None] * len(unique)
        other: dict[str, list[Any]] = {self.features[v.columns[n]]: [None] * len(unique)
                                       for v in self._views for n, is_num in v.numeric.items() if not is_num}
        if unique:
            cells = self._read_sqlite(keys) if self._sqlite else self._read_redis(keys)
            for row, col, raw, when in cells:
                if when is not None and (newest[row] is None or when > newest[row]):
                    newest[row] = when
                if col is None:
                    continue
                name = self.features[col]
                if name in other:
                    other[name][row] = python_value(raw)
                else:
                    values[row, col] = number(raw)
        if len(unique) != len(ids):
            index = {u: i for i, u in enumerate(unique)}
            pick = [index[u] for u in ids]
            values = values[pick]
            newest = [newest[i] for i in pick]
            other = {k: [v[i] for i in pick] for k, v in other.items()}
        return OnlineBatch(features=list(self.features), values=values, times=newest, other=other)

    def _read_sqlite(self, keys: list[bytes]) -> list[tuple[int, int | None, bytes, float | None]]:
        """(user row, column, value bytes, event time) of every stored value of these keys."""
        step = MAX_SQL_PARAMS // len(self._views)
        rows: list[Any] = []
        with self._lock:
            if self._conn is None:
                if self._path is None or not self._path.exists():
                    raise FileNotFoundError(f"{self._path}: no online store yet: run `persona materialize` first")
                uri = f"{self._path.resolve().as_uri()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            for start in range(0, len(keys), step):
                chunk = keys[start:start + step]
                rows += self._conn.execute(self._select(len(chunk)), chunk * len(self._views)).fetchall()
        row_of = {k: i for i, k in enumerate(keys)}
        times: dict[Any, float] = {}
        out = []
        for view, key, name, raw, stamp in rows:
            when = times.get(stamp)
            if when is None and stamp is not None:
                when = times[stamp] = from_sqlite_epoch(stamp)
            out.append((row_of[key], self._views[view].columns.get(name), raw, when))
        return out

    def _read_redis(self, keys: list[bytes]) -> list[tuple[int, int | None, bytes, float | None]]:
        """The same cells from Feast's Redis hashes (a user is unknown to a view without its _ts field)."""
        assert self._client is not None
        with self._client.pipeline(transaction=False) as pipe:
            for v in self._views:
                for k in keys:
                    pipe.hmget(k + self._project, v.fields)
            replies = pipe.execute()
        out = []
        for i, v in enumerate(self._views):
            for row, reply in enumerate(replies[i * len(keys):(i + 1) * len(keys)]):
                stamp = reply[-1]
                if not stamp:
                    continue
                when = from_redis_timestamp(stamp)
                out.extend((row, v.columns[n], raw, when) for n, raw in zip(v.names, reply))
        return out

    def _select(self, n: int) -> str:
        """One statement over every view's table for ``n`` keys."""
        marks = ",".join("?" * n)
        return " UNION ALL ".join(
            f'SELECT {i}, entity_key, feature_name, value, event_ts FROM "{v.table}" WHERE entity_key IN ({marks})'
            for i, v in enumerate(self._views))

    def close(self) -> None:
        """Close the SQLite connection (the reader reopens it when used again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
