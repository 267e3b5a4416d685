"""Stitch times with each alias looked up once and users compared as integer codes (training/identity_pit.py)
against the straightforward version they replaced (every event's aliases mapped as strings, kept here
verbatim as the reference): the same time for every event, on real stitching with bridges and on a
graph with links to other users, unknown aliases, missing ids and missing times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingestion.identity import empty_graph, resolve, stitch
from tests.model.test_identity_pit import raw_events
from training.identity_pit import STITCHED_AT, GraphLinks, stitch_times, with_stitch_times


def _lookup(graph: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``alias -> (user_id, linked_at)`` for one kind of alias (one link per alias)."""
    part = graph.loc[graph["kind"] == kind, ["alias", "user_id", "linked_at"]]
    return part.drop_duplicates("alias").set_index("alias")


def ref_stitch_times(events: pd.DataFrame, graph: pd.DataFrame) -> pd.Series:
    """Per event (resolved through ``graph``), when a later link attributed it to its user; NaT otherwise.

    Paths: anonymous id → user, device id → user, anonymous id → device (bridge) → user (the later of
    the two links). The earliest path that reaches the event's own user counts; a path whose link is no
    later than the event means the event was attributable when it happened.
    """
    graph = graph.assign(linked_at=pd.to_datetime(graph["linked_at"], utc=True),
                         user_id=graph["user_id"].astype(str))
    anon, device = _lookup(graph, "anonymous"), _lookup(graph, "device")
    user = events["user_id"].astype("string")
    a_user = events["anonymous_id"].map(anon["user_id"]).astype("string")
    a_time = events["anonymous_id"].map(anon["linked_at"])
    via = a_user.where(a_user.str.startswith("device:").fillna(False)).str.slice(len("device:"))
    b_time = pd.concat([a_time, via.map(device["linked_at"])], axis=1).max(axis=1, skipna=False)
    d_user = events["device_id"].map(device["user_id"]).astype("string")
    paths = [(a_user, a_time), (d_user, events["device_id"].map(device["linked_at"])),
             (via.map(device["user_id"]).astype("string"), b_time)]
    times = pd.concat([t.where(u.eq(user).fillna(False)) for u, t in paths], axis=1)
    earliest = pd.to_datetime(times.min(axis=1), utc=True)
    ts = pd.to_datetime(events["timestamp"], utc=True)
    return earliest.where(earliest > ts).astype("datetime64[ns, UTC]").rename(STITCHED_AT)


def _world(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = raw_events(people=200, seed=seed)
    graph = stitch(raw, empty_graph())[1]
    return resolve(raw, graph), graph


def _bridged(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cookies bridged to devices (anonymous id → ``device:<id>``), devices linked to users, some links
    pointing elsewhere, and events whose ids lead nowhere."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-03-01", tz="UTC")
    n = 3000
    cookies = np.array([f"a{i}" for i in range(80)] + [None, "unknown"], dtype=object)
    devices = np.array([f"d{i}" for i in range(60)] + [None, "nowhere"], dtype=object)
    users = np.array([f"u{i}" for i in range(40)] + [None], dtype=object)
    events = pd.DataFrame({
        "user_id": users[rng.integers(0, len(users), n)],
        "anonymous_id": cookies[rng.integers(0, len(cookies), n)],
        "device_id": devices[rng.integers(0, len(devices), n)],
        "timestamp": t0 + pd.to_timedelta(rng.integers(0, 60 * 86400, n), unit="s"),
    }).set_axis(np.arange(n) * 3 + 7)
    events.loc[events.index[:4], "timestamp"] = pd.NaT
    links = [("anonymous", f"a{i}", f"device:d{rng.integers(0, 70)}" if i % 3 == 0 else f"u{rng.integers(0, 45)}")
             for i in range(80)]
    links += [("device", f"d{i}", f"u{rng.integers(0, 45)}") for i in range(0, 60, 2)]
    graph = pd.DataFrame(links, columns=["kind", "alias", "user_id"])
    graph["linked_at"] = (t0 + pd.to_timedelta(rng.integers(0, 60 * 86400, len(graph)), unit="s")).astype(str)
    return events, graph


@pytest.mark.parametrize("seed", [3, 4])
def test_stitch_times_on_real_stitching_equal_the_reference(seed: int) -> None:
    events, graph = _world(seed)
    got, want = stitch_times(events, graph), ref_stitch_times(events, graph)
    pd.testing.assert_series_equal(got, want, check_exact=True)
    assert got.notna().sum() > 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bridges_links_elsewhere_and_missing_ids_equal_the_reference(seed: int) -> None:
    events, graph = _bridged(seed)
    got, want = stitch_times(events, graph), ref_stitch_times(events, graph)
    pd.testing.assert_series_equal(got, want, check_exact=True)
    bridged = events["anonymous_id"].map(_lookup(graph, "anonymous")["user_id"]).str.startswith("device:")
    assert got.notna().sum() > 20 and got[bridged.eq(True).to_numpy()].notna().any()


def test_with_stitch_times_is_unchanged_around_it() -> None:
    events, graph = _bridged(5)
    got = with_stitch_times(events, graph)[STITCHED_AT]
    aliased = events["anonymous_id"].notna() | events["device_id"].notna()
    want = ref_stitch_times(events.loc[aliased], graph).reindex(events.index)
    pd.testing.assert_series_equal(got, want.rename(STITCHED_AT), check_exact=True)
    links = GraphLinks.of(graph)  # prepared once, as the training events are read part by part
    step = len(events) // 4 + 1
    parts = [with_stitch_times(events.iloc[i:i + step], links)[STITCHED_AT] for i in range(0, len(events), step)]
    pd.testing.assert_series_equal(pd.concat(parts), got, check_exact=True)
