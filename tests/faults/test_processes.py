"""Fault suite (issue 13): writers running at once and writers killed with SIGKILL at random points.
Each scenario ends with the books balanced and the store checked against an uninterrupted reference
run of the same inbox (an independent count of rows in, from the files themselves)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from base.config import Settings
from base.paths import DataPaths
from ingestion.ingest import ingest
from ingestion.ledger import read_ledger
from ingestion.release import release_batch
from persona.sample_data import generate_sample_data
from tests.conftest import python_script, PROJECT, settings_in
from tests.faults.books import audit, inbox_rows, stored_ids

pytestmark = pytest.mark.faults

FIRST = ("web", "app", "orders")
"""Channels ingested before the concurrent writers start (the others arrive while they run)."""

SLOW_INGEST = """
import sys, time
import pyarrow.parquet as pq
import ingestion.event_store as store
from ingestion.ingest import ingest
from tests.conftest import settings_in
from pathlib import Path

write = pq.write_table
def slow_write(*args, **kwargs):
    time.sleep(float(sys.argv[3]))
    return write(*args, **kwargs)
store.pq.write_table = slow_write
if __name__ == "__main__":  # not needed (the reader worker never imports this script); harmless
    s = settings_in(Path(sys.argv[1]))
    ingest(s.model_copy(update={"validation": s.validation.model_copy(update={"group_rows": int(sys.argv[2])})}),
           with_docs=False)
"""


@dataclass(frozen=True)
class Reference:
    """An uninterrupted single-writer run of the inbox: its event ids before and after the release."""

    inbox: Path
    ids: set[str]
    released_ids: set[str]
    target: str
    rows_per_file: int


def _copy(raw: Path, target: Path) -> Settings:
    s = settings_in(target)
    shutil.copytree(raw, s.data_dir / "raw")
    return s


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT), "PERSONA_DATA_DIR": str(settings.data_dir),
            "GX_ANALYTICS_ENABLED": "False"}


def _cli(settings: Settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "persona.cli", *args, "-c", str(PROJECT / "persona.yaml")],
                            cwd=PROJECT, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _first_part(s: Settings) -> Path:
    """Move the later channels' files aside (they arrive while the writers run); returns where."""
    aside = s.data_dir.parent / "later"
    for name, cfg in s.channels.items():
        if name in FIRST:
            continue
        for path in s.data_dir.glob(cfg.path):
            dest = aside / path.relative_to(s.data_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, dest)
    return aside


def _bring_back(aside: Path, s: Settings) -> None:
    for path in aside.rglob("*"):
        if path.is_file():
            shutil.move(path, s.data_dir / path.relative_to(aside))


def _target(s: Settings) -> str:
    held = [r for r in read_ledger(DataPaths(s.data_dir).ledger) if r.quarantined and r.channel in FIRST]
    return sorted(held, key=lambda r: r.batch_id)[0].batch_id


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    s = settings_in(tmp_path_factory.mktemp("faults") / "data", users=40, days=45, mess_rate=0.03)
    generate_sample_data(s)
    ref = _copy(s.data_dir / "raw", tmp_path_factory.mktemp("reference") / "data")
    aside = _first_part(ref)
    ingest(ref, with_docs=False)
    target = _target(ref)
    _bring_back(aside, ref)
    ingest(ref, with_docs=False)
    ids = stored_ids(ref)
    release_batch(ref, target)
    ledger = read_ledger(DataPaths(ref.data_dir).ledger)
    return Reference(s.data_dir / "raw", ids, stored_ids(ref), target,
                     sum(r.rows_read for r in ledger) // len(ledger) + 1)


def _slow_ingest(s: Settings, group_rows: int) -> subprocess.Popen:
    return subprocess.Popen([*python_script(SLOW_INGEST, s.data_dir.parent, "slow_ingest.py"), str(s.data_dir), str(group_rows), "0.01"],
                            cwd=PROJECT, env=_env(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_concurrent_ingests_release_and_a_killed_update(reference: Reference, tmp_path: Path) -> None:
    """update (killed -9 at a random moment) + two ingests + a release, all started together on an
    inbox whose later files arrived: before the writer lock, the ingests each committed the files
    they both saw (doubles) and deleted each other's uncommitted files (losses)."""
    s = _copy(reference.inbox, tmp_path / "data")
    aside = _first_part(s)
    ingest(s, with_docs=False)
    assert _target(s) == reference.target
    _bring_back(aside, s)
    update = _cli(s, "update")
    others = [_slow_ingest(s, reference.rows_per_file), _slow_ingest(s, reference.rows_per_file),
              _cli(s, "quarantine", "release", reference.target)]
    time.sleep(random.Random(13).uniform(2.0, 10.0))
    update.send_signal(signal.SIGKILL)
    update.wait(timeout=60)
    outputs = [p.communicate(timeout=300)[0].decode() for p in others]
    assert [p.returncode for p in others] == [0, 0, 0], outputs
    assert "released as" in outputs[2]
    ingest(s, with_docs=False)  # nothing left behind by the killed update
    books = audit(s, reference.released_ids, "concurrent: update (kill -9) + 2 ingests + release",
                  inbox_rows(s), note="4 processes started together")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == books.rows_in
    assert stored_ids(s) == reference.released_ids
    releases = [r for r in read_ledger(DataPaths(s.data_dir).ledger) if r.released_from]
    assert len(releases) == 1 and releases[0].released_from == reference.target


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ingest_killed_at_random_points(reference: Reference, tmp_path: Path, seed: int) -> None:
    s = _copy(reference.inbox, tmp_path / "data")
    rng = random.Random(seed)
    files = sum(1 for cfg in s.channels.values() for _ in s.data_dir.glob(cfg.path))
    kills = 0
    for _ in range(2):  # two kills in a row at random points, then a clean finish
        child = subprocess.Popen([*python_script(SLOW_INGEST, s.data_dir.parent, "slow_ingest.py"), str(s.data_dir), str(reference.rows_per_file),
                                  "0.05"],
                                 cwd=PROJECT, env=_env(s), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _until_writing(s, child)
        time.sleep(rng.uniform(0.0, 3.0))  # a random point of the ingest itself
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(timeout=60)
    ingest(s, with_docs=False)
    books = audit(s, reference.ids, f"ingest kill -9 at random points (seed {seed})", inbox_rows(s),
                  note=f"{kills} kill(s), {files} files")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == books.rows_in
    assert stored_ids(s) == reference.ids
    assert not list(DataPaths(s.data_dir).events.rglob("*.tmp"))


def _until_writing(s: Settings, child: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until ``child`` holds the data directory's writer lock (or has exited)."""
    from base.writer_lock import holder, lock_path

    deadline = time.monotonic() + timeout
    while child.poll() is None and f"pid {child.pid} " not in holder(lock_path(s.data_dir)):
        assert time.monotonic() < deadline, "the update never took the writer lock"
        time.sleep(0.05)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_update_killed_at_random_points(reference: Reference, tmp_path: Path, seed: int) -> None:
    """``persona update`` (ingest, then features, training, scoring) killed -9 at a random moment, then an
    ingest finishes the inbox: whatever stage the kill hit, nothing committed is lost or doubled. (One kill
    per seed: each child costs an interpreter and its imports, and the suite has a time budget.)"""
    s = _copy(reference.inbox, tmp_path / "data")
    update = _cli(s, "update")
    _until_writing(s, update)  # the random point is counted from the moment it holds the writer lock
    when = random.Random(100 + seed).uniform(0.0, 6.0)
    time.sleep(when)
    killed = update.poll() is None
    if killed:
        update.send_signal(signal.SIGKILL)
    update.wait(timeout=60)
    ingest(s, with_docs=False)
    books = audit(s, reference.ids, f"update kill -9 at a random point (seed {seed})", inbox_rows(s),
                  note=f"killed {when:.1f} s after taking the lock" if killed else "finished before the kill")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == books.rows_in
    assert stored_ids(s) == reference.ids
    assert not list(DataPaths(s.data_dir).events.rglob("*.tmp"))
