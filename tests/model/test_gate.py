"""The MLflow lifecycle on a real SQLite tracking/registry store: first champion, gated challengers,
refusal with reasons, rollback, and decisions recorded as version tags."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from base.config import MlflowSettings
from tests.model.conftest import CATEGORIES, FAST, FEATURES, RULES, synthetic_set
from training.gate import GateError, compare, judge, promote, rollback
from training.registry import alias_version, client, versions
from training.targets import target
from training.train import train_all


def _train(ml: MlflowSettings, data, split, cfg=FAST):  # noqa: ANN001, ANN202
    return train_all(data, FEATURES, split, cfg, ml, rules=RULES, categories=CATEGORIES,
                     lineage={"feature_service": "persona_v1", "ingestion_batches": "b1,b2", "data_quality": "accepted=2"})


def _sabotaged(data, split):  # noqa: ANN001, ANN202
    """The same data with the training labels shuffled across users: a deliberately worse model."""
    rng = np.random.default_rng(0)
    bad = data.copy()
    train = bad["event_timestamp"] != split.evaluation
    for col in ("label_spend", "label_churn", "label_category"):
        bad.loc[train, col] = rng.permutation(bad.loc[train, col].to_numpy())
    return bad


def _decisions(ml: MlflowSettings, key: str, version: str) -> list[dict]:
    tags = client(ml).get_model_version(ml.model_name(key), version).tags
    return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith("decision.")]


def test_first_version_is_champion_and_logs_baselines_segments_and_lineage(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=500, seed=1)
    summary = _train(mlflow_settings, data, split)
    assert {m.target for m in summary.models} == {"spend", "churn", "category"}
    for m in summary.models:
        assert m.alias == "champion", m.reasons
        assert alias_version(mlflow_settings, m.target).version == m.ref.version == "1"
        run = client(mlflow_settings).get_run(m.ref.run_id)
        primary = target(m.target).primary(mlflow_settings.gate)
        assert f"eval_{primary}" in run.data.metrics
        assert any(k.startswith("baseline.") and k.endswith(primary) for k in run.data.metrics)
        assert any(k.startswith("segment.") for k in run.data.metrics)
        assert run.data.tags["persona.feature_service"] == "persona_v1"
        assert "purchases_90d" in run.data.tags["persona.features"]
        assert run.data.tags["persona.ingestion_batches"] == "b1,b2"
        artifacts = {a.path for a in client(mlflow_settings).list_artifacts(m.ref.run_id, "plots")}
        assert "plots/feature_importance.png" in artifacts
        (decision,) = _decisions(mlflow_settings, m.target, "1")
        assert m.reasons == () and client(mlflow_settings).get_model_version(m.ref.name, "1").tags["beats_baselines"] == "true"
        assert decision["action"] == "promoted" and decision["by"] and decision["at"]
        version = client(mlflow_settings).get_model_version(m.ref.name, "1")  # what `mlflow ui` shows
        assert version.tags["gate.decision"] == "promoted" and version.tags["gate.reason"] == decision["why"]
        assert m.target in version.description and "evaluated on" in version.description
        assert target(m.target).description in client(mlflow_settings).get_registered_model(m.ref.name).description
        named = client(mlflow_settings).get_run(m.ref.run_id)
        assert named.info.run_name == f"{m.ref.name} v1 (eval {split.evaluation:%Y-%m-%d})"
        assert named.data.tags["gate.decision"] == "promoted"
    spend = next(m for m in summary.models if m.target == "spend")
    assert set(spend.baselines) == {"last_window", "historical_rate", "bgnbd_gamma_gamma"}
    churn_run = client(mlflow_settings).get_run(next(m for m in summary.models if m.target == "churn").ref.run_id)
    assert {"eval_roc_auc", "eval_pr_auc", "eval_log_loss", "eval_brier", "eval_ece"} <= set(churn_run.data.metrics)
    assert "plots/calibration.png" in {a.path for a in client(mlflow_settings).list_artifacts(churn_run.info.run_id, "plots")}


def test_a_deliberately_worse_challenger_is_refused_with_reasons(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=500, seed=1)
    _train(mlflow_settings, data, split)
    worse = _train(mlflow_settings, _sabotaged(data, split), split)
    for m in worse.models:
        assert m.alias == "challenger" and m.reasons
        assert alias_version(mlflow_settings, m.target).version == "1"  # champion unchanged
        assert alias_version(mlflow_settings, m.target, "challenger").version == "2"
        assert _decisions(mlflow_settings, m.target, "2")[-1]["action"] == "refused"
        assert client(mlflow_settings).get_model_version(m.ref.name, "2").tags["gate.decision"] == "refused"
        assert client(mlflow_settings).get_run(m.ref.run_id).data.tags["gate.reason"]  # why, in the runs table
    spend = next(m for m in worse.models if m.target == "spend")
    assert any("vs champion" in r for r in spend.reasons)
    # the CLI path says the same thing again, and still refuses
    decision = promote(mlflow_settings, "spend")
    assert not decision.promoted and decision.reasons
    assert decision.comparison.metrics["champion"]["tweedie_deviance"] < decision.comparison.metrics["challenger"]["tweedie_deviance"]


def test_gate_promotes_a_better_challenger_and_rollback_restores_the_previous(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=500, seed=1)
    weak = FAST.model_copy(update={"num_boost_round": 10, "learning_rate": 0.03, "early_stopping_rounds": 0})
    first = _train(mlflow_settings, data, split, cfg=weak)
    assert all(m.alias == "champion" for m in first.models), [m.reasons for m in first.models]
    second = _train(mlflow_settings, data, split)
    promoted = {m.target for m in second.models if m.alias == "champion"}
    assert "spend" in promoted and "churn" in promoted
    assert alias_version(mlflow_settings, "spend").version == "2"
    assert [str(mv.version) for mv in versions(mlflow_settings, "spend")] == ["2", "1"]
    old, new = rollback(mlflow_settings, "spend")
    assert (old.version, new.version) == ("2", "1")
    assert alias_version(mlflow_settings, "spend").version == "1"
    assert _decisions(mlflow_settings, "spend", "1")[-1]["action"] == "rollback-restored"
    assert "rollback" in _decisions(mlflow_settings, "spend", "1")[-1]["why"]
    with pytest.raises(GateError, match="nothing to roll back"):
        rollback(mlflow_settings, "spend")  # v1 replaced no earlier champion


def test_per_segment_regression_beyond_tolerance_is_refused(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=500, seed=1)
    _train(mlflow_settings, data, split)
    _train(mlflow_settings, _sabotaged(data, split), split)
    c = compare(mlflow_settings, "churn")
    assert set(c.segments["champion"]) == set(c.segments["challenger"])  # same rows, same segments
    strict = mlflow_settings.gate.model_copy(update={"segment_tolerance": 0.0, "must_beat_baselines": False})
    assert any(r.startswith("segment ") for r in judge(c, strict))


def test_without_bootstrap_a_first_version_that_misses_its_baselines_is_not_champion(
        mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=300, seed=5)
    strict = mlflow_settings.model_copy(update={"gate": mlflow_settings.gate.model_copy(
        update={"bootstrap_champion": False})})
    ev = data["event_timestamp"] == split.evaluation
    data.loc[ev, "hist_last_window_spend"] = data.loc[ev, "label_spend"]  # an oracle baseline nobody beats
    summary = _train(strict, data, split)
    spend = next(m for m in summary.models if m.target == "spend")
    assert spend.alias == "challenger" and any("does not beat baseline" in r for r in spend.reasons)
    assert alias_version(strict, "spend") is None
    assert _decisions(strict, "spend", "1")[-1]["action"] == "refused"


def test_cli_compare_promote_and_rollback_say_what_the_gate_decided(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from persona.cli import app
    from tests.conftest import PROJECT, settings_in

    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PERSONA_CONFIG", str(PROJECT / "persona.yaml"))
    ml = (settings_in(tmp_path / "data")).ml
    data, split = synthetic_set(users=300, seed=1)
    _train(ml, data, split)
    _train(ml, _sabotaged(data, split), split)
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "-t", "spend"])
    assert listed.exit_code == 0 and "champion" in listed.output and "challenger" in listed.output
    compared = runner.invoke(app, ["models", "compare", "-t", "spend"])
    assert compared.exit_code == 0 and "would refuse" in compared.output
    refused = runner.invoke(app, ["models", "promote", "-t", "spend"])
    assert refused.exit_code == 1 and "refused" in refused.output and "vs champion" in refused.output
    nothing = runner.invoke(app, ["models", "rollback", "-t", "spend"])
    assert nothing.exit_code == 1 and "nothing to roll back" in nothing.output
    assert alias_version(ml, "spend").version == "1"


def test_gate_covers_every_reported_baseline_metric_not_only_the_primary(mlflow_settings: MlflowSettings) -> None:
    """A challenger that wins the primary metric but trails a baseline on top-decile capture beyond the
    tolerance is refused, naming the metric; within the tolerance it is not held back by it."""
    data, split = synthetic_set(users=500, seed=1)
    _train(mlflow_settings, data, split)
    _train(mlflow_settings, data, split)
    c = compare(mlflow_settings, "spend")
    assert "baseline.last_window.top_decile_capture" in c.logged
    model = c.metrics["challenger"]["top_decile_capture"]
    rigged = {**c.logged, "baseline.last_window.top_decile_capture": model * 1.10}
    gate = mlflow_settings.gate.model_copy(update={"baseline_tolerance": 0.05})
    reasons = judge(replace(c, logged=rigged), gate)
    assert any(r.startswith("top_decile_capture") and "last_window" in r for r in reasons)
    close = {**c.logged, "baseline.last_window.top_decile_capture": model * 1.03}
    assert not any(r.startswith("top_decile_capture") for r in judge(replace(c, logged=close), gate))
    assert not any(r.startswith("top_decile_capture") for r in judge(replace(c, logged=rigged), gate.model_copy(
        update={"baseline_metrics": {"spend": []}})))


def test_the_gate_refuses_a_model_the_service_could_not_load(mlflow_settings: MlflowSettings) -> None:
    """Before moving an alias the gate loads the version as the service would: a model needing a feature
    the online feature service does not serve, or predicting another number of categories, never becomes
    champion (not even the bootstrap one), and the reason says so."""
    from training.champions import ServingCheck

    data, split = synthetic_set(users=400, seed=4)
    served = frozenset(f for f in FEATURES if f != "product_views_30d")
    summary = train_all(data, FEATURES, split, FAST, mlflow_settings, rules=RULES, categories=CATEGORIES,
                        check=ServingCheck(served, (*CATEGORIES, "garden")))
    for m in summary.models:
        assert m.alias == "challenger" and alias_version(mlflow_settings, m.target) is None
        assert any("product_views_30d" in r for r in m.reasons), m.reasons
        (decision,) = _decisions(mlflow_settings, m.target, m.ref.version)
        assert decision["action"] == "refused" and "could not use it" in decision["why"]
    category = next(m for m in summary.models if m.target == "category")
    assert any("predicts 3 classes but the configuration has 4 categories" in r for r in category.reasons)
    fine = train_all(data, FEATURES, split, FAST, mlflow_settings, rules=RULES, categories=CATEGORIES,
                     check=ServingCheck(frozenset(FEATURES), tuple(CATEGORIES)))
    assert all(m.alias == "champion" for m in fine.models), [m.reasons for m in fine.models]
