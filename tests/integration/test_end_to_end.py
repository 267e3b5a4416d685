"""End to end on embedded defaults: the whole pipeline in a temporary folder, then a real
``bentoml serve`` process answering over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from base.config import Settings
from persona.pipeline import RunSummary, run_all
from serving.process import ServiceProcess, free_port, start_service
from tests.conftest import settings_in
from training.registry import alias_version

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, RunSummary]:
    """The pipeline run once on a small sample."""
    settings = settings_in(tmp_path_factory.mktemp("e2e") / "data", users=400, days=100)
    return settings, run_all(settings)


@pytest.fixture(scope="module")
def service(built: tuple[Settings, RunSummary]) -> Iterator[ServiceProcess]:
    """A real bentoml serve process on a free port."""
    svc = start_service(built[0], port=free_port())
    yield svc
    svc.stop()


def test_pipeline_accounts_for_every_row(built: tuple[Settings, RunSummary]) -> None:
    _, summary = built
    assert summary.ingest is not None and len(summary.ingest.batches) >= 5
    for batch in summary.ingest.batches:
        assert batch.balanced, batch
    assert summary.ingest.total("quarantined") > 0  # the sample is dirty on purpose
    assert summary.ingest.total("duplicates") > 0
    assert summary.features is not None and summary.features.users > 300
    assert {m.target for m in summary.train.models} == {"spend", "churn", "category"}


def test_known_users_get_full_personas_from_the_champions(built: tuple[Settings, RunSummary],
                                                          service: ServiceProcess) -> None:
    settings, summary = built
    import pandas as pd

    users = sorted(pd.read_parquet(settings.data_dir / "training" / "training_set.parquet")["user_id"].unique())[:5]
    resp = httpx.post(f"{service.url}/persona", json={"user_ids": users}, timeout=30)
    assert resp.status_code == 200, resp.text
    personas = resp.json()["personas"]
    assert [p["user_id"] for p in personas] == users
    ml = settings.ml
    champions = {t: alias_version(ml, t).version for t in ("spend", "churn", "category")}
    segment_names = {r.name for r in settings.segments}
    for p in personas:
        assert p["cold_start"] is False
        assert p["segment"] in segment_names
        assert p["predicted_spend"] >= 0 and 0 <= p["churn_risk"] <= 1
        assert p["model_versions"] == champions
        assert set(p["drivers"]) == {"spend", "churn"} and all(len(d) == 3 for d in p["drivers"].values())
        assert p["feature_timestamp"] and p["feature_age_seconds"] is not None
    assert any(p["top_categories"] for p in personas)


def test_unknown_user_is_an_explicit_cold_start(service: ServiceProcess) -> None:
    resp = httpx.post(f"{service.url}/persona", json={"user_ids": ["nobody-at-all"]}, timeout=30)
    assert resp.status_code == 200
    (p,) = resp.json()["personas"]
    assert p["cold_start"] is True and p["segment"] == "unknown" and p["feature_timestamp"] is None
    assert p["predicted_spend"] > 0 and 0 < p["churn_risk"] < 1  # population priors


@pytest.mark.parametrize(
    ("body", "named"),
    [(b'{"user_ids": [', "Invalid JSON"), (b'{"user_ids": []}', "user_ids"), (b'{"users": ["a"]}', "user_ids"),
     (b'{"user_ids": [7]}', "user_ids")],
)
def test_malformed_body_is_a_4xx_naming_the_problem(service: ServiceProcess, body: bytes, named: str) -> None:
    resp = httpx.post(f"{service.url}/persona", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert 400 <= resp.status_code < 500
    assert named in resp.text


def test_health_endpoints(service: ServiceProcess) -> None:
    assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200


def test_second_run_reuses_data_and_gates_new_versions(built: tuple[Settings, RunSummary]) -> None:
    settings, first = built
    again = run_all(settings)
    assert again.sample_events is None  # sample reused
    assert again.ingest is not None and again.ingest.batches == []  # every file already in the ledger
    assert again.features is not None and again.features.rows in (0, first.features.rows)  # nothing new
    assert again.training_rows == first.training_rows  # the same training set
    ml = settings.ml
    before = {m.target: m for m in first.train.models}
    for m in again.train.models:
        assert int(m.ref.version) == int(before[m.target].ref.version) + 1
        assert before[m.target].alias == "champion"  # the first version had nothing to be compared with
        # same data, deterministic training: no improvement, so the gate keeps the champion and says why
        assert m.alias == "challenger" and any("vs champion" in r for r in m.reasons), m.reasons
        assert alias_version(ml, m.target).version == before[m.target].ref.version
        assert alias_version(ml, m.target, ml.challenger_alias).version == m.ref.version


def test_champions_with_different_feature_lists_serve_together(built: tuple[Settings, RunSummary]) -> None:
    """A churn champion trained at another time on another feature list (a subset, in another order)
    serves beside the spend champion: a real ``bentoml serve`` answers with both versions."""
    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm
    import pandas as pd

    from training.registry import ModelRef, ensure_experiment, set_alias, use_tracking

    settings, _ = built
    ml = settings.ml
    frame = pd.read_parquet(settings.data_dir / "training" / "training_set.parquet")
    spend = alias_version(ml, "spend")
    spend_features = list(mlflow.lightgbm.load_model(spend.uri).feature_name())
    churn_features = list(reversed(spend_features[: max(3, len(spend_features) // 2)]))
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1},
                        lgb.Dataset(frame[churn_features].to_numpy(dtype=float), label=frame["label_churn"],
                                    feature_name=churn_features), num_boost_round=15)
    use_tracking(ml)
    with mlflow.start_run(experiment_id=ensure_experiment(ml), run_name="churn-older-feature-list") as run:
        mlflow.log_metric("prior_prediction", float(frame["label_churn"].mean()))
        info = mlflow.lightgbm.log_model(booster, name="model", registered_model_name=ml.model_name("churn"))
    churn = ModelRef(ml.model_name("churn"), str(info.registered_model_version), run.info.run_id)
    set_alias(ml, churn, ml.champion_alias, "test: a champion with its own feature list")

    users = sorted(frame["user_id"].unique())[:3]
    svc = start_service(settings, port=free_port())
    try:
        resp = httpx.post(f"{svc.url}/persona", json={"user_ids": users}, timeout=30)
    finally:
        svc.stop()
    assert resp.status_code == 200, resp.text
    for p in resp.json()["personas"]:
        assert p["model_versions"]["churn"] == churn.version and p["model_versions"]["spend"] == spend.version
        assert 0 <= p["churn_risk"] <= 1 and not p["cold_start"]
        assert {d["feature"] for d in p["drivers"]["churn"]} <= set(churn_features)
