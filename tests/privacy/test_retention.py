"""Retention (privacy.retention_days): what is past its limit goes, nothing not yet ingested is lost,
and each user's current persona stays."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from base.config import Settings
from base.paths import DataPaths
from persona.retention import apply_retention
from scoring.history import (
    SCORES,
    VERSIONS,
    append_history,
    latest_personas,
    read_history,
)

pytestmark = pytest.mark.privacy
DAY = 86400.0


def _with_retention(settings: Settings, **days: int) -> Settings:
    privacy = settings.privacy.model_copy(update={"retention_days": settings.privacy.retention_days.model_copy(
        update=days)})
    return settings.model_copy(update={"privacy": privacy})


def _age(path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def test_ingested_inbox_files_and_old_quarantine_go_the_rest_stays(settings: Settings) -> None:
    from ingestion.ledger import BatchRecord, append_record, file_digest
    from validation.quarantine import quarantine_frame, write_quarantine

    s = _with_retention(settings, raw=30, event_log=7, quarantine=90)
    paths = DataPaths(s.data_dir)
    crm, api = s.data_dir / "raw" / "crm", s.data_dir / "raw" / "api"
    crm.mkdir(parents=True)
    api.mkdir(parents=True)
    for path in (crm / "old.txt", crm / "late.txt", crm / "recent.txt", api / "events-1.jsonl"):
        path.write_text(f"ticket customer opened topic\nT1 u1 2026-10-01T10:00:00Z {path.stem}\n")
    for path in (crm / "old.txt", crm / "recent.txt", api / "events-1.jsonl"):  # ingested (the ledger says so)
        append_record(paths.ledger, BatchRecord(path.stem, "crm", path.name, file_digest(path), 1, 1, 0, 0,
                                                "accepted", "", "2026-10-01T00:00:00+00:00"))
    rows = pd.DataFrame({"source_file": ["raw/crm/old.txt"], "source_row": [1], "text": ["x"]})
    write_quarantine(quarantine_frame(rows, batch_id="b1", check="c", column=None, reason="r"), paths.quarantine, "b1")
    write_quarantine(quarantine_frame(rows, batch_id="b2", check="c", column=None, reason="r"), paths.quarantine, "b2")
    for path, days in ((crm / "old.txt", 40), (crm / "late.txt", 40), (crm / "recent.txt", 5),
                       (api / "events-1.jsonl", 8), (paths.quarantine / "b1.parquet", 100)):
        _age(path, days)
    gone = apply_retention(s)
    assert gone == {"inbox files": 1, "event log files": 1, "quarantine files": 1}
    assert not (crm / "old.txt").exists() and not (api / "events-1.jsonl").exists()
    assert (crm / "late.txt").exists() and (crm / "recent.txt").exists()  # not ingested yet / recent: kept
    assert (paths.quarantine / "b2.parquet").exists()
    assert apply_retention(s) == {}


def _persona(user: str, scored: str, spend: float) -> dict:
    return {"user_id": user, "segment": "s", **{c: spend for c in SCORES}, **{c: "1" for c in VERSIONS},
            "feature_timestamp": scored, "scored_at": scored}


def test_history_keeps_recent_rows_and_every_users_current_persona(settings: Settings) -> None:
    s = _with_retention(settings, history=30)
    now = pd.Timestamp.now(tz="UTC")
    old, older, recent = (str(now - pd.Timedelta(days=d)) for d in (60, 90, 1))
    for rows in ([_persona("a", older, 1.0), _persona("b", older, 1.0)],
                 [_persona("a", old, 500.0)], [_persona("a", recent, 900.0)]):
        append_history(s, pd.DataFrame(rows), "batch")
    assert len(read_history(s)) == 4
    assert apply_retention(s) == {"history rows": 2}  # a's two old rows; b's only row is current
    kept = read_history(s)
    assert sorted(kept["user_id"]) == ["a", "b"]
    assert latest_personas(s).set_index("user_id").loc["a", SCORES[0]] == 900.0
