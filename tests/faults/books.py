"""The books of a fault scenario: rows in (counted from the inbox, independently of ingest), rows
accounted (the ledger), rows lost and rows duplicated (the store against an independent expectation)."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from ingestion.event_store import read_events
from ingestion.ledger import read_ledger
from validation.quarantine import read_quarantine

TABLE_ENV = "PERSONA_FAULT_TABLE"
"""When set, each scenario appends its row (markdown) to this file (the closing note's table)."""


@dataclass(frozen=True)
class Books:
    """One scenario's row."""

    scenario: str
    rows_in: int
    accounted: int
    lost: int
    duplicated: int
    note: str = ""

    def row(self) -> str:
        """The markdown table row."""
        cells = (self.scenario, self.rows_in, self.accounted, self.lost, self.duplicated, self.note)
        return "| " + " | ".join(map(str, cells)) + " |"


def data_lines(path: Path, header: bool) -> int:
    """Non-blank lines of a file (minus its header), read on its own (not by the ingest readers)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    lines = [line for line in data.split(b"\n") if line.strip()]
    return max(0, len(lines) - (1 if header and lines else 0))


def inbox_rows(settings: Settings) -> int:
    """Data rows of every file in the channel folders (each content once, as ingest sees it)."""
    seen, total = set(), 0
    for cfg in settings.channels.values():
        for path in sorted(settings.data_dir.glob(cfg.path)):
            body = path.read_bytes()
            if body in seen:
                continue
            seen.add(body)
            total += data_lines(path, header=cfg.format == "csv")
    return total


def audit(settings: Settings, expected_ids: set[str], scenario: str, rows_in: int, note: str = "",
          originals_only: bool = True) -> Books:
    """Check the books (every batch balanced; the store and the quarantine hold what the ledger says)
    and compare the store with ``expected_ids``; records and returns the scenario's row."""
    paths = DataPaths(settings.data_dir)
    ledger = read_ledger(paths.ledger)
    assert all(r.balanced for r in ledger), [r for r in ledger if not r.balanced]
    assert len({r.batch_id for r in ledger}) == len(ledger), "a batch committed twice"
    stored = read_events(paths.events, columns=["event_id"])["event_id"]
    assert len(stored) == sum(r.accepted for r in ledger)
    assert len(read_quarantine(paths.quarantine)) == sum(r.quarantined for r in ledger)
    counted = [r for r in ledger if not (originals_only and r.released_from)]
    books = Books(scenario, rows_in, sum(r.rows_read for r in counted), len(expected_ids - set(stored)),
                  int(len(stored) - stored.nunique()), note)
    out = os.environ.get(TABLE_ENV)
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(books.row() + "\n")
    print(books.row())
    return books


def stored_ids(settings: Settings) -> set[str]:
    """The event ids in the clean store."""
    return set(read_events(DataPaths(settings.data_dir).events, columns=["event_id"])["event_id"])


def frame_of_ids(ids: set[str]) -> pd.Series:
    """Ids as a sorted series (for readable assertion output)."""
    return pd.Series(sorted(ids), dtype=object)
