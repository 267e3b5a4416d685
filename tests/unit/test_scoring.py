"""Scoring with real LightGBM boosters: drivers, cold starts, segments, request order."""

from __future__ import annotations

from datetime import datetime, timezone

import lightgbm as lgb
import numpy as np
import pytest

from base.config import Settings, load_segment_file
from training.champions import LoadedModel
from scoring.scorer import PersonaScorer
from training.registry import ModelRef

FEATURES = ["spend_90d", "purchases_90d", "aov_90d", "product_views_30d", "affinity_home", "affinity_beauty"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The prediction-based rule set (segments.classic.yaml): it reads only features these models have."""
    from tests.conftest import PROJECT

    return settings.model_copy(update={"segments": load_segment_file(PROJECT / "segments.classic.yaml")})


def _booster(objective: str, y: np.ndarray, x: np.ndarray) -> lgb.Booster:
    params = {"objective": objective, "verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5}
    return lgb.train(params, lgb.Dataset(x, label=y, feature_name=FEATURES), num_boost_round=20)


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    rng = np.random.default_rng(0)
    x = rng.gamma(2, 20, (400, len(FEATURES)))
    spend = x[:, 0] * 0.5
    churn = (x[:, 1] < 30).astype(float)
    return {
        "spend": LoadedModel("spend", ModelRef("persona-spend", "3", "r1"), _booster("tweedie", spend, x), FEATURES, 42.0),
        "churn": LoadedModel("churn", ModelRef("persona-churn", "5", "r2"), _booster("binary", churn, x), FEATURES, 0.3),
    }


def test_known_and_unknown_users_in_request_order(models: dict[str, LoadedModel], settings: Settings) -> None:
    scorer = PersonaScorer(models, settings)
    values = {f: [100.0, None] for f in FEATURES}
    values["affinity_home"] = [0.7, None]
    values["affinity_beauty"] = [0.1, None]
    now = datetime(2026, 11, 2, tzinfo=timezone.utc)
    known_ts = datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()
    a, b = scorer.score(["u1", "ghost"], scorer.matrix(values, 2), [known_ts, None], now=now)
    assert a.user_id == "u1" and not a.cold_start and a.feature_age_seconds == 86400
    assert [c.category for c in a.top_categories] == ["home", "beauty"]
    assert len(a.drivers["spend"]) == settings.serving.top_drivers
    assert a.model_versions.spend == "3" and a.model_versions.churn == "5"
    assert b.cold_start and b.segment == "unknown" and b.predicted_spend == 42.0 and b.churn_risk == 0.3


def test_drivers_sum_to_the_raw_prediction(models: dict[str, LoadedModel], settings: Settings) -> None:
    scorer = PersonaScorer(models, settings.model_copy(update={"serving": settings.serving.model_copy(update={"top_drivers": len(FEATURES)})}))
    values = {f: [50.0] for f in FEATURES} | {"affinity_home": [0.4], "affinity_beauty": [0.2]}
    (rec,) = scorer.score(["u1"], scorer.matrix(values, 1), [1.0])
    x = scorer.matrix(values, 1)
    raw = models["churn"].booster.predict(x, raw_score=True)[0]
    bias = models["churn"].booster.predict(x, pred_contrib=True)[0, -1]
    assert sum(d.contribution for d in rec.drivers["churn"]) + bias == pytest.approx(raw, abs=1e-6)


def test_more_spend_history_predicts_more_spend(models: dict[str, LoadedModel], settings: Settings) -> None:
    scorer = PersonaScorer(models, settings)
    low = {f: [10.0] for f in FEATURES}
    high = {**low, "spend_90d": [150.0]}
    (lo,) = scorer.score(["u"], scorer.matrix(low, 1), [1.0])
    (hi,) = scorer.score(["u"], scorer.matrix(high, 1), [1.0])
    assert hi.predicted_spend > lo.predicted_spend


def test_models_with_different_feature_lists_score_together(models: dict[str, LoadedModel], settings: Settings) -> None:
    """Champions trained at different times keep their own feature lists: each model gets its own columns."""
    rng = np.random.default_rng(1)
    churn_features = ["purchases_90d", "product_views_30d", "spend_90d"]  # another order, a subset
    x = rng.gamma(2, 20, (400, len(churn_features)))
    churn = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5},
                      lgb.Dataset(x, label=(x[:, 0] < 30).astype(float), feature_name=churn_features),
                      num_boost_round=20)
    mixed = {"spend": models["spend"],
             "churn": LoadedModel("churn", ModelRef("persona-churn", "9", "r3"), churn, churn_features, 0.3)}
    scorer = PersonaScorer(mixed, settings)
    assert scorer.features == FEATURES  # the union, in first-use order
    values = {f: [float(v)] for f, v in zip(FEATURES, [120.0, 2.0, 60.0, 14.0, 0.5, 0.1])}
    matrix = scorer.matrix(values, 1)
    (rec,) = scorer.score(["u"], matrix, [1.0])
    own = np.array([[values[f][0] for f in churn_features]])
    assert rec.churn_risk == pytest.approx(float(churn.predict(own)[0]), abs=1e-4)
    assert rec.predicted_spend == pytest.approx(float(models["spend"].booster.predict(matrix)[0]), abs=0.01)
    assert rec.model_versions.churn == "9"
    assert {d.feature for d in rec.drivers["churn"]} <= set(churn_features)


def test_a_required_target_without_a_model_is_refused(models: dict[str, LoadedModel], settings: Settings) -> None:
    with pytest.raises(ValueError, match="churn"):
        PersonaScorer({"spend": models["spend"]}, settings)
