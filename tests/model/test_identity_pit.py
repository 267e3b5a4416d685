"""Point-in-time identity: a training row at cutoff t sees identities as they stood at t.

Visitors browse anonymously (web cookie, app device) and log in later; the newest identity graph
attributes their earlier anonymous history to them. The proof: for every row ``make_labels`` keeps,
the user's history before the cutoff and their label are exactly what the identity graph *as of the
cutoff* gives, so the Feast snapshot (computed with the newest graph) cannot carry later links.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingestion.identity import empty_graph, resolve, stitch
from training.identity_pit import STITCHED_AT, stitch_times, with_stitch_times
from training.labels import identity_exclusions, make_labels

T0 = pd.Timestamp("2026-03-01", tz="UTC")
CUTOFFS = [T0 + pd.Timedelta(days=d) for d in (20, 35, 50, 65)]


def raw_events(people: int = 150, seed: int = 3) -> pd.DataFrame:
    """Raw (unstitched) events: web with a cookie, app with a device, orders with the user id.
    Web/app events carry the user only from that channel's login on; the login event carries both."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(people):
        user, cookie, device = f"u{i:04d}", f"a-{i:04d}", f"d-{i:04d}"
        web_login, app_login = rng.integers(0, 110), rng.integers(0, 160)  # some never log in within 100 days
        for day in np.sort(rng.integers(0, 100, rng.integers(3, 30))):
            ts = T0 + pd.Timedelta(days=int(day), seconds=int(rng.integers(0, 86400)))
            kind = rng.choice(["web", "app", "order"], p=[0.5, 0.3, 0.2])
            if kind == "order":
                rows.append((user, None, None, "purchase", ts, float(rng.gamma(2, 20))))
            elif kind == "web":
                rows.append((user if day >= web_login else None, cookie, None, "page_view", ts, None))
            else:
                rows.append((user if day >= app_login else None, None, device, "product_view", ts, None))
        for login, alias in ((web_login, (cookie, None)), (app_login, (None, device))):
            if login < 100:
                ts = T0 + pd.Timedelta(days=int(login), hours=12)
                rows.append((user, *alias, "identify", ts, None))
    ev = pd.DataFrame(rows, columns=["user_id", "anonymous_id", "device_id", "event_type", "timestamp", "amount"])
    ev["event_id"] = [f"e{i}" for i in range(len(ev))]
    return ev.sort_values("timestamp", kind="stable").reset_index(drop=True)


def graph_of(raw: pd.DataFrame) -> pd.DataFrame:
    """The identity graph ingestion builds from these events (real stitching)."""
    return stitch(raw, empty_graph())[1]


def history(events: pd.DataFrame, cutoff: pd.Timestamp) -> dict[str, frozenset[str]]:
    """user -> event ids before the cutoff."""
    before = events.loc[events["timestamp"] < cutoff]
    return {u: frozenset(g) for u, g in before.groupby("user_id")["event_id"]}


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    raw = raw_events()
    graph = graph_of(raw)
    newest = with_stitch_times(resolve(raw, graph), graph)
    return raw, graph, newest


def test_later_logins_are_stitched_after_the_fact(world) -> None:  # noqa: ANN001
    raw, graph, newest = world
    late = newest.loc[newest[STITCHED_AT].notna()]
    assert len(late) > 50  # the scenario exists: anonymous history attributed by a later login
    assert (late[STITCHED_AT] > late["timestamp"]).all()
    assert raw.loc[late.index, "user_id"].isna().all()  # only events that did not carry the user
    direct = raw["user_id"].notna()
    assert newest.loc[direct, STITCHED_AT].isna().all()


def test_every_kept_row_sees_the_identity_graph_as_of_its_cutoff(world) -> None:  # noqa: ANN001
    raw, graph, newest = world
    labels = make_labels(newest, CUTOFFS, 30)
    for cutoff in CUTOFFS:
        then = resolve(raw, graph.loc[graph["linked_at"] < cutoff])  # what ingestion knew at the cutoff
        truth = make_labels(then, [cutoff], 30).set_index("user_id")
        kept = labels.loc[labels["event_timestamp"] == cutoff].set_index("user_id")
        assert set(kept.index) <= set(truth.index)  # nobody who was unknown at the cutoff
        pd.testing.assert_frame_equal(kept, truth.loc[kept.index])  # same labels as then
        seen_now, seen_then = history(newest, cutoff), history(then, cutoff)
        assert all(seen_now[u] == seen_then[u] for u in kept.index)  # features computed now = then


def test_without_stitch_times_rows_would_leak(world) -> None:  # noqa: ANN001
    """The check above can fail: the naive rows (newest graph) include users unknown at the cutoff and
    users whose history before the cutoff was attributed only later."""
    raw, graph, newest = world
    naive = make_labels(newest.drop(columns=STITCHED_AT), CUTOFFS, 30)
    excluded = identity_exclusions(newest, CUTOFFS)
    assert set(excluded["reason"]) == {"not_linked_yet", "history_linked_later"}
    keys = set(zip(naive["user_id"], naive["event_timestamp"]))
    assert set(zip(excluded["user_id"], excluded["event_timestamp"])) <= keys
    assert len(naive) - len(make_labels(newest, CUTOFFS, 30)) == len(excluded)
    cutoff = CUTOFFS[0]
    then = resolve(raw, graph.loc[graph["linked_at"] < cutoff])
    seen_now, seen_then = history(newest, cutoff), history(then, cutoff)
    leaky = [u for u in naive.loc[naive["event_timestamp"] == cutoff, "user_id"]
             if seen_now[u] != seen_then.get(u, frozenset())]
    assert leaky


def test_bridged_visitor_counts_from_the_later_of_its_two_links() -> None:
    """anonymous id → device (a bridge, day 2) → user (device login, day 5): the cookie's day-1 page view
    is the user's from day 5 on."""
    ts = [T0 + pd.Timedelta(days=d) for d in (1, 2, 5)]
    raw = pd.DataFrame({
        "user_id": [None, None, "u1"], "anonymous_id": ["a1", "a1", None], "device_id": [None, "d1", "d1"],
        "event_type": ["page_view", "page_view", "identify"], "timestamp": ts, "amount": None,
        "event_id": ["e1", "e2", "e3"],
    })
    graph = stitch(raw, empty_graph())[1]
    resolved = resolve(raw, graph)
    assert list(resolved["user_id"]) == ["u1", "u1", "u1"]
    assert list(stitch_times(resolved, graph)) == [ts[2], ts[2], pd.NaT]


def test_an_export_without_logins_keeps_stitch_times_tz_aware() -> None:
    """No event was stitched late (no logins at all): the column is all NaT yet comparable with cutoffs."""
    raw = raw_events(people=20).assign(anonymous_id=None, device_id=None)
    raw = raw.loc[raw["event_type"] != "identify"].assign(user_id=lambda f: f["user_id"].fillna("u0000"))
    events = with_stitch_times(raw.set_axis(raw.index + 1000), empty_graph())
    assert str(events[STITCHED_AT].dtype) == "datetime64[ns, UTC]" and events[STITCHED_AT].isna().all()
    labels = make_labels(events, CUTOFFS, 30)
    assert len(labels) and identity_exclusions(events, CUTOFFS).empty
