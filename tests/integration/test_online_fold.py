"""The real-time fold is atomic in the online store and de-duplicated durably, on SQLite and Redis:
two workers folding the same events concurrently count each once, a restart remembers what was
folded, a failure mid-fold leaves nothing half-applied (the retry counts once), the offline copy is
append-only, and a snapshot materialized again keeps the live values written since (one rule on
both profiles)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from features.online_fold import OnlineFold
from features.online_layout import redis_client
from features.online_writer import write_latest
from features.realtime import ACTIVITY_VIEW, append_offline, offline_folder
from features.store import BEHAVIOUR_VIEW
from persona.pipeline import materialize
from tests.integration.online_data import PROFILES, fresh_store, snapshot_settings

DAY = 86400.0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    return snapshot_settings(tmp_path_factory.mktemp("fold") / "data")


def _events(users: list[str], ids: list[str], when: pd.Timestamp) -> pd.DataFrame:
    """Canonical purchase events of 10.0 each, one per id, spread over the users."""
    n = len(ids)
    return pd.DataFrame({"event_id": ids, "user_id": [users[i % len(users)] for i in range(n)],
                         "event_type": "purchase", "timestamp": [when] * n, "amount": 10.0, "currency": "EUR",
                         "device": "mobile", "category": "home", "channel": "api"})


def _values(store, users: list[str]) -> dict[str, tuple]:
    got = store.get_online_features(features=["user_behaviour:purchases_7d", "user_behaviour:spend_7d",
                                              "user_activity:purchases_today"],
                                    entity_rows=[{"user_id": u} for u in users]).to_dict()
    return {u: (got["purchases_7d"][i] or 0, got["spend_7d"][i] or 0.0, got["purchases_today"][i] or 0)
            for i, u in enumerate(users)}


def _fold(store, days: float = 7) -> OnlineFold:
    return OnlineFold(store, BEHAVIOUR_VIEW, ACTIVITY_VIEW, days * DAY)


def _forget_ids(store) -> None:
    if store.config.online_store.type == "redis":
        client = redis_client(store)
        for key in client.scan_iter(match=f"persona:event_id:{store.project}:*".encode()):
            client.delete(key)


@pytest.mark.parametrize("profile", PROFILES)
def test_two_workers_folding_the_same_events_count_each_once(history: tuple, profile: str) -> None:
    s, newest = history
    users = sorted(newest["user_id"])[:4]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    with fresh_store(s, profile) as store:
        try:
            materialize(s, store)
            before = _values(store, users)
            shared = [f"shared-{i}" for i in range(40)]  # both workers receive every one of these
            errors: list[BaseException] = []

            def worker(name: str) -> None:
                fold = _fold(store)  # its own connection/client, as a second process has
                try:
                    for start in range(0, 40, 4):  # small batches interleave with the other worker
                        own = [f"{name}-{start + j}" for j in range(2)]
                        fold.apply(_events(users, shared[start:start + 4] + own, now), now.timestamp())
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                finally:
                    fold.close()

            threads = [threading.Thread(target=worker, args=(n,)) for n in ("w1", "w2")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            after = _values(store, users)
            total = 40 + 2 * 20  # shared once, plus each worker's own
            assert sum(a[0] - b[0] for a, b in zip(after.values(), before.values())) == total
            assert sum(a[2] for a in after.values()) - sum(b[2] for b in before.values()) == total
            assert sum(a[1] - b[1] for a, b in zip(after.values(), before.values())) == pytest.approx(total * 10.0)
            restarted = _fold(store)  # a restart: what was folded is remembered
            again = restarted.apply(_events(users, shared[:5] + ["late-new"], now), now.timestamp())
            assert again.fresh == ["late-new"] and restarted.seen(shared) == set(shared)
            restarted.close()
        finally:
            _forget_ids(store)


@pytest.mark.faults
@pytest.mark.parametrize("profile", PROFILES)
def test_a_failure_mid_fold_applies_nothing_and_the_retry_counts_once(history: tuple, profile: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s, newest = history
    user = sorted(newest["user_id"])[5]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    with fresh_store(s, profile) as store:
        try:
            materialize(s, store)
            before = _values(store, [user])[user]
            fold = _fold(store)
            events = _events([user], ["retry-1", "retry-2"], now)
            writes = {"n": 0}
            real = fold._sqlite_write if profile == "default" else fold._redis_write
            name = "_sqlite_write" if profile == "default" else "_redis_write"

            def crash_on_second_view(*args, **kw):
                writes["n"] += 1
                if writes["n"] == 2:
                    raise RuntimeError("killed between the behaviour and the activity write")
                return real(*args, **kw)

            monkeypatch.setattr(fold, name, crash_on_second_view)
            with pytest.raises(RuntimeError, match="killed"):
                fold.apply(events, now.timestamp())
            assert _values(store, [user])[user] == before  # nothing half-applied
            assert fold.seen(["retry-1", "retry-2"]) == set()  # nor claimed: the client's retry is taken
            monkeypatch.setattr(fold, name, real)
            assert fold.apply(events, now.timestamp()).fresh == ["retry-1", "retry-2"]
            assert fold.apply(events, now.timestamp()).fresh == []  # the second retry is a duplicate
            after = _values(store, [user])[user]
            assert (after[0] - before[0], after[2] - before[2]) == (2, 2)
            fold.close()
        finally:
            _forget_ids(store)


@pytest.mark.parametrize("profile", PROFILES)
def test_materialize_keeps_live_values_newer_than_the_snapshot(history: tuple, profile: str) -> None:
    """One rule on both profiles: a snapshot written again never overwrites values folded in after
    its time; a newer snapshot does."""
    s, newest = history
    user = sorted(newest["user_id"])[6]
    snapshot_time = newest["event_timestamp"].max()
    with fresh_store(s, profile) as store:
        try:
            materialize(s, store)
            before = _values(store, [user])[user]
            fold = _fold(store, days=3650)
            live = snapshot_time + pd.Timedelta(hours=2)
            fold.apply(_events([user], ["after-snapshot"], live), live.timestamp())
            fold.close()
            assert _values(store, [user])[user][0] == before[0] + 1
            materialize(s, store)  # the same snapshot again (a re-run of the update)
            assert _values(store, [user])[user][0] == before[0] + 1
            newer = newest.assign(event_timestamp=snapshot_time + pd.Timedelta(days=1), purchases_7d=99)
            write_latest(store, BEHAVIOUR_VIEW, newer)  # the next snapshot is exact and replaces it
            assert _values(store, [user])[user][0] == 99
        finally:
            _forget_ids(store)


def test_the_offline_copy_is_append_only(history: tuple) -> None:
    s, newest = history
    users = sorted(newest["user_id"])[:3]
    with fresh_store(s, "default") as store:
        folder = offline_folder(store)
        row = pd.DataFrame({"user_id": users, "event_timestamp": pd.Timestamp.now(tz="UTC"), "activity_day": 1,
                            "events_today": 1, "purchases_today": 0, "spend_today": 0.0, "events_last_hour": 1,
                            "last_event_ts": 1.0})
        threads = [threading.Thread(target=append_offline, args=(store, row)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (folder / ".part-killed-mid-write.parquet.tmp").write_bytes(b"PAR1 truncated")  # a kill mid-write
        table = pd.read_parquet(folder)
        assert len(table) == 6 * len(users)  # concurrent writers lost nothing
        got = store.get_historical_features(
            entity_df=pd.DataFrame({"user_id": users, "event_timestamp": pd.Timestamp.now(tz="UTC")}),
            features=["user_activity:events_today"]).to_df()
        assert got["events_today"].tolist() == [1, 1, 1]  # Feast reads the folder, ignoring the hidden file


@pytest.mark.parametrize("profile", PROFILES)
def test_lifetime_values_fold_in_the_same_atomic_step_once_per_event(history: tuple, profile: str) -> None:
    """A purchase moves the buyer's lifetime values with the behaviour values, in one step; the same ids
    again (a second worker, a retry) move nothing; a page view moves no lifetime value."""
    from features.lifetime import LIFETIME_VIEW

    s, newest = history
    user = sorted(newest["user_id"])[5]
    refs = ["user_lifetime:lifetime_purchases", "user_lifetime:lifetime_spend", "user_behaviour:last_purchase_ts",
            "user_behaviour:purchases_7d"]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    with fresh_store(s, profile) as store:
        try:
            materialize(s, store)

            def read() -> dict:
                got = store.get_online_features(features=refs, entity_rows=[{"user_id": user}]).to_dict()
                return {k: (v[0] or 0) for k, v in got.items() if k != "user_id"}

            before = read()
            fold = OnlineFold(store, BEHAVIOUR_VIEW, ACTIVITY_VIEW, 7 * DAY, lifetime_view=LIFETIME_VIEW)
            try:
                events = _events([user], ["life-1", "life-2"], now)
                result = fold.apply(events, now.timestamp())
                assert result.lifetime_users == [user] and sorted(result.fresh) == ["life-1", "life-2"]
                after = read()
                assert after["lifetime_purchases"] == before["lifetime_purchases"] + 2
                assert after["lifetime_spend"] == pytest.approx(before["lifetime_spend"] + 20.0)
                assert after["purchases_7d"] == before["purchases_7d"] + 2
                assert after["last_purchase_ts"] == now.timestamp()
                assert fold.apply(events, now.timestamp()).fresh == []  # again: nothing moves
                view = events.iloc[:1].assign(event_id="life-view", event_type="page_view", amount=None)
                assert fold.apply(view, now.timestamp()).lifetime_users == []
                assert read() == after
            finally:
                fold.close()
        finally:
            _forget_ids(store)


def test_the_small_fold_encoder_writes_the_bytes_of_the_bulk_encoder() -> None:
    """One-by-one encoding of a few values (the real-time fold) equals features/online_writer.py's, byte
    for byte, nulls, negative zero, large and negative integers included."""
    import numpy as np
    from feast.value_type import ValueType

    from features.online_fold import _encoded
    from features.online_writer import encode_column

    cases = {ValueType.DOUBLE: pd.Series([0.0, -0.0, 1.5, np.nan, None, 1e300, -3.25, 7.0], dtype=object),
             ValueType.INT64: pd.Series(pd.array([0, 1, -1, None, 2**40, -2**40, 300, 127], dtype="Int64")),
             ValueType.INT32: pd.Series(pd.array([0, 1, -1, None, 2**30, -5, 300, 127], dtype="Int64"))}
    for kind, column in cases.items():
        bulk = encode_column("x", column, kind)
        assert _encoded("x", column, kind) == (bulk.values.tolist(), bulk.texts.tolist()), kind


def test_the_small_summary_equals_the_pandas_summary() -> None:
    """A few events summarised in plain Python (the real-time fold) give features/realtime.py's frame."""
    import numpy as np

    from features.online_fold import summarise_small
    from features.realtime import summarise

    rng = np.random.default_rng(5)
    base = pd.Timestamp("2026-11-29 22:30", tz="UTC")
    for n in (1, 2, 5, 30):
        events = pd.DataFrame({
            "user_id": rng.choice(["a", "b", "c"], n).astype(object),
            "timestamp": [base + pd.Timedelta(minutes=int(m)) for m in rng.integers(-1500, 200, n)],
            "event_type": rng.choice(["purchase", "page_view", "refund"], n),
            "amount": [None if rng.random() < 0.3 else float(rng.integers(1, 90)) for _ in range(n)]})
        pd.testing.assert_frame_equal(summarise_small(events), summarise(events), check_names=False)
