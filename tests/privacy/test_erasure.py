"""The erasers on small hand-made stores: whole identifiers only, aliases followed, crash then re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from base.config import Settings
from base.paths import DataPaths
from base.pseudonym import suppression_token
from base.suppression import read_tokens
from features.erasure import Erasure, _journal, forget, resolve
from ingestion.ledger import BatchRecord, append_record, file_digest, read_ledger

pytestmark = pytest.mark.privacy


def _stores(settings: Settings) -> DataPaths:
    paths = DataPaths(settings.data_dir)
    day = paths.events / "date=2026-10-01"
    day.mkdir(parents=True)
    pd.DataFrame({"event_id": ["e1", "e2", "e3", "e4"], "user_id": ["u1", "u10", "u1", "anon:a-1"],
                  "anonymous_id": ["a-1", None, None, "a-1"], "device_id": [None, None, "d-1", None],
                  "email_hash": [None, None, "f" * 64, None], "properties": [None, '{"ref":"u100"}', None, None]}
                 ).to_parquet(day / "g.parquet")
    paths.identity_graph.parent.mkdir(parents=True)
    pd.DataFrame({"alias": ["a-1", "a-9"], "kind": ["anonymous", "anonymous"], "user_id": ["u1", "u10"],
                  "linked_at": ["t", "t"], "event_id": ["e1", "e9"], "batch_id": ["b", "b"]}
                 ).to_parquet(paths.identity_graph)
    inbox = settings.data_dir / "raw" / "app"
    inbox.mkdir(parents=True)
    path = inbox / "a.csv"
    path.write_text("uuid,customer_ref,device_id\nx1,u1,\nx2,u10,\nx3,,d-1\n")
    append_record(paths.ledger, BatchRecord("app-1", "app", "raw/app/a.csv", file_digest(path), 3, 3, 0, 0,
                                            "accepted", "", "t"))
    paths.reports.mkdir(parents=True)
    (paths.reports / "persona-report-1.html").write_text("<td>u1</td>")
    (paths.reports / "persona-report-2.html").write_text("<td>u10</td>")
    return paths


def test_resolve_follows_aliases_and_pseudonyms(settings: Settings) -> None:
    _stores(settings)
    assert resolve(settings, ["u1"]) == sorted(["u1", "a-1", "d-1", "anon:a-1", "anon:d-1", "device:a-1",
                                                "device:d-1", "f" * 64, "pii.email." + "f" * 64])


def test_forget_removes_whole_identifiers_only_and_records_the_rewrite(settings: Settings) -> None:
    paths = _stores(settings)
    erasure = forget(settings, ["u1"], "tester")[-1]
    events = pd.read_parquet(paths.events)
    assert events["event_id"].tolist() == ["e2"]  # u10 stays, and a text naming u100
    assert pd.read_parquet(paths.identity_graph)["alias"].tolist() == ["a-9"]
    inbox = settings.data_dir / "raw" / "app" / "a.csv"
    assert inbox.read_text() == "uuid,customer_ref,device_id\nx2,u10,\n"
    assert file_digest(inbox) in {r.sha256 for r in read_ledger(paths.ledger)}  # not ingested again
    assert not (paths.reports / "persona-report-1.html").exists() and (paths.reports / "persona-report-2.html").exists()
    assert suppression_token("a-1", settings.hash_salt) in read_tokens(paths.suppression)
    assert erasure.counts["clean events: rows"] == 3 and erasure.counts["inbox and event log: lines"] == 2
    audit = paths.audit_log.read_text()
    assert "tester" in audit and "u1" not in audit and "a-1" not in audit


def test_a_crash_after_the_journal_is_completed_by_the_next_run(settings: Settings) -> None:
    paths = _stores(settings)
    erasure = Erasure("crashed", ["u1"], resolve(settings, ["u1"]))
    journal = _journal(paths, erasure)  # the process dies here: nothing erased yet
    pd.DataFrame({"alias": [], "kind": [], "user_id": [], "linked_at": [], "event_id": [], "batch_id": []},
                 dtype=object).to_parquet(paths.identity_graph)  # the alias source is gone already
    done = forget(settings, [], "tester")
    assert [e.request for e in done] == ["crashed"] and not journal.exists()
    assert pd.read_parquet(paths.events)["event_id"].tolist() == ["e2"]  # aliases came from the journal
    assert json.loads(paths.audit_log.read_text().splitlines()[-1])["request"] == "crashed"


def test_properties_text_mentioning_an_id_is_erased(settings: Settings, tmp_path: Path) -> None:
    from features.erasure import erase_parquet

    path = tmp_path / "q.parquet"
    pd.DataFrame({"original": ['{"customer":"u1"}', '{"customer":"u10"}'], "reason": ["x", "y"]}).to_parquet(path)
    assert erase_parquet(path, ["u1"]) == 1
    assert pd.read_parquet(path)["original"].tolist() == ['{"customer":"u10"}']


def test_a_running_update_holds_the_erasure_back_until_it_ends(settings: Settings) -> None:
    from base.file_lock import file_lock
    from base.writer_lock import lock_path
    from features.erasure import ErasureBusy, pending

    paths = _stores(settings)
    with file_lock(lock_path(settings.data_dir)):  # an update is running: it holds the writer lock throughout
        with pytest.raises(ErasureBusy, match="persona forget"):
            forget(settings, ["u1"], "tester", wait_seconds=0.6)
        assert pending(settings) and suppression_token("u1", settings.hash_salt) in read_tokens(paths.suppression)
        assert "u1" in pd.read_parquet(paths.events)["user_id"].tolist()  # nothing erased under the update
    done = forget(settings, [], "tester")  # the update ended: the journal is completed
    assert len(done) == 1 and not pending(settings)
    assert pd.read_parquet(paths.events)["event_id"].tolist() == ["e2"]


def test_sqlite_rows_are_deleted_without_leaving_their_bytes_in_the_file(tmp_path: Path) -> None:
    import sqlite3

    from features.erasure import erase_sqlite
    from features.online_layout import entity_keys

    path = tmp_path / "online.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE p_fv (entity_key BLOB, feature_name TEXT, value BLOB, PRIMARY KEY (entity_key, feature_name))")
    con.execute("CREATE TABLE records (user_id TEXT PRIMARY KEY, record TEXT)")
    for i in range(300):  # enough rows for several pages
        key = entity_keys("user_id", [f"u{i:04d}"])[0]
        con.executemany("INSERT INTO p_fv VALUES (?, ?, ?)", [(key, f"f{j}", b"x" * 20) for j in range(5)])
        con.execute("INSERT INTO records VALUES (?, ?)", (f"u{i:04d}", f'{{"user_id":"u{i:04d}","segment":"s"}}'))
    con.commit()
    con.close()
    assert b"u0150" in path.read_bytes()
    assert erase_sqlite(path, ["u0150"]) == 6
    data = path.read_bytes()
    assert b"u0150" not in data and b"u0151" in data  # overwritten in place (secure_delete), neighbours kept
