"""The request path's fast pieces give exactly what the batch path gives: LightGBM's single-row
predictions, a persona scored alone and in a batch, and the time features on arrays."""

from __future__ import annotations

from datetime import datetime, timezone

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from base.config import Settings, load_segment_file
from scoring.records import record_body
from scoring.scorer import SINGLE_ROW_MAX, PersonaScorer
from scoring.single_row import RowPredictor
from training.champions import LoadedModel
from training.registry import ModelRef

FEATURES = ["spend_90d", "purchases_90d", "aov_90d", "product_views_30d", "affinity_home", "affinity_beauty"]
PARAMS = {"verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5, "num_leaves": 15}


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2, 20, (n, len(FEATURES)))
    x[rng.random(x.shape) < 0.15] = np.nan  # missing values take the trees' default branches
    return x


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The prediction-based rule set (segments.classic.yaml): it reads only features these models have."""
    from tests.conftest import PROJECT

    return settings.model_copy(update={"segments": load_segment_file(PROJECT / "segments.classic.yaml")})


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    x = _rows(600, 0)
    filled = np.nan_to_num(x)
    spend = filled[:, 0] * 0.5
    churn = (filled[:, 1] < 30).astype(float)
    category = (filled[:, 2] // 15).clip(0, 5)
    data = lambda y: lgb.Dataset(x, label=y, feature_name=FEATURES)  # noqa: E731
    return {
        "spend": LoadedModel("spend", ModelRef("persona-spend", "3", "r1"),
                             lgb.train(PARAMS | {"objective": "tweedie"}, data(spend), 40), FEATURES, 42.0),
        "churn": LoadedModel("churn", ModelRef("persona-churn", "5", "r2"),
                             lgb.train(PARAMS | {"objective": "binary"}, data(churn), 60), FEATURES, 0.3),
        "category": LoadedModel("category", ModelRef("persona-category", "2", "r3"),
                                lgb.train(PARAMS | {"objective": "multiclass", "num_class": 6}, data(category), 30),
                                FEATURES, 0.0),
    }


@pytest.mark.parametrize("key", ["spend", "churn", "category"])
def test_single_rows_equal_booster_predict_bit_for_bit(models: dict[str, LoadedModel], key: str) -> None:
    booster = models[key].booster
    rows = RowPredictor(booster)
    x = _rows(25, 1)
    np.testing.assert_array_equal(rows.predict(x), booster.predict(x, num_threads=1))
    np.testing.assert_array_equal(rows.contributions(x), booster.predict(x, pred_contrib=True, num_threads=1))
    np.testing.assert_array_equal(rows.raw(x), booster.predict(x, raw_score=True, num_threads=1))
    with pytest.raises(ValueError, match="features"):
        rows.predict(x[:, :3])
    rows.close()


def test_a_persona_scored_alone_equals_the_same_persona_scored_in_a_batch(models: dict[str, LoadedModel],
                                                                          settings: Settings) -> None:
    """The service scores a request's users through the single-row path, the batch re-score through
    ``Booster.predict``: the same record, field for field, and the same stored bytes."""
    scorer = PersonaScorer(models, settings)
    assert set(scorer._rows) == {"spend", "churn", "category"}  # every model has the fast path
    n = SINGLE_ROW_MAX * 3  # a batch too big for the single-row path
    x = scorer.matrix({f: list(col) for f, col in zip(FEATURES, _rows(n, 2).T)}, n)
    users = [f"u{i}" for i in range(n)]
    times = [1.7e9 + i for i in range(n)]
    times[4] = None  # an unknown user: a cold start
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    batch = scorer.score(users, x, times, now)
    assert sum(not r.cold_start for r in batch) == n - 1 and any(r.top_categories for r in batch)
    for i in range(n):
        (alone,) = scorer.score(users[i:i + 1], x[i:i + 1], times[i:i + 1], now)
        assert alone.model_dump() == batch[i].model_dump(), users[i]
        assert record_body(alone) == record_body(batch[i])
    few = scorer.score(users[:3], x[:3], times[:3], now)  # a small batch: row by row
    assert [r.model_dump() for r in few] == [r.model_dump() for r in batch[:3]]


def test_time_features_on_arrays_equal_the_on_demand_function() -> None:
    from features.time_features import INPUTS, OUTPUTS, REQUEST_TS, feast_udf, time_arrays, udf_grid

    rng = np.random.default_rng(3)
    n = 40
    inputs = pd.DataFrame({name: rng.uniform(1.6e9, 1.75e9, n) for name in INPUTS})
    inputs["lifetime_purchase_days"] = rng.integers(0, 5, n).astype(float)
    inputs.loc[rng.random(n) < 0.3, list(INPUTS)] = np.nan  # users without a snapshot
    inputs.loc[5, "last_purchase_ts"] = np.nan
    for every in (1, 7):
        udf, source = feast_udf("user_time", every)
        assert udf_grid("user_time", source) == every
        frame = inputs.assign(**{REQUEST_TS: 1.76e9})
        want = udf(frame)
        got = time_arrays({c: inputs[c].to_numpy(dtype=float) for c in INPUTS}.get, 1.76e9, n, every)
        assert list(got) == list(OUTPUTS)
        for name in OUTPUTS:
            np.testing.assert_array_equal(got[name], want[name].to_numpy(dtype=float), err_msg=name)
    assert udf_grid("user_time", feast_udf("user_time", 1)[1].replace("inputs, 1", "inputs, 1 + 0")) is None
    assert udf_grid("user_time", "def user_time(inputs):\n    return inputs\n") is None
