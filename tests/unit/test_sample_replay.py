"""Replaying further days of the sample: same users and personas, new files, optional drift."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pandas as pd

from base.config import Settings
from persona.sample_data import Drift, generate_sample_data, next_replay_offset, replay_day, replayed_days
from tests.conftest import settings_in

USERS, DAYS = 300, 40


def _small(tmp_path: Path) -> Settings:
    return settings_in(tmp_path / "data", users=USERS, days=DAYS)


def _digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_replayed_days_are_new_files_for_the_same_users(tmp_path: Path) -> None:
    s = _small(tmp_path)
    generate_sample_data(s)
    before = {p: p.read_bytes() for p in (s.data_dir / "raw").rglob("*") if p.is_file()}
    assert next_replay_offset(s) == 0
    first = replay_day(s, 0)
    assert first.day == s.sample.end_date and first.events > 0
    assert next_replay_offset(s) == 1 and replayed_days(s) == [s.sample.end_date]
    for path, data in before.items():  # the history's files are untouched
        assert path.read_bytes() == data
    orders = pd.read_csv(first.files["orders"][0], sep=";", dtype=str, on_bad_lines="skip")
    known = set(pd.read_csv(s.data_dir / "sample" / "ground_truth.csv")["user_id"])
    assert set(orders["customer_id"].dropna()) <= known
    times = pd.to_datetime(orders["order_date"], errors="coerce").dropna()
    assert times.dt.date.isin([first.day, first.day - timedelta(days=1), first.day + timedelta(days=1)]).all()
    assert orders["order_id"].str.startswith(f"O{first.day:%Y%m%d}-").all()  # never an id of the history


def test_replay_is_deterministic_and_drift_shifts_the_day(tmp_path: Path) -> None:
    a, b = _small(tmp_path / "a"), _small(tmp_path / "b")
    plain = replay_day(a, 2)
    again = replay_day(b, 2)
    assert _digest([p for ps in plain.files.values() for p in ps]) == _digest([p for ps in again.files.values() for p in ps])
    drifted = replay_day(_small(tmp_path / "c"), 2, drift=Drift(activity=3.0, price=2.0))
    assert drifted.drift and drifted.events > 1.8 * plain.events

    def mean_amount(summary) -> float:  # noqa: ANN001
        frame = pd.read_csv(summary.files["orders"][0], sep=";", dtype=str, on_bad_lines="skip")
        return pd.to_numeric(frame["total"], errors="coerce").median()

    assert mean_amount(drifted) > 1.5 * mean_amount(plain)
