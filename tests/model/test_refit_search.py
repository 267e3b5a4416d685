"""The served model is a refit on every labelled cutoff while the gate judges the evaluated fit; the
time-budgeted search logs nested runs and its choice on the version; calibration is logged."""

from __future__ import annotations

import mlflow
import mlflow.lightgbm
import numpy as np
import pytest

from base.config import MlflowSettings
from tests.model.conftest import CATEGORIES, FAST, FEATURES, RULES, synthetic_set
from training.evaluation import matrix
from training.gate import compare
from training.refit import EVALUATED_MODEL, evaluated_uri
from training.registry import client, use_tracking
from training.train import split_frames, train_all


def test_registered_model_is_the_refit_and_the_gate_scores_the_evaluated_fit(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=300)
    summary = train_all(data, FEATURES, split, FAST, mlflow_settings, rules=RULES, categories=CATEGORIES)
    use_tracking(mlflow_settings)
    _, evaluation = split_frames(data, split)
    x = matrix(evaluation, FEATURES)
    for m in summary.models:
        run = client(mlflow_settings).get_run(m.ref.run_id)
        assert run.data.tags["persona.serves"] == "refit"
        assert run.data.metrics["rows_refit"] > run.data.metrics["rows_train"]
        assert evaluated_uri(mlflow_settings, m.ref) == f"runs:/{m.ref.run_id}/{EVALUATED_MODEL}"
        served = mlflow.lightgbm.load_model(m.ref.uri)
        judged = mlflow.lightgbm.load_model(evaluated_uri(mlflow_settings, m.ref))
        assert not np.allclose(served.predict(x), judged.predict(x))  # the refit learnt from the newest window
    spend = next(m for m in summary.models if m.target == "spend")
    c = compare(mlflow_settings, "spend", challenger=spend.ref, champion=spend.ref)
    assert c.metrics["challenger"]["rmse"] == pytest.approx(spend.metrics["rmse"], rel=1e-9)


def test_search_runs_nested_trials_and_the_version_records_the_choice(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=300)
    cfg = FAST.model_copy(update={"search_seconds": 1.0, "calibrate": True, "refit_on_newest": False})
    summary = train_all(data, FEATURES, split, cfg, mlflow_settings, rules=RULES, categories=CATEGORIES)
    use_tracking(mlflow_settings)
    spend = next(m for m in summary.models if m.target == "spend")
    churn = next(m for m in summary.models if m.target == "churn")
    run = client(mlflow_settings).get_run(spend.ref.run_id)
    assert run.data.tags["persona.serves"] == "evaluated"
    parent = run.data.tags["persona.search_run"]
    trials = client(mlflow_settings).search_runs([run.info.experiment_id],
                                                 filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(trials) == int(run.data.tags["persona.search_trials"]) >= 1
    best = client(mlflow_settings).get_run(parent).data.params
    assert run.data.params["num_leaves"] == best["best_num_leaves"]  # the chosen parameters are the version's
    assert "calibration_shift" in run.data.params
    churn_run = client(mlflow_settings).get_run(churn.ref.run_id)
    assert "calibration_scale" in churn_run.data.params and np.isfinite(churn_run.data.metrics["eval_ece"])
    curve = mlflow.artifacts.load_dict(f"runs:/{churn.ref.run_id}/calibration/reliability_curve.json")
    assert sum(curve["rows"]) == churn.rows_eval
