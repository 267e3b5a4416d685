"""Stored persona records on SQLite and Redis: read back as written, a record scored from older
features never replaces a newer one, erasure removes them, and of two workers exactly one claims a
re-score generation."""

from __future__ import annotations

import pytest

from features.online_records import RecordStore, StoredRecord
from scoring.records import served_json, versions_key
from tests.integration.online_data import PROFILES, fresh_store, snapshot_settings


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return snapshot_settings(tmp_path_factory.mktemp("records") / "data", users=10)


def _cleanup(store, records: RecordStore) -> None:  # noqa: ANN001
    records.delete(records.users())
    if store.config.online_store.type == "redis":
        from features.online_layout import redis_client

        client = redis_client(store)
        for key in client.scan_iter(match=f"persona:rescore:{store.project}:*".encode()):
            client.delete(key)


@pytest.mark.parametrize("profile", PROFILES)
def test_records_round_trip_newer_wins_and_erase(history: tuple, profile: str) -> None:
    s, _ = history
    with fresh_store(s, profile) as store:
        records = RecordStore(store)
        try:
            body = b'{"user_id":"u1","segment":"loyal"'
            records.write([("u1", StoredRecord(100.0, "churn=2,spend=3", "loyal", body)),
                           ("u2", StoredRecord(50.0, "churn=2,spend=3", "new", b'{"user_id":"u2"'))])
            got = records.read(["u1", "nobody", "u1"])
            assert set(got) == {"u1"} and got["u1"] == StoredRecord(100.0, "churn=2,spend=3", "loyal", body)
            records.write([("u1", StoredRecord(90.0, "churn=2,spend=4", "old", b"{}"))])  # scored from older features
            assert records.read(["u1"])["u1"].segment == "loyal"
            records.write([("u1", StoredRecord(100.0, "churn=2,spend=4", "swapped", b"{}"))])  # same features, new models
            assert records.read(["u1"])["u1"].versions == "churn=2,spend=4"
            assert records.users() == ["u1", "u2"]
            assert records.delete(["u1"]) == 1 and records.read(["u1"]) == {}
            other = RecordStore(store)  # a second worker
            assert [records.claim("g1", 1.0), other.claim("g1", 1.0)] == [True, False]
            assert not other.done("g1")
            records.finish("g1", 2.0)
            assert other.done("g1") and not other.claim("g1", 9999.0)
            other.close()
        finally:
            _cleanup(store, records)
            records.close()


def test_a_served_record_carries_its_age_and_versions_text() -> None:
    assert versions_key({"spend": "3", "churn": "2", "category": None}) == "churn=2,spend=3"
    assert served_json(b'{"a":1', 100.0, 160.5) == b'{"a":1,"feature_age_seconds":60.5}'
    assert served_json(b'{"a":1', 0.0, 160.5) == b'{"a":1,"feature_age_seconds":null}'


def test_redis_reads_are_cached_and_see_every_other_workers_write_at_once(history: tuple) -> None:
    """Two workers on Redis: the reader caches records (client-side caching) and still sees the other
    worker's new record, a record created for a user it had read as absent, and a deletion on its very
    next read; a dropped caching connection falls back to plain reads."""
    s, _ = history
    with fresh_store(s, "production") as store:
        reader, writer = RecordStore(store), RecordStore(store)
        try:
            cache = reader._cached
            assert cache is not None
            record = lambda ts, segment: StoredRecord(ts, "churn=2,spend=3", segment, b"{}")  # noqa: E731
            writer.write([("u1", record(100.0, "first"))])
            assert reader.read(["u1"])["u1"].segment == "first"
            hits = cache.hits
            assert reader.read(["u1", "nobody"])["u1"].segment == "first" and cache.hits == hits + 1  # from the cache
            writer.write([("u1", record(200.0, "second")), ("nobody", record(10.0, "born"))])
            got = reader.read(["u1", "nobody"])  # no wait: the invalidations are in before the read
            assert got["u1"].segment == "second" and got["nobody"].segment == "born"
            reader.write([("u1", record(300.0, "own"))])
            assert reader.read(["u1"])["u1"].segment == "own"  # its own write
            writer.delete(["u1"])
            assert reader.read(["u1"]) == {}
            conn = cache._conn
            conn.send_command("CLIENT", "ID")
            from features.online_layout import redis_client

            redis_client(store).client_kill_filter(_id=conn.read_response())
            writer.write([("u2", record(5.0, "after the kill"))])
            assert reader.read(["u2"])["u2"].segment == "after the kill"  # plain read while the cache is down
            assert cache._conn is None
        finally:
            _cleanup(store, reader)
            reader.close()
            writer.close()
