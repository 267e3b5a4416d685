"""Feast's online-store layout, so the fast writer and reader use exactly Feast's bytes.

- Entity key: ``serialize_entity_key`` (version 3) of the view's join key; for one string join key
  that is ``<I 1><I STRING><I len(name)>name<I STRING><I len(value)>value`` (built here directly,
  checked against Feast's function in tests/unit/test_online_layout.py).
- Values: a serialized ``feast.types.Value`` proto per feature; an empty proto (``b""``) is null.
- SQLite: a table ``{project}_{view}`` with one row per (entity_key, feature_name); ``event_ts`` and
  ``created_ts`` hold what Feast's sqlite adapter stores, ``int(naive_utc_datetime.timestamp())``.
- Redis: one hash per entity at ``entity_key + project``; field ``mmh3("{view}:{feature}")`` per
  feature and ``_ts:{view}`` holding a ``google.protobuf.Timestamp``.
"""

from __future__ import annotations

import calendar
import math
import struct
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

STRING_TYPE = 2  # feast ValueType.STRING
NAN = math.nan
_DOUBLE = struct.Struct("<d").unpack_from
_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE_TAG, _FLOAT_TAG = 0x29, 0x35  # Value.double_val (field 5, fixed64), Value.float_val (6, fixed32)
_VARINT_TAGS = frozenset({0x18, 0x20, 0x38, 0x40})  # int32_val, int64_val, bool_val, unix_timestamp_val


def key_version(store: "FeatureStore") -> int:
    """The store's entity key serialization version."""
    return int(store.config.entity_key_serialization_version)


def join_key(fv: "FeatureView") -> str:
    """The single string join key of a view (the only kind the fast paths handle)."""
    columns = fv.entity_columns
    if len(columns) != 1 or "String" not in str(columns[0].dtype):
        raise ValueError(f"feature view {fv.name!r}: the fast online path needs exactly one string join key, "
                         f"got {[(c.name, str(c.dtype)) for c in columns]}")
    return columns[0].name


def entity_keys(join_key_name: str, ids: list[str], version: int = 3) -> list[bytes]:
    """Feast's serialized entity key of each id (one string join key)."""
    if version < 3:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        return [serialize_entity_key(EntityKey(join_keys=[join_key_name], entity_values=[Value(string_val=i)]),
                                     entity_key_serialization_version=version) for i in ids]
    name = join_key_name.encode("utf8")
    prefix = struct.pack("<III", 1, STRING_TYPE, len(name)) + name + struct.pack("<I", STRING_TYPE)
    pack = struct.Struct("<I").pack
    out = []
    for i in ids:
        raw = str(i).encode("utf8")
        out.append(prefix + pack(len(raw)) + raw)
    return out


def online_name(store: "FeatureStore", fv: "FeatureView") -> str:
    """The view's name in the online store (with a version suffix when versioning is on)."""
    from feast.infra.online_stores.helpers import compute_versioned_name

    return compute_versioned_name(fv, store.config.registry.enable_online_feature_view_versioning)


def sqlite_table(store: "FeatureStore", fv: "FeatureView") -> str:
    """The SQLite table Feast keeps a view in."""
    return f"{store.project}_{online_name(store, fv)}"


def sqlite_path(store: "FeatureStore") -> Path:
    """The SQLite online store file, resolved as Feast does (relative to the repo path)."""
    cfg = store.config
    path = Path(cfg.online_store.path)
    return path if path.is_absolute() or not cfg.repo_path else Path(cfg.repo_path) / path


def plain_sqlite(store: "FeatureStore") -> bool:
    """SQLite without vector or text-search extras (the table layout the fast paths handle)."""
    cfg = store.config.online_store
    return (cfg.type == "sqlite" and not getattr(cfg, "vector_enabled", False)
            and not getattr(cfg, "enable_openai_compatible_store", False))


def plain_redis(store: "FeatureStore") -> bool:
    """Feast's Redis online store (any redis type; reads go through its own client)."""
    return store.config.online_store.type == "redis"


def redis_client(store: "FeatureStore") -> Any:
    """Feast's own Redis client for this store (single node, cluster or sentinel as configured)."""
    online = store._get_provider().online_store
    return online._get_client(store.config.online_store)


def redis_field(view_name: str, feature: str) -> bytes:
    """The hash field of one feature (Feast's little-endian murmur3 of ``view:feature``)."""
    from feast.infra.online_stores.helpers import _mmh3

    return _mmh3(f"{view_name}:{feature}")


def redis_ts_field(view_name: str) -> bytes:
    """The hash field holding the view's event timestamp."""
    return f"_ts:{view_name}".encode()


def sqlite_epoch(ts: datetime) -> int:
    """What Feast stores in SQLite ``event_ts``/``created_ts`` for a timestamp (its adapter's int)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return int(ts.timestamp())


def from_sqlite_epoch(value: int) -> float:
    """Epoch seconds of a stored ``event_ts``, read back the way Feast reads it (local wall clock as UTC)."""
    return float(calendar.timegm(time.localtime(int(value))))


def redis_timestamp(ts: datetime) -> bytes:
    """The serialized ``Timestamp`` Feast stores under ``_ts:{view}``."""
    from google.protobuf.timestamp_pb2 import Timestamp

    proto = Timestamp()
    proto.FromDatetime(ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))
    return proto.SerializeToString()


def from_redis_timestamp(raw: bytes) -> float:
    """Epoch seconds of a stored ``_ts`` field."""
    from google.protobuf.timestamp_pb2 import Timestamp

    proto = Timestamp()
    proto.ParseFromString(raw)
    return proto.seconds + proto.nanos / 1e9


def number(raw: bytes | None) -> float:
    """A serialized Value proto as a float (NaN for null or a non-numeric value).

    Doubles, floats, ints, bools and unix timestamps (seconds) are decoded directly; anything else
    goes through the proto (``python_value`` gives non-numeric values).
    """
    if not raw:
        return NAN
    tag = raw[0]
    if tag == _DOUBLE_TAG and len(raw) == 9:
        return _DOUBLE(raw, 1)[0]
    if tag in _VARINT_TAGS:
        if len(raw) == 2:
            return float(raw[1]) if raw[1] < 0x80 else _varint(raw)
        return _varint(raw)
    if tag == _FLOAT_TAG and len(raw) == 5:
        return _FLOAT(raw, 1)[0]
    return _number_from_proto(raw)


def _varint(raw: bytes) -> float:
    """The varint after the one-byte tag, as a signed 64-bit integer."""
    shift = value = 0
    for byte in raw[1:]:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if raw[0] == 0x38:  # bool_val
        return 1.0 if value else 0.0
    return float(value - (1 << 64) if value >= 1 << 63 else value)


def _number_from_proto(raw: bytes) -> float:
    """Slow path: parse the proto; numeric scalars as float, everything else NaN."""
    from feast.protos.feast.types.Value_pb2 import Value

    val = Value()
    val.ParseFromString(raw)
    kind = val.WhichOneof("val")
    if kind in ("double_val", "float_val", "int32_val", "int64_val", "bool_val", "unix_timestamp_val"):
        return float(getattr(val, kind))
    return NAN


def python_value(raw: bytes | None) -> Any:
    """A serialized Value proto as the Python value Feast's ``get_online_features`` returns."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    if not raw:
        return None
    val = Value()
    val.ParseFromString(raw)
    return feast_value_type_to_python_type(val)
