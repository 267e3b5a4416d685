"""Identity stitching: earlier anonymous history is re-keyed to the user who later logs in."""

import pandas as pd

from ingestion.identity import links_from, merge_links, resolve

T = pd.Timestamp("2026-07-01", tz="UTC")


def _events() -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": ["e1", "e2", "e3", "e4", "e5"],
        "user_id": [None, None, "u1", None, None],
        "anonymous_id": ["a1", "a1", "a1", "a9", None],
        "device_id": [None, None, None, None, "d1"],
        "timestamp": [T, T + pd.Timedelta(hours=1), T + pd.Timedelta(hours=2), T, T],
    })


def test_anonymous_history_rekeyed_after_identify() -> None:
    ev = _events()
    graph = merge_links(links_from(ev.iloc[:0]), links_from(ev))
    out = resolve(ev, graph)
    assert list(out["user_id"]) == ["u1", "u1", "u1", "anon:a9", "device:d1"]
    assert len(out) == len(ev) and list(out["event_id"]) == list(ev["event_id"])


def test_first_link_wins_and_is_recorded() -> None:
    ev = _events()
    g1 = links_from(ev)
    later = pd.DataFrame({"event_id": ["e9"], "user_id": ["u2"], "anonymous_id": ["a1"], "device_id": [None],
                          "timestamp": [T + pd.Timedelta(days=1)]})
    graph = merge_links(g1, links_from(later))
    row = graph.loc[graph["alias"] == "a1"].iloc[0]
    assert row["user_id"] == "u1" and row["event_id"] == "e3" and row["kind"] == "anonymous"
