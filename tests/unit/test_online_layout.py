"""The online layout helpers produce and decode exactly Feast's bytes."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from features.online_layout import (
    entity_keys,
    from_redis_timestamp,
    from_sqlite_epoch,
    number,
    python_value,
    redis_timestamp,
    sqlite_epoch,
)


def _feast_key(name: str, value: str, version: int) -> bytes:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return serialize_entity_key(EntityKey(join_keys=[name], entity_values=[Value(string_val=value)]),
                                entity_key_serialization_version=version)


@settings(deadline=None)  # the first example imports Feast
@given(st.lists(st.text(max_size=40), max_size=5), st.sampled_from(["user_id", "clé"]))
def test_entity_keys_are_feasts(ids: list[str], name: str) -> None:
    assert entity_keys(name, ids, 3) == [_feast_key(name, i, 3) for i in ids]


def _proto(**kw) -> bytes:  # noqa: ANN003
    from feast.protos.feast.types.Value_pb2 import Value

    return Value(**kw).SerializeToString()


@settings(deadline=None)  # the first example imports Feast
@given(st.integers(-2**63, 2**63 - 1))
def test_int64_values_decode(v: int) -> None:
    assert number(_proto(int64_val=v)) == float(v)
    assert number(_proto(unix_timestamp_val=v)) == float(v)


@settings(deadline=None)  # the first example imports Feast
@given(st.integers(-2**31, 2**31 - 1), st.floats(allow_nan=False, width=32), st.floats(allow_nan=False))
def test_other_numeric_values_decode(i: int, f: float, d: float) -> None:
    assert number(_proto(int32_val=i)) == float(i)
    assert number(_proto(float_val=f)) == f
    got = number(_proto(double_val=d))
    assert got == d and math.copysign(1, got) == math.copysign(1, d)


def test_bools_nulls_and_text() -> None:
    assert number(_proto(bool_val=True)) == 1.0 and number(_proto(bool_val=False)) == 0.0
    assert math.isnan(number(b"")) and math.isnan(number(None)) and math.isnan(number(_proto(null_val=0)))
    assert math.isnan(number(_proto(string_val="web")))
    assert python_value(_proto(string_val="web")) == "web" and python_value(b"") is None


def test_timestamps_round_trip_as_feast_stores_them() -> None:
    moment = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=timezone.utc)
    assert from_redis_timestamp(redis_timestamp(moment)) == moment.timestamp()
    assert from_sqlite_epoch(sqlite_epoch(moment)) == float(int(moment.timestamp()))
