"""The service's event log (issue 13): live segments sealed by ingest lose and double nothing; every
field is written; the default id covers the whole event."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from base.config import Settings
from base.pseudonym import token
from ingestion.api_log import seal_all
from serving import event_log
from serving.events import check_events, default_event_id, log_records
from serving.schemas import EventIn

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _event(**kw: object) -> EventIn:
    body = {"user_id": "u1", "event_type": "add_to_cart", "timestamp": "2026-11-29T10:00:00+00:00",
            "product_id": "p1", **kw}
    return EventIn.model_validate(body)


def test_default_id_covers_quantity_device_and_properties() -> None:
    base = default_event_id(_event(quantity=1))
    assert default_event_id(_event(quantity=2)) != base
    assert default_event_id(_event(quantity=1, device="ios")) != base
    assert default_event_id(_event(quantity=1, properties={"colour": "red"})) != base
    assert default_event_id(_event(quantity=1, timestamp="2026-11-29T11:00:00+01:00")) == base  # same instant


def test_the_log_writes_empty_fields_as_null(settings: Settings) -> None:
    events = check_events([{"anonymous_id": "v1", "event_type": "page_view", "timestamp": "2026-11-29T10:00:00Z"}],
                          settings, NOW).events
    [row] = log_records(events)
    assert row["amount"] is None and row["user_id"] is None
    assert row["anonymous_id"] == token("v1", settings.hash_salt, "anonymous")  # pseudonymised at the door


def test_appends_go_to_one_live_segment_until_ingest_seals_it(tmp_path: Path) -> None:
    log = event_log.EventLog(tmp_path / "api")
    for i in range(5):
        log.append([{"event_id": f"e{i}"}])
    assert not list((tmp_path / "api").glob("*.jsonl"))  # nothing for ingest yet: one live segment
    [sealed] = seal_all(tmp_path / "api")
    assert sealed.read_text().splitlines() == [f'{{"event_id":"e{i}"}}' for i in range(5)]
    log.append([{"event_id": "e5"}])
    assert seal_all(tmp_path / "api") != [sealed] and len(list((tmp_path / "api").glob("*.jsonl"))) == 2
    assert [r["event_id"] for r in event_log.read_all(tmp_path / "api")] == [f"e{i}" for i in range(6)]


def test_sealing_while_appending_loses_and_doubles_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "api"
    logs = [event_log.EventLog(folder) for _ in range(3)]
    done = threading.Event()

    def write(k: int) -> None:
        for i in range(300):
            logs[k].append([{"event_id": f"w{k}-{i}"}])

    def sealer() -> None:
        while not done.is_set():
            seal_all(folder)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    sealing = threading.Thread(target=sealer)
    sealing.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sealing.join()
    seal_all(folder)
    ids = [r["event_id"] for r in event_log.read_all(folder)]
    assert len(ids) == 900 and len(set(ids)) == 900
    assert not list(folder.glob(".events-live-*"))
