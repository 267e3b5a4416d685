"""Never lose, never double (issue 13): API events of every type reach the store, a corrupt ledger
stops the run, a crash's quarantine and identity writes are rolled back, a run hashes only new files,
and an id-less channel can keep genuinely repeated lines."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from base.config import Settings, load_settings
from base.paths import DataPaths
from ingestion.event_store import read_events
from ingestion.identity import load_graph, save_graph
from ingestion.ingest import ingest
from ingestion.ledger import LedgerCorrupt, read_ledger
from serving import event_log
from serving.events import check_events, log_records
from tests.data.test_channels import CONFIG, TILL
from validation.quarantine import read_quarantine

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def _web(folder: Path, name: str, ids: range, user: str = "u1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps({"event_id": f"w{i}", "user_id": user, "event": "pageview",
                                        "ts": f"2026-11-{1 + i % 28:02d}T10:00:00Z"}) + "\n" for i in ids))
    return path


def test_api_events_without_amount_or_user_reach_the_clean_store(settings: Settings) -> None:
    posted = [{"anonymous_id": "v1", "event_type": "page_view", "timestamp": "2026-11-29T10:00:00Z"},
              {"user_id": "u1", "event_type": "add_to_cart", "timestamp": "2026-11-29T10:01:00Z", "quantity": 2},
              {"user_id": "u1", "event_type": "add_to_cart", "timestamp": "2026-11-29T10:01:00Z", "quantity": 3},
              {"device_id": "d1", "event_type": "search", "timestamp": "2026-11-29T10:02:00Z",
               "properties": {"q": "shoes"}}]
    events = check_events(posted, settings, NOW).events
    folder = DataPaths(settings.data_dir).event_log(settings.serving.event_log)
    event_log.append(folder, log_records(events))  # before: logged without empty fields, then quarantined whole
    summary = ingest(settings, with_docs=False)
    assert [(b.status, b.accepted) for b in summary.batches] == [("accepted", 4)], summary.messages
    stored = read_events(DataPaths(settings.data_dir).events)
    assert sorted(stored["event_id"]) == sorted(f"api:{e.event_id}" for e in events)
    assert stored.loc[stored["event_type"] == "add_to_cart", "quantity"].tolist() == [2.0, 3.0]  # two events
    old = [{k: v for k, v in r.items() if v is not None} for r in log_records(events[:1])]  # as logs were written
    old[0]["event_id"] = "old-style"
    event_log.append(folder, old)
    live = check_events([{"anonymous_id": "v2", "event_type": "page_view", "timestamp": "2026-11-29T11:00:00Z"}],
                        settings, NOW).events
    event_log.EventLog(folder).append(log_records(live))  # the service's write path (a live segment)
    summary = ingest(settings, with_docs=False)
    assert {b.status for b in summary.batches} == {"accepted"} and all(b.balanced for b in summary.batches)
    stored = read_events(DataPaths(settings.data_dir).events)
    assert {"api:old-style", f"api:{live[0].event_id}"} < set(stored["event_id"]) and len(stored) == 6
    assert stored["event_id"].is_unique
    assert not list(folder.glob(".events-live-*"))  # ingest sealed the live segment


def test_an_unreadable_ledger_line_stops_ingest_and_deletes_nothing(settings: Settings) -> None:
    raw = settings.data_dir / "raw" / "web"
    _web(raw, "a.jsonl", range(10))
    _web(raw, "b.jsonl", range(10, 20))
    ingest(settings, with_docs=False)
    paths = DataPaths(settings.data_dir)
    files = sorted(paths.events.rglob("*.parquet"))
    lines = paths.ledger.read_bytes().split(b"\n")
    lines[0] = b"#" + lines[0]  # damaged on disk
    paths.ledger.write_bytes(b"\n".join(lines))
    _web(raw, "c.jsonl", range(20, 30))
    with pytest.raises(LedgerCorrupt, match="line 1"):
        ingest(settings, with_docs=False)
    assert sorted(paths.events.rglob("*.parquet")) == files  # before: the batch's files were deleted


def test_quarantine_and_identity_writes_of_an_uncommitted_batch_are_rolled_back(settings: Settings) -> None:
    raw = settings.data_dir / "raw" / "web"
    _web(raw, "a.jsonl", range(5))
    ingest(settings, with_docs=False)
    paths = DataPaths(settings.data_dir)
    ghost = pd.DataFrame({"batch_id": ["web-ghost"], "source_file": ["raw/web/x.jsonl"], "source_row": [1],
                          "check": ["x"], "column": [""], "reason": ["crashed"], "original": ["{}"]})
    paths.quarantine.mkdir(parents=True, exist_ok=True)
    ghost.to_parquet(paths.quarantine / "web-ghost.parquet")  # what a crash before the ledger line left
    graph = load_graph(paths.identity_graph)
    crashed = pd.DataFrame({"alias": ["anon:v9"], "kind": ["anonymous"], "user_id": ["u9"],
                            "linked_at": [pd.Timestamp("2026-11-01", tz="UTC")], "event_id": ["w99"],
                            "batch_id": ["web-ghost"]})
    save_graph(pd.concat([graph, crashed], ignore_index=True), paths.identity_graph)
    _web(raw, "b.jsonl", range(5, 10))
    ingest(settings, with_docs=False)
    assert "web-ghost" not in set(read_quarantine(paths.quarantine)["batch_id"])
    assert "anon:v9" not in set(load_graph(paths.identity_graph)["alias"])
    assert len(read_events(paths.events)) == 10


def test_a_run_hashes_only_new_files(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import ingestion.manifest as manifest

    raw = settings.data_dir / "raw" / "web"
    for k in range(4):
        _web(raw, f"{k}.jsonl", range(10 * k, 10 * k + 10))
    ingest(settings, with_docs=False)
    hashed: list[Path] = []
    real = manifest.file_digest
    monkeypatch.setattr(manifest, "file_digest", lambda p: hashed.append(p) or real(p))
    _web(raw, "new.jsonl", range(100, 105))
    [batch] = ingest(settings, with_docs=False).batches
    assert batch.accepted == 5 and [p.name for p in hashed] == ["new.jsonl"]  # before: all five were re-hashed


@pytest.fixture
def till(tmp_path: Path) -> Settings:
    (tmp_path / "persona.yaml").write_text(CONFIG.replace("    event_type: purchase\n",
                                                          "    event_type: purchase\n    key_on_line: true\n", 1))
    settings = load_settings(tmp_path / "persona.yaml")
    folder = settings.data_dir / "raw" / "till"
    folder.mkdir(parents=True)
    (folder / "till_2026-07.csv").write_text(TILL)
    return settings


def test_key_on_line_keeps_repeated_lines_and_dedupes_a_redelivered_file(till: Settings) -> None:
    [batch] = ingest(till, with_docs=False).batches
    assert (batch.accepted, batch.duplicates, batch.quarantined) == (4, 0, 2)  # the repeated c2 line is kept
    (till.data_dir / "raw" / "till" / "resent_under_a_new_name.csv").write_text(TILL)
    assert ingest(till, with_docs=False).batches == []  # same content under a new name: not read again
    stored = read_events(DataPaths(till.data_dir).events)
    assert len(stored) == 4 and stored["event_id"].is_unique
    assert len(read_ledger(DataPaths(till.data_dir).ledger)) == 1  # same content: processed once
