"""The writer lock (issue 13): one writer at a time, re-entrant in one process, gone with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from base.writer_lock import WriterBusy, lock_path, writer_lock
from tests.conftest import PROJECT

HOLD = "import sys, time; from pathlib import Path; from base.writer_lock import writer_lock\n" \
       "with writer_lock(Path(sys.argv[1]), 'holder'):\n    print('held', flush=True); time.sleep(60)\n"


def _holder(data: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(data)], cwd=PROJECT, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert child.stdout is not None and child.stdout.readline().strip() == b"held"
    return child


def test_a_second_writer_waits_then_gives_up_naming_the_holder(tmp_path: Path) -> None:
    child = _holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(WriterBusy, match=rf"pid {child.pid} \(holder\)"):
            with writer_lock(tmp_path, "second", wait=0.5):
                pass
        assert time.monotonic() - started >= 0.5
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with writer_lock(tmp_path, "after kill -9", wait=5):  # the kernel let go with the holder
        assert "after kill -9" in lock_path(tmp_path).read_text()


def test_the_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    with writer_lock(tmp_path, "outer"):
        with writer_lock(tmp_path, "inner", wait=0):
            pass
        assert "outer" in lock_path(tmp_path).read_text()


def test_an_error_inside_the_held_block_is_not_mistaken_for_a_busy_lock(tmp_path: Path) -> None:
    """Only failing to *take* the lock is WriterBusy; a lock timeout raised by the work itself passes through."""
    from base.file_lock import LockTimeout, file_lock

    with pytest.raises(LockTimeout, match="inner.lock"):
        with writer_lock(tmp_path, "outer"):
            with file_lock(tmp_path / "inner.lock"), file_lock(tmp_path / "inner.lock", wait=0):
                pass  # flock locks are per open file: a second descriptor in one process conflicts
    with writer_lock(tmp_path, "released after the error", wait=0):
        assert "released after the error" in lock_path(tmp_path).read_text()
