"""The update loop on a small real pipeline: idle runs skip every step, a new day flows end to end,
an injected drift is found, a killed update completes on re-run without duplicates, and
``persona watch`` stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from base.config import Settings, load_settings
from persona.pipeline import run_all
from persona.sample_data import Drift, replay_day
from persona.update import load_state, run_update
from scoring.history import latest_personas, read_history
from tests.conftest import PROJECT

pytestmark = pytest.mark.e2e


def _config(tmp: Path) -> Path:
    """persona.yaml for a small, fast pipeline in ``tmp`` (retraining never due: no training cost)."""
    raw = yaml.safe_load((PROJECT / "persona.yaml").read_text())
    raw["data_dir"] = str(tmp / "data")
    raw["sample"].update(users=300, days=80)
    raw["training"].update(train_cutoffs=2, num_boost_round=40, early_stopping_rounds=10)
    raw["update"].update(retrain_every_days=60, drift_cooldown_days=60)
    for key in ("segments_file", "feature_repo", "mlflow_config"):
        raw[key] = str(PROJECT / raw[key])
    path = tmp / "persona.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """A first build of a small sample (sample → ingest → features → Feast → models)."""
    config = _config(tmp_path_factory.mktemp("update"))
    settings = load_settings(config)
    run_all(settings)
    return settings, config


def _env(config: Path) -> dict[str, str]:
    return {**os.environ, "PERSONA_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}


def test_first_update_records_everyone_and_an_idle_one_does_nothing(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    first = run_update(settings)
    assert first.steps["ingest"].startswith("skipped") and first.steps["features"].startswith("skipped")
    assert first.users_scored > 250 and first.personas_changed == first.users_scored
    assert len(read_history(settings)) == first.users_scored
    again = run_update(settings)
    assert all(what.startswith("skipped") for name, what in again.steps.items() if name != "drift"), again.steps
    assert again.personas_changed == 0 and again.events_in == 0 and not again.trained
    assert len(read_history(settings)) == first.users_scored


def test_a_new_day_flows_through_to_the_personas_online(built: tuple[Settings, Path]) -> None:
    settings, config = built
    before = load_state(settings)["materialized"]
    day = replay_day(settings, 0)
    summary = run_update(settings)
    assert summary.files_in >= 4 and summary.events_in > 0.9 * day.events
    assert summary.snapshot_day == f"{pd.Timestamp(before) + pd.Timedelta(days=1):%Y-%m-%d}"
    assert not summary.steps["features"].startswith("skipped") and not summary.steps["score"].startswith("skipped")
    assert summary.drift is not None and summary.drift["window"] == summary.snapshot_day
    assert summary.steps["train"].startswith("skipped") and "no drift" in summary.retrain_reason
    assert summary.users_scored > 250 and 0 < summary.personas_changed < summary.users_scored
    newest = read_history(settings)
    assert (newest["event_timestamp"] == pd.Timestamp(summary.snapshot_day, tz="UTC")).sum() == summary.personas_changed

    from features.store import open_store

    current = latest_personas(settings).set_index("user_id")
    users = current.index[:5].tolist()
    online = open_store(settings).get_online_features(features=["user_persona:segment", "user_persona:predicted_spend"],
                                                      entity_rows=[{"user_id": u} for u in users]).to_dict()
    assert online["segment"] == current.loc[users, "segment"].tolist()
    assert online["predicted_spend"] == pytest.approx(current.loc[users, "predicted_spend"].tolist())

    from persona.cli import app

    runner = CliRunner()
    moved = newest.loc[newest["event_timestamp"] == pd.Timestamp(summary.snapshot_day, tz="UTC"), "user_id"].iloc[0]
    shown = runner.invoke(app, ["history", moved, "-c", str(config)])
    assert shown.exit_code == 0 and moved in shown.output and summary.snapshot_day in shown.output
    matrix = runner.invoke(app, ["migration", "-c", str(config)])
    assert matrix.exit_code == 0 and "kept their segment" in matrix.output
    assert runner.invoke(app, ["history", "nobody", "-c", str(config)]).exit_code == 1


def test_an_injected_drift_is_found_and_logged(built: tuple[Settings, Path]) -> None:
    settings, _ = built
    replay_day(settings, 1, drift=Drift())
    summary = run_update(settings)
    assert summary.drift_found, summary.drift
    assert "days_since_last_event" in summary.drift["drifted_features"]
    assert "cooldown" in summary.retrain_reason and not summary.trained  # drift, but retraining not due here
    from training.registry import client

    ml = settings.ml
    run = client(ml).get_run(summary.drift["mlflow_run_id"])
    assert run.data.metrics["psi.days_since_last_event"] >= settings.update.drift.alert


# A guard against a hung child only, not a speed check: on the shared 2-core machine (load 20-26) the
# child has taken ~350 s to reach the online store (ingest 154 s, opening the store 144 s), past the
# 180 s this test used to allow; it takes ~50 s at load 6.
_CHILD_GUARD_SECONDS = 900


@pytest.mark.timeout(_CHILD_GUARD_SECONDS + 900)  # the guard above, then the in-process re-runs
def test_a_killed_update_completes_on_rerun_without_duplicates(built: tuple[Settings, Path],
                                                                tmp_path: Path) -> None:
    settings, config = built
    replay_day(settings, 2)
    target = f"{pd.Timestamp(load_state(settings)['materialized']) + pd.Timedelta(days=1):%Y-%m-%d}"
    err = tmp_path / "update.stderr"
    with err.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "persona.cli", "update"], cwd=PROJECT, env=_env(config),
                                stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + _CHILD_GUARD_SECONDS
    while load_state(settings).get("materialized") != target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    exited = proc.poll()
    proc.send_signal(signal.SIGKILL)  # a crash halfway: features and online store done, personas not
    proc.wait(30)
    state = load_state(settings)
    why = (f"child {'exited ' + str(exited) if exited is not None else 'still running'} with state {state}; "
           f"its output:\n{err.read_text(errors='replace')[-4000:]}")
    assert state["materialized"] == target and not state["scored"].startswith(target), why
    rows_before = len(read_history(settings))
    summary = run_update(settings)
    assert summary.steps["ingest"].startswith("skipped") and summary.steps["materialize"].startswith("skipped")
    assert summary.personas_changed > 0 and summary.snapshot_day == target
    history = read_history(settings)
    assert len(history) == rows_before + summary.personas_changed
    assert not history.duplicated(["user_id", "event_timestamp"]).any()
    from base.paths import DataPaths
    from ingestion.ledger import read_ledger
    from persona.pipeline import load_clean_events

    ledger = read_ledger(DataPaths(settings.data_dir).ledger)
    assert len({r.sha256 for r in ledger}) == len(ledger)
    assert not load_clean_events(settings)["event_id"].duplicated().any()
    assert run_update(settings).personas_changed == 0


def test_watch_runs_updates_and_stops_cleanly_on_sigterm(built: tuple[Settings, Path]) -> None:
    settings, config = built
    log = settings.data_dir / "update" / "runs.jsonl"
    runs_before = len(log.read_text().splitlines()) if log.exists() else 0
    proc = subprocess.Popen([sys.executable, "-m", "persona.cli", "watch", "--every", "1s"], cwd=PROJECT,
                            env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("update done"):
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "received SIGTERM" in text and "watch stopped after" in text
    runs = (settings.data_dir / "update" / "runs.jsonl").read_text().splitlines()
    assert len(runs) > runs_before and all(json.loads(r)["started_at"] for r in runs)
    assert load_state(settings)["materialized"]  # the state file is whole
