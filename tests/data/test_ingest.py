"""Ingest on dirty sample data: every row accounted for, processed once, nothing lost on a rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.event_store import read_events
from ingestion.ingest import ingest
from ingestion.ledger import read_ledger
from base.config import Settings
from base.pseudonym import token
from base.paths import DataPaths
from persona.sample_data import generate_sample_data
from tests.conftest import settings_in
from validation.quarantine import read_quarantine


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = settings_in(tmp_path_factory.mktemp("ingest") / "data", users=150, days=60)
    generate_sample_data(s)
    ingest(s)
    return s


def test_every_batch_balances_and_rows_land_somewhere(ingested: Settings) -> None:
    paths = DataPaths(ingested.data_dir)
    ledger = read_ledger(paths.ledger)
    assert len(ledger) == sum(len(list(ingested.data_dir.glob(c.path))) for c in ingested.channels.values())
    for r in ledger:
        assert r.rows_read == r.accepted + r.quarantined + r.duplicates, r
    events = read_events(paths.events)
    quarantine = read_quarantine(paths.quarantine)
    assert len(events) == sum(r.accepted for r in ledger)
    assert len(quarantine) == sum(r.quarantined for r in ledger)
    assert events["event_id"].is_unique
    assert (quarantine["reason"].str.len() > 0).all() and (quarantine["source_row"] > 0).all()
    assert quarantine["source_file"].str.startswith("raw/").all()


def test_clean_store_has_no_raw_pii_and_utc_times(ingested: Settings) -> None:
    events = read_events(DataPaths(ingested.data_dir).events)
    assert str(events["timestamp"].dt.tz) == "UTC"
    text = events.astype(str).to_csv()
    assert "@example" not in text and "+49-" not in text
    orders = events.loc[events["channel"] == "orders"]
    assert orders["email_hash"].notna().mean() > 0.9
    assert set(orders["currency"].dropna()) == {"EUR"}


def test_rerun_changes_nothing(ingested: Settings) -> None:
    paths = DataPaths(ingested.data_dir)
    before = len(read_events(paths.events))
    again = ingest(ingested)
    assert again.batches == []
    assert len(read_events(paths.events)) == before


def test_same_file_dropped_twice_is_processed_once(ingested: Settings) -> None:
    paths = DataPaths(ingested.data_dir)
    before = len(read_events(paths.events))
    src = sorted(ingested.data_dir.glob(ingested.channels["orders"].path))[0]
    shutil.copy(src, src.with_name("orders_copy_of_first.csv"))
    assert ingest(ingested).batches == []
    assert len(read_events(paths.events)) == before


def test_crash_after_writing_events_before_ledger_is_recovered(ingested: Settings, tmp_path: Path) -> None:
    paths = DataPaths(ingested.data_dir)
    before = read_events(paths.events)
    lines = paths.ledger.read_text().splitlines()
    last = json.loads(lines[-1])  # the last commit: one record, or the records of a whole commit group
    paths.ledger.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # torn last line
    redo = ingest(ingested)
    assert len(redo.batches) == (len(last) if isinstance(last, list) else 1)
    after = read_events(paths.events)
    assert len(after) == len(before) and after["event_id"].is_unique
    assert set(after["event_id"]) == set(before["event_id"])


def test_broken_file_is_reported_and_the_rest_goes_on(ingested: Settings) -> None:
    web = ingested.data_dir / "raw" / "web"
    (web / "broken.jsonl").write_bytes(b"\xff\xfe not json at all\n{\"event_id\": 1}\n")
    (web / "empty.jsonl").write_text("")
    summary = ingest(ingested)
    by_file = {b.file: b for b in summary.batches}
    assert by_file["raw/web/broken.jsonl"].accepted == 0
    assert by_file["raw/web/broken.jsonl"].balanced
    assert by_file["raw/web/empty.jsonl"].status == "batch_quarantined"
    assert any("empty" in m for m in summary.messages)
    q = read_quarantine(DataPaths(ingested.data_dir).quarantine)
    broken = q.loc[q["source_file"] == "raw/web/broken.jsonl"]
    assert set(broken["source_row"]) == {1, 2}
    assert broken["reason"].str.contains("UTF-8").any()


def test_visitor_history_stored_before_login_is_rekeyed_on_read(tmp_path: Path) -> None:
    from ingestion.event_store import load_events, write_batch
    from ingestion.identity import links_from, load_graph, merge_links, save_graph
    from base.schema import CANONICAL_COLUMNS

    s = settings_in(tmp_path / "data")
    paths = DataPaths(s.data_dir)
    t = pd.Timestamp("2026-08-01", tz="UTC")
    rows = pd.DataFrame({"event_id": ["e1", "e2"], "user_id": ["anon:a7", "anon:a7"], "anonymous_id": ["a7", "a7"],
                         "event_type": ["page_view", "product_view"], "channel": "web",
                         "timestamp": [t, t + pd.Timedelta(hours=1)], "source_row": 1})
    for c in CANONICAL_COLUMNS:
        if c not in rows:
            rows[c] = None
    write_batch(rows[list(CANONICAL_COLUMNS)], paths.events, "visit")  # stored while still anonymous
    assert set(load_events(paths.events, paths.identity_graph)["user_id"]) == {"anon:a7"}
    login = rows.iloc[[0]].assign(event_id="e3", user_id="u000042", event_type="identify")
    save_graph(merge_links(load_graph(paths.identity_graph), links_from(login)), paths.identity_graph)
    assert set(load_events(paths.events, paths.identity_graph)["user_id"]) == {"u000042"}


TX = {"event_id": "id", "user_id": "user", "timestamp": "ts", "amount": "amount"}
TX_FILES = {  # one commit group: a fails a batch-level check, b has a bad row, c re-delivers both
    "a.csv": [("1", "u1", "0.10"), ("2", "u2", "0.10"), ("3", "u1", "0.10")],  # median 0.10: batch fails
    "b.csv": [("4", "", "20.00"), ("5", "u2", "20.00")],  # id 4 has no user: that row fails
    "c.csv": [("1", "u1", "20.00"), ("2", "u2", "20.00"), ("3", "u1", "20.00"), ("4", "u3", "20.00"),
              ("5", "u2", "20.00")],
}


@pytest.mark.parametrize("group_rows", [1, 1_000_000], ids=["a group per file", "one group"])
def test_failed_rows_and_batches_claim_no_event_ids_in_a_group(tmp_path: Path, group_rows: int) -> None:
    from base.config import ChannelConfig

    channel = ChannelConfig(path="raw/tx/*.csv", format="csv", columns=TX, event_type="purchase", currency="EUR")
    s = Settings(data_dir=tmp_path, channels={"tx": channel}, validation={"group_rows": group_rows})
    folder = tmp_path / "raw" / "tx"
    folder.mkdir(parents=True)
    for name, rows in TX_FILES.items():
        lines = [f"{i},{u},2026-07-01T10:00:0{i}Z,{a}" for i, u, a in rows]
        (folder / name).write_text("id,user,ts,amount\n" + "\n".join(lines) + "\n")
    summary = ingest(s, with_docs=False)
    got = {Path(b.file).name: (b.status, b.accepted, b.quarantined, b.duplicates) for b in summary.batches}
    assert got == {"a.csv": ("batch_quarantined", 0, 3, 0), "b.csv": ("partially_quarantined", 1, 1, 0),
                   "c.csv": ("accepted", 4, 0, 1)}
    assert {b.group for b in summary.batches} == ({""} if group_rows == 1 else {"tx-" + summary.batches[0].batch_id[3:]
                                                                              + "+2"})
    events = read_events(DataPaths(tmp_path).events)
    assert sorted(events["event_id"]) == [f"tx:{i}" for i in range(1, 6)] and (events["amount"] == 20.0).all()
    held = read_quarantine(DataPaths(tmp_path).quarantine)
    assert held.loc[held["source_file"] == "raw/tx/a.csv", "reason"].str.contains(
        "expect_column_median_to_be_between").all()
    no_user = held.loc[held["source_file"] == "raw/tx/b.csv"]
    assert no_user["column"].tolist() == ["user_id"] and no_user["reason"].str.endswith("got None").all()


WEB = {"event_id": "id", "user_id": "user", "anonymous_id": "anon", "event_type": "event", "timestamp": "ts"}
WEB_FILES = {  # a visitor browses in the first file and logs in, as two people, in the later ones
    "1.jsonl": [("v1", None, "a5", "page_view", "10:00"), ("v2", None, "a5", "product_view", "10:05"),
                ("v3", "u1", "a5", "identify", "12:00")],
    "2.jsonl": [("v4", "u2", "a5", "identify", "11:00"), ("v5", "u2", None, "page_view", "11:30")],
}


@pytest.mark.parametrize("group_rows", [1, 1_000_000], ids=["a group per file", "one group"])
def test_visitor_is_stitched_and_a_displaced_claim_is_recorded_whatever_the_grouping(
        tmp_path: Path, group_rows: int) -> None:
    """The earliest login wins the alias even when it arrives in a later file, and the claim it displaced
    is kept as a conflict. In one commit group the visitor's events are stored under the winner; a
    group per file stores them under the user known when their file committed (a stored user id is
    not re-keyed later: the conflict record shows it)."""
    from ingestion.event_store import load_events
    from ingestion.identity import conflicts_path, load_conflicts, load_graph
    from base.config import ChannelConfig

    channel = ChannelConfig(path="raw/web/*.jsonl", format="jsonl", columns=WEB,
                            timestamp={"unit": "iso8601", "timezone": "UTC"})
    s = Settings(data_dir=tmp_path, channels={"web": channel}, validation={"group_rows": group_rows})
    folder = tmp_path / "raw" / "web"
    folder.mkdir(parents=True)
    for name, rows in WEB_FILES.items():
        (folder / name).write_text("".join(json.dumps({"id": i, "user": u, "anon": a, "event": e,
                                                       "ts": f"2026-07-01T{t}:00Z"}) + "\n"
                                           for i, u, a, e, t in rows))
    summary = ingest(s, with_docs=False)
    assert summary.total("accepted") == 5
    paths = DataPaths(tmp_path)
    graph = load_graph(paths.identity_graph)
    a5 = token("a5", s.hash_salt, "anonymous")  # visitor ids are pseudonymised at the door
    assert graph.loc[graph["alias"] == a5, "user_id"].tolist() == ["u2"]  # 11:00 beats 12:00
    conflicts = load_conflicts(conflicts_path(paths.identity_graph))
    assert conflicts[["alias", "user_id", "claimed_by", "event_id"]].values.tolist() == [[a5, "u2", "u1", "web:v3"]]
    visitor = "u2" if group_rows > 1 else "u1"
    resolved = load_events(paths.events, paths.identity_graph).set_index("event_id")["user_id"]
    assert resolved.to_dict() == {"web:v1": visitor, "web:v2": visitor, "web:v3": "u1", "web:v4": "u2",
                                  "web:v5": "u2"}


@pytest.mark.parametrize("group_rows", [1, 1_000_000], ids=["a group per file", "one group"])
def test_a_quarantined_login_links_nobody(tmp_path: Path, group_rows: int) -> None:
    """A login row the gate quarantines (dated next year) neither links the visitor nor records a
    conflict; the same login delivered valid later does."""
    from ingestion.event_store import load_events
    from ingestion.identity import conflicts_path, load_conflicts, load_graph
    from base.config import ChannelConfig

    channel = ChannelConfig(path="raw/web/*.jsonl", format="jsonl", columns=WEB,
                            timestamp={"unit": "iso8601", "timezone": "UTC"})
    s = Settings(data_dir=tmp_path, channels={"web": channel}, validation={"group_rows": group_rows})
    folder = tmp_path / "raw" / "web"
    folder.mkdir(parents=True)

    def drop(name: str, rows: list[tuple]) -> None:
        (folder / name).write_text("".join(json.dumps({"id": i, "user": u, "anon": a, "event": e, "ts": t}) + "\n"
                                           for i, u, a, e, t in rows))

    drop("1.jsonl", [("v1", None, "a5", "page_view", "2026-07-01T10:00:00Z"),
                     ("v2", "u7", "a6", "identify", "2026-07-01T10:30:00Z")])
    drop("2.jsonl", [("v3", "u1", "a5", "identify", "2099-07-01T12:00:00Z"),  # fails the time range check
                     ("v4", None, "a5", "product_view", "2026-07-01T10:05:00Z")])
    summary = ingest(s, with_docs=False)
    assert (summary.total("accepted"), summary.total("quarantined")) == (3, 1)
    paths = DataPaths(tmp_path)
    graph = load_graph(paths.identity_graph)
    a5, a6 = (token(a, s.hash_salt, "anonymous") for a in ("a5", "a6"))  # pseudonymised at the door
    assert graph[["alias", "user_id"]].values.tolist() == [[a6, "u7"]]
    assert load_conflicts(conflicts_path(paths.identity_graph)).empty
    users = load_events(paths.events, paths.identity_graph).set_index("event_id")["user_id"].to_dict()
    assert users == {"web:v1": f"anon:{a5}", "web:v2": "u7", "web:v4": f"anon:{a5}"}
    drop("3.jsonl", [("v3", "u1", "a5", "identify", "2026-07-01T12:00:00Z")])  # delivered again, valid
    ingest(s, with_docs=False)
    users = load_events(paths.events, paths.identity_graph).set_index("event_id")["user_id"].to_dict()
    assert users == {"web:v1": "u1", "web:v2": "u7", "web:v3": "u1", "web:v4": "u1"}


def test_kept_id_hashes_equal_the_stored_ids_and_stale_ones_are_removed(ingested: Settings) -> None:
    """A run loads the event-id index from the hashes each commit kept; they must be exactly the
    stored ids, and a crash's leftovers (hashes of a commit the ledger never saw) must go."""
    from ingestion.event_store import EventIdIndex, id_hash_file, id_hashes, remove_uncommitted, write_id_hashes

    paths = DataPaths(ingested.data_dir)
    stored = read_events(paths.events)["event_id"]
    kept = EventIdIndex.load(paths.events, paths.event_ids)
    assert len(list(paths.event_ids.glob("*/*.npy"))) >= 1
    assert len(kept) == len(stored) and kept.contains_hashes(id_hashes(stored)).all()
    reread = EventIdIndex.load(paths.events)  # no kept hashes: the ids are read and hashed
    assert np.array_equal(reread._sorted, kept._sorted)
    stray = write_id_hashes(np.asarray([1, 2], dtype=np.uint64), paths.event_ids, "crashed-group")
    committed = {r.batch_id for r in read_ledger(paths.ledger)} | {r.group for r in read_ledger(paths.ledger) if r.group}
    assert remove_uncommitted(paths.events, committed, paths.event_ids) == 1
    assert not stray.exists() and id_hash_file(paths.event_ids, "crashed-group") == stray


def _web_settings(tmp_path: Path, rows_by_file: dict[str, list[dict]]) -> Settings:
    """A web-like JSON-lines channel (with amounts) and files of the given rows."""
    from base.config import ChannelConfig

    channel = ChannelConfig(path="raw/web/*.jsonl", format="jsonl", columns={**WEB, "amount": "amount"},
                            timestamp={"unit": "iso8601", "timezone": "UTC"}, currency="EUR")
    folder = tmp_path / "raw" / "web"
    folder.mkdir(parents=True)
    for name, rows in rows_by_file.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Settings(data_dir=tmp_path, channels={"web": channel})


def test_a_failed_row_claims_nothing_in_its_own_file(tmp_path: Path) -> None:
    """A row that fails a check, then a valid copy of it later in the same file: the copy is stored
    (it once counted as a duplicate of the quarantined row, so the event was only in quarantine)."""
    s = _web_settings(tmp_path, {"1.jsonl": [
        {"id": "e1", "user": "u1", "anon": None, "event": "page_view", "ts": "1999-07-02T10:00:00Z", "amount": None},
        {"id": "e1", "user": "u1", "anon": None, "event": "page_view", "ts": "2026-07-02T10:00:00Z", "amount": None}]})
    batch = ingest(s, with_docs=False).batches[0]
    assert (batch.accepted, batch.quarantined, batch.duplicates) == (1, 1, 0)


def test_a_failed_batch_with_a_login_is_quarantined_whole_and_links_nobody(tmp_path: Path) -> None:
    """A batch failing a batch-level check (implausible purchase median) whose login would link a
    visitor: the batch is quarantined and the graph stays empty (this once crashed the run)."""
    from ingestion.identity import load_graph

    s = _web_settings(tmp_path, {"1.jsonl": [
        {"id": "p1", "user": "u1", "anon": "a1", "event": "identify", "ts": "2026-07-01T10:00:00Z", "amount": None},
        {"id": "p2", "user": "u1", "anon": None, "event": "purchase", "ts": "2026-07-01T10:05:00Z", "amount": 0.1}],
        "2.jsonl": [{"id": "v1", "user": None, "anon": "a1", "event": "page_view", "ts": "2026-07-01T09:00:00Z",
                     "amount": None}]})
    got = {Path(b.file).name: (b.status, b.accepted, b.quarantined) for b in ingest(s, with_docs=False).batches}
    assert got == {"1.jsonl": ("batch_quarantined", 0, 2), "2.jsonl": ("accepted", 1, 0)}
    assert load_graph(DataPaths(tmp_path).identity_graph).empty
    assert read_events(DataPaths(tmp_path).events)["user_id"].tolist() == [f"anon:{token('a1', s.hash_salt, 'anonymous')}"]


def test_an_unreadable_kept_hash_file_falls_back_to_the_stored_ids(tmp_path: Path) -> None:
    """A torn or emptied id-hash file must not stop ingest: that commit's ids are read from its events."""
    from ingestion.event_store import EventIdIndex, id_hash_file

    s = _web_settings(tmp_path, {"1.jsonl": [
        {"id": "e1", "user": "u1", "anon": None, "event": "page_view", "ts": "2026-07-02T10:00:00Z", "amount": None}]})
    first = ingest(s, with_docs=False).batches[0]
    paths = DataPaths(tmp_path)
    id_hash_file(paths.event_ids, first.batch_id).write_bytes(b"")
    assert len(EventIdIndex.load(paths.events, paths.event_ids)) == 1
    again = tmp_path / "raw" / "web" / "2.jsonl"
    again.write_text((tmp_path / "raw" / "web" / "1.jsonl").read_text() + "\n")  # same event, new file
    batch = ingest(s, with_docs=False).batches[0]
    assert (batch.accepted, batch.duplicates) == (0, 1)


# No ``if __name__ == "__main__":`` guard: the reader worker is a plain subprocess that never imports the
# script (multiprocessing's worker did: it re-ran this ingest and waited for the writer lock its parent held).
UNGUARDED = """
import json, sys
from pathlib import Path
from ingestion.ingest import ingest
from tests.data.test_ingest import _web_settings

root = Path(sys.argv[1])
with (root / "runs.txt").open("a") as runs:
    runs.write("ran\\n")
rows = {f"{n}.jsonl": [{"id": f"e{n}-{i}", "user": "u1", "anon": None, "event": "page_view",
                        "ts": "2026-07-02T10:00:00Z", "amount": None} for i in range(3)] for n in range(3)}
summary = ingest(_web_settings(root / "data", rows), with_docs=False)
print(json.dumps(sorted([Path(b.file).name, b.status, b.accepted] for b in summary.batches)))
"""


def test_a_script_without_a_main_guard_ingests_through_the_worker_once(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.conftest import PROJECT, python_script

    done = subprocess.run([*python_script(UNGUARDED, tmp_path, "unguarded.py"), str(tmp_path)], cwd=PROJECT,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)}, capture_output=True, text=True,
                          timeout=900)  # a guard against a regression's deadlock, not a speed bound
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[f"{n}.jsonl", "accepted", 3] for n in range(3)]
    assert (tmp_path / "runs.txt").read_text() == "ran\n"  # the script ran once: the worker did not import it
    assert len(read_events(DataPaths(tmp_path / "data").events)) == 9
