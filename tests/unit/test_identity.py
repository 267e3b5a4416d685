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


def test_second_claim_on_an_alias_is_recorded_as_a_conflict() -> None:
    from ingestion.identity import conflicts_from, merge_conflicts

    graph = merge_links(links_from(_events(), "b1"), links_from(_events().iloc[:0]))
    later = pd.DataFrame({"event_id": ["e9", "e10"], "user_id": ["u2", "u1"], "anonymous_id": ["a1", "a1"],
                          "device_id": [None, None], "timestamp": [T + pd.Timedelta(days=1)] * 2})
    new = links_from(later, "b2")
    grown = merge_links(graph, new)
    conflicts = conflicts_from(grown, new)
    assert len(conflicts) == 1
    c = conflicts.iloc[0]
    assert (c["alias"], c["user_id"], c["claimed_by"], c["event_id"], c["batch_id"]) == ("a1", "u1", "u2", "e9", "b2")
    assert len(merge_conflicts(conflicts, conflicts)) == 1  # recording the same claim twice keeps one
    assert grown.loc[grown["alias"] == "a1", "batch_id"].item() == "b1"


def test_graph_and_conflicts_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ingestion.identity import load_graph, save_graph

    graph = merge_links(links_from(_events(), "b1"), links_from(_events().iloc[:0]))
    save_graph(graph, tmp_path / "g.parquet")
    back = load_graph(tmp_path / "g.parquet")
    assert list(back["alias"]) == list(graph["alias"]) and set(back["batch_id"]) == {"b1"}


def test_bridge_seen_before_the_device_is_linked_still_unifies_the_visitor() -> None:
    """Found by hypothesis: visitor a1 seen with device d2 in one batch, d2 linked to u1 in a later one."""
    from ingestion.identity import stitch

    def frame(rows: list[tuple]) -> pd.DataFrame:
        return pd.DataFrame({"event_id": [f"e{i}" for i in range(len(rows))],
                             "user_id": [r[0] for r in rows], "anonymous_id": [r[1] for r in rows],
                             "device_id": [r[2] for r in rows], "timestamp": T})

    first = frame([(None, "a1", None), (None, "a1", "d2")])
    second = frame([("u1", None, "d2")]).assign(event_id="e9")
    _, graph = stitch(first, links_from(first.iloc[:0]))
    _, graph = stitch(second, graph)
    out = resolve(pd.concat([first, second], ignore_index=True), graph)
    assert list(out["user_id"]) == ["u1", "u1", "u1"]
