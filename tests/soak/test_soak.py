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
    result = run_soak(settings, seconds=25, progress=lambda line: None)
    assert result.problems() == [], result.summary()
    assert result.duplicates_answered >= result.resent  # re-sent events answered as duplicates, not taken again
    assert len(result.timeline) >= 6 and sum(result.statuses.values()) > 100, result.summary()
