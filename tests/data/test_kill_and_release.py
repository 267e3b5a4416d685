"""Crash safety and release: ``ingest`` killed midway (SIGKILL) and re-run loses and duplicates nothing;
a quarantined batch can be looked at and re-admitted once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingestion.event_store import load_events, read_events
from ingestion.ingest import ingest
from ingestion.ledger import read_ledger
from ingestion.release import release_batch
from persona.cli import app
from base.config import Settings
from base.paths import DataPaths
from persona.sample_data import generate_sample_data
from tests.conftest import PROJECT, python_script, settings_in
from validation.quarantine import read_quarantine

# The child ingests with every Parquet write slowed down, so the kill lands inside a commit group
# (``validation.group_rows`` from argv: a few files per group).
CHILD = """
import sys, time
import pyarrow.parquet as pq
import ingestion.event_store as store
from ingestion.ingest import ingest
from tests.conftest import settings_in
from pathlib import Path

write = pq.write_table
def slow_write(*args, **kwargs):
    time.sleep(0.02)
    return write(*args, **kwargs)
store.pq.write_table = slow_write
if __name__ == "__main__":  # not needed (the reader worker never imports this script); harmless
    s = settings_in(Path(sys.argv[1]))
    ingest(s.model_copy(update={"validation": s.validation.model_copy(update={"group_rows": int(sys.argv[2])})}),
           with_docs=False)
"""


@pytest.fixture(scope="module")
def raw_inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = settings_in(tmp_path_factory.mktemp("inbox") / "data", users=120, days=45)
    generate_sample_data(s)
    return s.data_dir / "raw"


def _copy_inbox(raw: Path, target: Path) -> Settings:
    s = settings_in(target)
    shutil.copytree(raw, s.data_dir / "raw")
    return s


def _kill_after(settings: Settings, records: int, group_rows: int) -> int:
    """Start ingest in a child, SIGKILL it once the ledger holds ``records`` records; records at the kill."""
    ledger = DataPaths(settings.data_dir).ledger
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "GX_ANALYTICS_ENABLED": "False"}
    child = subprocess.Popen([*python_script(CHILD, settings.data_dir.parent, "kill_child.py"), str(settings.data_dir),
                              str(group_rows)], cwd=PROJECT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if len(read_ledger(ledger)) >= records:
                time.sleep(0.03)  # into the next batch (a short one: on a quiet machine the last group is quick)
                break
            time.sleep(0.01)
        assert child.poll() is None, f"ingest ended before the kill ({len(read_ledger(ledger))} of {records} records): {child.stderr.read().decode()[-2000:]}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    return len(read_ledger(ledger))


def test_killed_ingest_rerun_equals_uninterrupted_run(raw_inbox: Path, tmp_path: Path) -> None:
    clean = _copy_inbox(raw_inbox, tmp_path / "clean")
    ingest(clean, with_docs=False)
    crashed = _copy_inbox(raw_inbox, tmp_path / "crashed")
    done = read_ledger(DataPaths(clean.data_dir).ledger)
    files = len(done)
    group_rows = sum(r.rows_read for r in done) // files + 1  # two files per commit group, mostly
    first = _kill_after(crashed, 2, group_rows)
    assert 2 <= first < files
    second = _kill_after(crashed, first + 1, group_rows)  # the next group commits, the one after is killed
    assert first < second < files
    ingest(crashed, with_docs=False)  # the re-run finishes the job
    want, got = (read_events(DataPaths(s.data_dir).events) for s in (clean, crashed))
    assert got["event_id"].is_unique and len(got) == len(want)
    assert set(got["event_id"]) == set(want["event_id"])
    ledger = read_ledger(DataPaths(crashed.data_dir).ledger)
    assert len(ledger) == files and len({r.sha256 for r in ledger}) == files
    assert all(r.balanced for r in ledger) and sum(r.accepted for r in ledger) == len(got)
    assert len(read_quarantine(DataPaths(crashed.data_dir).quarantine)) == sum(r.quarantined for r in ledger)
    stitched = {s.data_dir: load_events(DataPaths(s.data_dir).events, DataPaths(s.data_dir).identity_graph)
                .set_index("event_id")["user_id"].sort_index() for s in (clean, crashed)}
    assert stitched[clean.data_dir].equals(stitched[crashed.data_dir])
    assert not list(DataPaths(crashed.data_dir).events.rglob("*.tmp"))


def test_quarantine_cli_list_show_release(raw_inbox: Path, tmp_path: Path) -> None:
    s = _copy_inbox(raw_inbox, tmp_path / "q")
    orders = s.channels["orders"]
    strict = s.model_copy(update={"outliers": s.outliers.model_copy(update={"action": "quarantine"}),
                                  "fx_rates": {k: v for k, v in s.fx_rates.items() if k != "GBP"}})
    (s.data_dir / "raw" / "web" / "zz-empty.jsonl").write_bytes(b"")  # quarantined whole: no row to record
    summary = ingest(strict, with_docs=False)
    target = next(b for b in summary.batches if b.channel == "orders" and b.quarantined)
    empty = next(b for b in summary.batches if b.file.endswith("zz-empty.jsonl"))
    paths = DataPaths(s.data_dir)
    held = read_quarantine(paths.quarantine)
    held = held.loc[held["batch_id"] == target.batch_id]
    assert (held["check"] == "canonical_mapping").any()  # GBP orders: unknown currency under `strict`
    config = PROJECT / "persona.yaml"
    runner = CliRunner(env={"PERSONA_DATA_DIR": str(s.data_dir)})
    listed = runner.invoke(app, ["quarantine", "list", "-c", str(config)])
    assert listed.exit_code == 0 and target.batch_id in listed.output
    assert f"{empty.batch_id}: " in listed.output and "file is empty" in listed.output  # listed with the reason
    whole = runner.invoke(app, ["quarantine", "show", empty.batch_id, "-c", str(config)])
    assert whole.exit_code == 0 and "quarantined whole" in whole.output and "file is empty" in whole.output
    shown = runner.invoke(app, ["quarantine", "show", target.batch_id, "-c", str(config), "--limit", "3"])
    assert shown.exit_code == 0 and f"{target.file}:" in shown.output and "original:" in shown.output
    before = len(read_events(paths.events))
    released = runner.invoke(app, ["quarantine", "release", target.batch_id, "-c", str(config)])  # default rules
    assert released.exit_code == 0, released.output
    record = [r for r in read_ledger(paths.ledger) if r.released_from == target.batch_id]
    assert len(record) == 1 and record[0].balanced
    assert record[0].duplicates == target.accepted + target.duplicates and record[0].accepted > 0
    after = read_events(paths.events)
    assert len(after) == before + record[0].accepted and after["event_id"].is_unique
    again = runner.invoke(app, ["quarantine", "release", target.batch_id, "-c", str(config)])
    assert again.exit_code == 0 and "already released" in again.output
    assert len(read_events(paths.events)) == len(after)
    assert orders == s.channels["orders"]
    relisted = runner.invoke(app, ["quarantine", "list", "-c", str(config)])
    assert record[0].batch_id in relisted.output


def test_release_refuses_unknown_batch(raw_inbox: Path, tmp_path: Path) -> None:
    s = _copy_inbox(raw_inbox, tmp_path / "u")
    with pytest.raises(ValueError, match="no batch 'nope'"):
        release_batch(s, "nope")
