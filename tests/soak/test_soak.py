"""The short soak: two workers under load while `persona update` runs, a champion is promoted and
rolled back and a worker is killed; no 5xx, every taken event exactly once in the clean store and
in the online values, the surviving worker's memory within 10% (bench/soak.py; the long one is
`python -m bench soak`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona.pipeline import run_all
from tests.conftest import settings_in

pytestmark = [pytest.mark.soak, pytest.mark.e2e]


def test_two_workers_stay_exact_under_load_update_swap_and_a_killed_worker(tmp_path: Path) -> None:
    from bench.soak import run_soak

    settings = settings_in(tmp_path / "data", users=80, days=75)
    run_all(settings)
    # short: the update, promotion, kill and roll-back still happen during the load, each after the one
    # before has finished (the long run is `python -m bench soak`)
    result = run_soak(settings, seconds=8, warmup=1.5, progress=lambda line: None)
    assert result.problems() == [], result.summary()
    assert result.duplicates_answered >= result.resent  # re-sent events answered as duplicates, not taken again
    assert len(result.timeline) >= 6 and sum(result.statuses.values()) > 100, result.summary()
    steps = [t.split(" ", 1)[1] for t in result.timeline]  # every change happened while the load ran, in order
    assert [s.split(" ")[0] + " " + s.split(" ")[-1] for s in steps] == [
        "persona starts", f"persona {steps[1].split(' ')[-1]}", "spend promoted", "worker killed",
        "spend back", "load stopped"], result.summary()
