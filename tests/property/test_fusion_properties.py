"""Property-based tests of the fusion invariants: stitching keeps every event, ingest accounts for every
row, re-ingest changes nothing."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.event_store import read_events
from ingestion.identity import links_from, merge_links, resolve, stitch
from ingestion.ingest import ingest
from ingestion.ledger import read_ledger
from base.config import ChannelConfig, Settings
from base.paths import DataPaths
from validation.quarantine import read_quarantine

T0 = pd.Timestamp("2026-07-01", tz="UTC")
maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731

event_rows = st.lists(
    st.tuples(maybe(st.sampled_from(["u1", "u2", "u3"])), maybe(st.sampled_from(["a1", "a2", "a3", "a4"])),
              maybe(st.sampled_from(["d1", "d2"])), st.integers(0, 10_000)),
    min_size=0, max_size=40,
)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(len(rows))],
        "user_id": pd.Series([r[0] for r in rows], dtype=object),
        "anonymous_id": pd.Series([r[1] for r in rows], dtype=object),
        "device_id": pd.Series([r[2] for r in rows], dtype=object),
        "timestamp": pd.Series([T0 + pd.Timedelta(minutes=r[3]) for r in rows], dtype="datetime64[ns, UTC]"),
    })


@settings(max_examples=60, deadline=None)
@given(event_rows, st.integers(0, 40))
def test_stitching_neither_loses_nor_invents_events(rows: list[tuple], split: int) -> None:
    events = _frame(rows)
    first, second = events.iloc[:split], events.iloc[split:]
    _, graph = stitch(first, links_from(first.iloc[:0]))
    _, graph = stitch(second, graph)
    out = resolve(events, graph)
    assert list(out["event_id"]) == list(events["event_id"])  # same events, same order
    known = events["user_id"].notna()
    assert (out.loc[known, "user_id"] == events.loc[known, "user_id"]).all()  # known users are never re-keyed
    assert out.loc[events[["user_id", "anonymous_id", "device_id"]].notna().any(axis=1), "user_id"].notna().all()
    # every anonymous id resolves to one identity, whatever batch its events came in
    anon = out.loc[events["user_id"].isna() & events["anonymous_id"].notna()]
    assert (anon.groupby(events["anonymous_id"])["user_id"].nunique() <= 1).all()
    # a user only ever gains events from aliases linked to them
    linked = set(graph["user_id"])
    assert set(out.loc[events["user_id"].isna() & out["user_id"].notna() & ~out["user_id"].astype(str).str.contains(":"),
                       "user_id"]) <= linked
    # direct links do not depend on the order the batches arrive in
    direct = merge_links(links_from(first), links_from(second))
    other = merge_links(links_from(second), links_from(first))
    key = ["kind", "alias", "user_id"]
    assert direct[key].sort_values(key).reset_index(drop=True).equals(other[key].sort_values(key).reset_index(drop=True))


CHANNEL = ChannelConfig(path="raw/tx/*.csv", format="csv", columns={
    "event_id": "id", "user_id": "user", "timestamp": "ts", "amount": "amount"}, event_type="purchase")

csv_rows = st.lists(
    st.tuples(st.integers(1, 12),  # ids collide: duplicates
              st.sampled_from(["u1", "u2", ""]),  # a missing user fails the gate
              st.one_of(st.integers(0, 1000).map(lambda m: (T0 + pd.Timedelta(minutes=m)).isoformat()),
                        st.just("not a time")),
              st.one_of(st.floats(1, 500).map(lambda x: f"{x:.2f}"), st.just("x"), st.just("-3"))),
    min_size=1, max_size=30,
)


@pytest.fixture(scope="module")
def shared_gate():  # type: ignore[no-untyped-def]
    from validation.gate import GateSession

    return GateSession()  # one in-memory GX session for every example (its import and set-up take seconds)


def _csv(rows: list[tuple], header: bool = True) -> str:
    body = "\n".join(",".join(str(v) for v in r) for r in rows)
    return ("id,user,ts,amount\n" if header else "") + body + "\n"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csv_rows, csv_rows, st.randoms(use_true_random=False))
def test_accounting_holds_and_reingest_is_idempotent(shared_gate, first: list[tuple], second: list[tuple],
                                                     rnd) -> None:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="persona-prop-"))
    try:
        s = Settings(data_dir=root, channels={"tx": CHANNEL})
        folder = root / "raw" / "tx"
        folder.mkdir(parents=True)
        (folder / "a.csv").write_text(_csv(first))
        (folder / "b.csv").write_text(_csv(first + second))
        summary = ingest(s, with_docs=False, gate=shared_gate)
        paths = DataPaths(root)
        ledger = read_ledger(paths.ledger)
        assert len(ledger) == len(summary.batches) == 2
        for r in ledger:
            assert r.rows_read == r.accepted + r.quarantined + r.duplicates
        assert ledger[0].rows_read == len(first) and ledger[1].rows_read == len(first) + len(second)
        events = read_events(paths.events)
        assert events["event_id"].is_unique and len(events) == sum(r.accepted for r in ledger)
        assert len(read_quarantine(paths.quarantine)) == sum(r.quarantined for r in ledger)
        assert ledger[1].accepted <= len({r[0] for r in second})  # the first file's rows are not re-admitted
        before = set(events["event_id"])
        # re-running, or dropping the same file again under another name, changes nothing
        shutil.copy(folder / "b.csv", folder / "b_again.csv")
        assert ingest(s, with_docs=False, gate=shared_gate).batches == []
        # the same rows in another order are a new file, but bring no new events
        shuffled = first + second
        rnd.shuffle(shuffled)
        (folder / "c.csv").write_text(_csv(shuffled))
        for again in ingest(s, with_docs=False, gate=shared_gate).batches:  # none when the order is unchanged
            assert again.rows_read == again.accepted + again.quarantined + again.duplicates
        after = read_events(paths.events)
        assert after["event_id"].is_unique and set(after["event_id"]) - before <= {f"tx:{r[0]}" for r in shuffled}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2), st.booleans(), st.booleans()), max_size=60))
def test_duplicate_search_decides_every_row_as_the_rule_says(rows: list[tuple[int, int, bool, bool]]) -> None:
    """A row is a duplicate when an earlier claiming row of any batch, or an earlier valid row of its
    own batch, has its id. Dedupe looks only at ids that occur more than once; checked against the
    rule spelled out row by row."""
    import numpy as np

    from ingestion.ingest import _claimed

    rows = sorted(rows, key=lambda r: r[1])  # rows of a group come batch by batch
    hashes = np.asarray([r[0] for r in rows], dtype=np.uint64)
    owner = np.asarray([r[1] for r in rows], dtype=np.int64)
    valid = np.asarray([r[3] for r in rows], dtype=bool)
    claims = np.asarray([r[2] for r in rows], dtype=bool) & valid  # only valid rows claim
    expected = [any(hashes[q] == hashes[r] and (claims[q] or (owner[q] == owner[r] and valid[q]))
                    for q in range(r)) for r in range(len(rows))]
    assert _claimed(hashes, owner, claims, valid).tolist() == expected


_odd_text = st.one_of(
    st.none(), st.text(max_size=30),
    st.sampled_from(["2026-07-04T02:30:48Z ", "2026-07-04T02:30:48+02", "2026-07-04 02:30:48", "x+02:00[Europe/Berlin]",
                     "2026-03-29T02:30:00", "2026-10-25T02:30:00", "1783123665589", "1e3", "-0", "inf", "NaN",
                     "  ", "9999999999999999999999", "2026-02-30T10:00:00Z", "12.5", "1,5", "completed", "EUR", "XXX"]),
)


@functools.cache
def _project_settings() -> Settings:
    from base.config import load_settings
    from tests.conftest import PROJECT

    return load_settings(PROJECT / "persona.yaml")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["web", "app", "orders", "social", "crm", "till"]), st.lists(st.lists(_odd_text, min_size=12, max_size=12),
                                                                         min_size=1, max_size=15))
def test_canonical_mapping_never_raises_and_accounts_for_every_row(channel: str, cells: list[list[str | None]]) -> None:
    """Whatever text a channel's columns hold, every row becomes an event or a reject with a reason."""
    import pyarrow as pa

    from ingestion.canonical import canonicalise_table

    s = _project_settings()
    till = ChannelConfig(path="raw/till/*.csv", format="csv", currency="GBP", event_type="purchase",
                         columns={"user_id": "customer", "timestamp": "date", "quantity": "qty", "amount": "amount"},
                         timestamp={"unit": "format", "format": "%d/%m/%Y", "timezone": "Europe/London"})
    cfg = till if channel == "till" else s.channels[channel]  # "till": no id column, ids hashed from the row
    sources = list(dict.fromkeys(cfg.columns.values())) + list(cfg.pii)
    table = pa.table({**{src: pa.array([row[i % 12] for row in cells], type=pa.string())
                         for i, src in enumerate(sources)},
                      "source_row": pa.array(range(2, len(cells) + 2), type=pa.int64())})
    out = canonicalise_table(table, channel, cfg, s, f"raw/{channel}/x")
    assert out.events.num_rows + len(out.rejects) == len(cells)
    assert (out.rejects["reason"].str.len() > 0).all()
    assert sorted(out.events["source_row"].to_pylist() + out.rejects["source_row"].tolist()) == list(
        range(2, len(cells) + 2))


link_rows = st.lists(
    st.tuples(st.sampled_from(["anonymous", "device"]), st.sampled_from(["a1", "a2", "a3", "b1", "b2"]),
              st.sampled_from(["u1", "u2", "device:b1", "device:b2"]), st.integers(0, 3)),
    min_size=0, max_size=25,
)


def _links(rows: list[tuple[str, str, str, int]], batch: str) -> pd.DataFrame:
    return pd.DataFrame({"alias": [r[1] for r in rows], "kind": [r[0] for r in rows], "user_id": [r[2] for r in rows],
                         "linked_at": [T0 + pd.Timedelta(hours=r[3]) for r in rows],
                         "event_id": [f"{batch}-e{i}" for i in range(len(rows))], "batch_id": batch},
                        columns=["alias", "kind", "user_id", "linked_at", "event_id", "batch_id"])


@settings(max_examples=150, deadline=None)
@given(first=link_rows, second=link_rows)
def test_merging_into_the_sorted_graph_equals_sorting_everything(first: list, second: list) -> None:
    """The graph grows by binary search and insertion (an ingest must not sort its whole graph per group):
    the same graph, row for row, as sorting the old and new links together, ties and bridges included; the
    conflicts found against the narrowed previous graph are the ones found against all of it."""
    from ingestion.identity import _merge_sorting, conflicts_from, empty_conflicts, is_pointer

    graph, new = merge_links(_links(first, "b1"), _links([], "b0")), _links(second, "b2")
    grown = merge_links(graph, new)
    parts = [f for f in (graph, new) if not f.empty]
    expected = _merge_sorting(pd.concat(parts, ignore_index=True)) if parts else grown
    pd.testing.assert_frame_equal(grown, expected)
    got = conflicts_from(grown, new, previous=graph)
    parts = [f for f in (new, graph.loc[~is_pointer(graph["user_id"])]) if not f.empty]  # every previous row
    claims = pd.concat(parts, ignore_index=True) if parts else new
    if claims.empty or grown.empty:
        reference = empty_conflicts()
    else:
        winner = grown.loc[:, ["kind", "alias", "user_id"]].rename(columns={"user_id": "linked"})
        claims = claims.merge(winner, on=["kind", "alias"], how="inner")
        claims = claims.loc[claims["user_id"] != claims["linked"]]
        claims = claims.sort_values("linked_at", kind="stable").drop_duplicates(["kind", "alias", "user_id"])
        reference = claims.rename(columns={"user_id": "claimed_by", "linked": "user_id", "linked_at": "claimed_at"})
        reference = reference.loc[:, list(got.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), reference, check_dtype=False)


@settings(max_examples=150, deadline=None)
@given(rows=link_rows, nulls=st.lists(st.integers(0, 24), max_size=3))
def test_arrow_sort_of_links_equals_the_pandas_sort(rows: list, nulls: list[int]) -> None:
    """The graph's links are sorted by Arrow (pandas' object sort was most of a large ingest's stitching):
    the same rows in the same order as pandas' stable sort, ties, bridges and missing users included."""
    from ingestion.identity import _merge_sorting, _merge_sorting_pandas

    links = _links(rows, "b1")
    for i in nulls:
        if i < len(links):
            links.loc[i, "user_id"] = None
    pd.testing.assert_frame_equal(_merge_sorting(links), _merge_sorting_pandas(links))


group_rows = st.lists(
    st.tuples(maybe(st.sampled_from(["u1", "u2", "u3"])), maybe(st.sampled_from(["a1", "a2", "a3", "b1"])),
              maybe(st.sampled_from(["b1", "b2", "d1"])), st.integers(0, 4 * 60)),
    min_size=0, max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(history=group_rows, extra=link_rows, batch=group_rows, among=st.lists(st.booleans(), min_size=30, max_size=30))
def test_stitching_a_group_on_its_related_rows_equals_stitching_on_the_whole_graph(
        history: list, extra: list, batch: list, among: list[bool]) -> None:
    """An ingest stitches each group on the graph rows its aliases (and the devices their visitors point
    at) name, then merges back: the same users, graph and conflicts as stitching against the whole graph."""
    import numpy as np

    from ingestion.identity import IdentityColumns, conflicts_from, links_of, stitch_group, stitch_users

    _, graph = stitch(_frame(history), merge_links(_links(extra, "b0"), _links([], "b0")), batch_id="b1")
    events = _frame(batch)
    cols, rows = IdentityColumns.of(events), np.array(among[:len(batch)], dtype=bool)
    links = links_of(cols, "b2", rows)
    users, grown, new = stitch_group(cols, graph, "b2", links, rows)
    want_users, want_graph = stitch_users(cols, graph, "b2", links=links, among=rows)
    assert users.to_pylist() == want_users.to_pylist()
    pd.testing.assert_frame_equal(grown.reset_index(drop=True), want_graph.reset_index(drop=True))
    want_new = conflicts_from(want_graph, links, previous=graph)
    pd.testing.assert_frame_equal(new.reset_index(drop=True), want_new.reset_index(drop=True), check_dtype=False)
