"""Shared data for the online store tests: a small snapshot history with awkward values, and Feast
stores on SQLite (default profile) or Redis + PostgreSQL (production profile) that clean up after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from features.compute import compute_snapshots, write_snapshots
from features.store import open_store
from base.config import Settings
from persona.pipeline import register_features
from tests.conftest import settings_in

T0 = pd.Timestamp("2026-08-01", tz="UTC")
PROFILES = ("default", "production")


def snapshot_settings(data_dir: Path, users: int = 60) -> tuple[Settings, pd.DataFrame]:
    """Settings over a data directory holding 40 days of snapshots; returns them and the newest day's.

    The newest day carries values that trip naive encoders: -0.0, a subnormal, a huge and a
    negative integer, and nulls.
    """
    s = settings_in(data_dir)
    rng = np.random.default_rng(5)
    n = users * 60
    events = pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in rng.integers(0, users, n)],
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, 40 * 86400, n), unit="s"),
        "event_type": rng.choice(["page_view", "product_view", "purchase", "add_to_cart"], n),
        "amount": rng.gamma(2, 20, n), "channel": "web", "category": rng.choice(s.features.categories, n),
        "session_id": [f"s{i}" for i in rng.integers(0, 400, n)], "device": "mobile",
    })
    snaps = compute_snapshots(events, s.features)
    newest_day = snaps["event_timestamp"].max()
    newest = snaps.index[snaps["event_timestamp"] == newest_day]
    snaps.loc[newest[0], "spend_7d"] = -0.0
    snaps.loc[newest[1], "spend_30d"] = 5e-324
    snaps.loc[newest[2], "events_30d"] = 2**40
    snaps.loc[newest[3], "refunds_90d"] = -7
    snaps.loc[newest[4], "share_web_30d"] = np.nan
    write_snapshots(snaps, s.data_dir / "features" / "user_behaviour")
    return s, snaps.loc[newest].reset_index(drop=True)


@contextmanager
def fresh_store(s: Settings, profile: str) -> Iterator[object]:
    """A registered Feast store in its own project; on Redis/PostgreSQL it is removed afterwards."""
    project = f"t_{uuid.uuid4().hex[:8]}"
    store = open_store(s, profile=profile, project=project)
    register_features(s, store)
    try:
        yield store
    finally:
        if profile == "production":  # leave nothing behind in the shared servers
            store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
            store.registry.delete_project(project, commit=True)
