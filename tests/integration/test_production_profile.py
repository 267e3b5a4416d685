"""The production profile against the real servers on this machine: Feast registry on PostgreSQL
(127.0.0.1:5432, database test) and online store on Redis (127.0.0.1:6379)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from features.compute import compute_snapshots, write_snapshots
from features.realtime import push_activity
from features.store import open_store
from base.config import Settings
from persona.pipeline import materialize, register_features

T0 = pd.Timestamp("2026-08-01", tz="UTC")


@pytest.fixture(scope="module")
def prod_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, object, pd.DataFrame]]:
    from tests.conftest import settings_in

    s = settings_in(tmp_path_factory.mktemp("prod") / "data")
    rng = np.random.default_rng(5)
    n = 3000
    events = pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in rng.integers(0, 50, n)],
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, 40 * 86400, n), unit="s"),
        "event_type": rng.choice(["page_view", "product_view", "purchase", "add_to_cart"], n),
        "amount": rng.gamma(2, 20, n), "channel": "web", "category": rng.choice(s.features.categories, n),
        "session_id": [f"s{i}" for i in rng.integers(0, 400, n)], "device": "mobile",
    })
    snaps = compute_snapshots(events, s.features)
    write_snapshots(snaps, s.data_dir / "features" / "user_behaviour")
    project = f"persona_test_{uuid.uuid4().hex[:8]}"
    store = open_store(s, profile="production", project=project)
    try:
        register_features(s, store)
        materialize(s, store)
        yield s, store, snaps
    finally:  # leave nothing behind in the shared PostgreSQL and Redis
        store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
        store.registry.delete_project(project, commit=True)


def test_registry_is_postgres_and_online_store_is_redis(prod_store: tuple) -> None:
    _, store, _ = prod_store
    assert type(store.registry).__name__ == "SqlRegistry"
    assert "postgresql" in str(store.config.registry.path)
    assert store.config.online_store.type == "redis"
    assert {fv.name for fv in store.list_feature_views()} >= {"user_behaviour", "user_activity"}


def test_materialized_values_are_read_back_from_redis(prod_store: tuple) -> None:
    _, store, snaps = prod_store
    newest = snaps.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    users = list(newest.index[:10])
    got = store.get_online_features(features=store.get_feature_service("persona_v1"),
                                    entity_rows=[{"user_id": u, "request_ts": 1.8e9} for u in users]).to_dict()
    assert got["spend_30d"] == pytest.approx(list(newest.loc[users, "spend_30d"]))


def test_push_reaches_redis(prod_store: tuple) -> None:
    _, store, _ = prod_store
    now = pd.Timestamp.now(tz="UTC").floor("s")
    push_activity(store, pd.DataFrame({"user_id": ["u000001"], "timestamp": [now], "event_type": ["purchase"],
                                       "amount": [12.0]}), offline=False)
    got = store.get_online_features(features=["user_activity:purchases_today", "user_activity:spend_today"],
                                    entity_rows=[{"user_id": "u000001"}]).to_dict()
    assert got["purchases_today"] == [1] and got["spend_today"] == [12.0]
