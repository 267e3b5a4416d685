"""Incremental feature builds: a new day recomputes only what it changes, and gives exactly what a
full rebuild gives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.compute import EPOCH, read_snapshots
from features.time_features import time_features
from ingestion.event_store import write_batch
from base.schema import CANONICAL_COLUMNS
from base.paths import DataPaths
from persona.pipeline import build_features
from tests.conftest import settings_in

T0 = pd.Timestamp("2026-07-01", tz="UTC")


def _events(rng: np.random.Generator, n: int, start_day: int, days: int, prefix: str) -> pd.DataFrame:
    ev = pd.DataFrame({
        "event_id": [f"{prefix}{i}" for i in range(n)],
        "user_id": [f"u{i:06d}" for i in rng.integers(0, 40, n)],
        "timestamp": T0 + pd.to_timedelta(rng.integers(start_day * 86400, (start_day + days) * 86400, n), unit="s"),
        "event_type": rng.choice(["page_view", "purchase", "add_to_cart", "product_view"], n),
        "amount": rng.gamma(2, 20, n), "channel": "web", "category": "home", "session_id": None,
        "source_row": 1,
    })
    for c in CANONICAL_COLUMNS:
        if c not in ev:
            ev[c] = None
    return ev[list(CANONICAL_COLUMNS)]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)


def test_new_day_is_incremental_and_equals_a_full_rebuild(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(11)
    inc = settings_in(tmp_path / "inc")
    full = settings_in(tmp_path / "full")
    history, new_day = _events(rng, 3000, 0, 40, "h"), _events(rng, 80, 40, 1, "n")
    for s in (inc, full):
        write_batch(history, DataPaths(s.data_dir).events, "b1")
    first = build_features(inc)
    assert not first.incremental and first.rows > 0
    assert build_features(inc).rows == 0  # nothing changed: nothing recomputed
    for s in (inc, full):
        write_batch(new_day, DataPaths(s.data_dir).events, "b2")
    step = build_features(inc)
    assert step.incremental and step.recomputed_from == T0 + pd.Timedelta(days=41)
    assert step.rows <= 40  # one snapshot per user for the one new day
    rebuilt = build_features(full, incremental=False)
    a = _sorted(read_snapshots(DataPaths(inc.data_dir).behaviour_snapshots))
    b = _sorted(read_snapshots(DataPaths(full.data_dir).behaviour_snapshots))
    assert len(a) == len(b) == first.rows + step.rows and rebuilt.rows == len(b)
    pd.testing.assert_frame_equal(a, b[a.columns])


def test_late_event_recomputes_from_its_day(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(12)
    s = settings_in(tmp_path / "late")
    write_batch(_events(rng, 2000, 0, 30, "h"), DataPaths(s.data_dir).events, "b1")
    build_features(s)
    write_batch(_events(rng, 5, 10, 1, "late"), DataPaths(s.data_dir).events, "b2")
    step = build_features(s)
    assert step.recomputed_from == T0 + pd.Timedelta(days=11)


def test_long_history_incremental_reads_only_the_window_and_matches_full(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(13)
    inc = settings_in(tmp_path / "inc")
    full = settings_in(tmp_path / "full")
    early_only = _events(rng, 300, 0, 20, "e")  # users who go quiet long before the new day
    early_only["user_id"] = [f"q{i:03d}" for i in rng.integers(0, 10, len(early_only))]
    history = pd.concat([_events(rng, 6000, 0, 130, "h"), early_only], ignore_index=True)
    new_day = _events(rng, 60, 130, 1, "n")
    returning = _events(rng, 2, 130, 1, "r")
    returning["user_id"] = "q001"  # back after more than 90 days
    for s in (inc, full):
        write_batch(history, DataPaths(s.data_dir).events, "b1")
    build_features(inc)
    for s in (inc, full):
        write_batch(pd.concat([new_day, returning], ignore_index=True), DataPaths(s.data_dir).events, "b2")
    step = build_features(inc)
    build_features(full, incremental=False)
    a = _sorted(read_snapshots(DataPaths(inc.data_dir).behaviour_snapshots))
    b = _sorted(read_snapshots(DataPaths(full.data_dir).behaviour_snapshots))
    changed = b.loc[b["event_timestamp"] == step.first]  # sparse: only users whose stored values changed
    assert step.incremental and step.rows == step.users == len(changed) and 0 < len(changed) < 50
    pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False)
    back = a.loc[(a.user_id == "q001")].iloc[-1]
    tenure = time_features(back.to_frame().T, (step.first - EPOCH).total_seconds())["tenure_days"].iloc[0]
    assert back.events_7d == 2 and tenure > 110 and back.purchases_90d <= 2


def test_new_identity_link_rebuilds_from_the_aliases_first_event(tmp_path) -> None:  # noqa: ANN001
    from ingestion.identity import links_from, load_graph, merge_links, save_graph

    rng = np.random.default_rng(14)
    s = settings_in(tmp_path / "id")
    paths = DataPaths(s.data_dir)
    history = _events(rng, 1500, 0, 30, "h")
    anon = _events(rng, 20, 5, 10, "a").assign(user_id=None, anonymous_id="a-visitor")
    write_batch(pd.concat([history, anon], ignore_index=True), paths.events, "b1")
    build_features(s)
    login = _events(rng, 1, 29, 1, "login").assign(user_id="u000001", anonymous_id="a-visitor", event_type="identify")
    save_graph(merge_links(load_graph(paths.identity_graph), links_from(login)), paths.identity_graph)
    step = build_features(s)
    assert step.recomputed_from == anon["timestamp"].min().floor("D") + pd.Timedelta(days=1)
    assert step.relinked_users == 1  # only the user the visitor was linked to is recomputed
    incremental = _sorted(read_snapshots(paths.behaviour_snapshots))
    build_features(s, incremental=False)
    full = _sorted(read_snapshots(paths.behaviour_snapshots))
    pd.testing.assert_frame_equal(incremental[full.columns], full, check_dtype=False)
    mine = full.loc[full["user_id"] == "u000001"]
    assert mine["events_30d"].max() > 0


def test_a_link_and_a_new_day_together_equal_a_full_rebuild(tmp_path) -> None:  # noqa: ANN001
    from ingestion.identity import links_from, load_graph, merge_links, save_graph

    rng = np.random.default_rng(15)
    s = settings_in(tmp_path / "id2")
    paths = DataPaths(s.data_dir)
    anon = _events(rng, 30, 3, 10, "a").assign(user_id=None, anonymous_id="v-7")
    write_batch(pd.concat([_events(rng, 1500, 0, 30, "h"), anon], ignore_index=True), paths.events, "b1")
    build_features(s)
    login = _events(rng, 1, 30, 1, "login").assign(user_id="u000002", anonymous_id="v-7", event_type="identify")
    write_batch(pd.concat([_events(rng, 60, 30, 1, "d"), login], ignore_index=True), paths.events, "b2")
    save_graph(merge_links(load_graph(paths.identity_graph), links_from(login)), paths.identity_graph)
    step = build_features(s)
    assert step.relinked_users == 1 and step.recomputed_from == T0 + pd.Timedelta(days=4)
    incremental = _sorted(read_snapshots(paths.behaviour_snapshots))
    build_features(s, incremental=False)
    full = _sorted(read_snapshots(paths.behaviour_snapshots))
    pd.testing.assert_frame_equal(incremental[full.columns], full, check_dtype=False)
