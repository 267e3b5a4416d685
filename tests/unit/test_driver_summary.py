"""The training run's driver summary on a sample of rows (training/explain.py)."""

from __future__ import annotations

import numpy as np

from training.explain import driver_summary


def test_driver_summary_on_a_sample_is_close_to_the_whole_set() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(12_000, 4))
    y = 3 * x[:, 0] + x[:, 1] + 0.1 * rng.normal(size=len(x))
    booster = lgb.train({"verbosity": -1, "num_threads": 1}, lgb.Dataset(x, y), 20)
    features = ["a", "b", "c", "d"]
    whole = driver_summary(booster, x, features, max_rows=len(x))
    part = driver_summary(booster, x, features, max_rows=2_000)
    assert whole["sampled_rows"] == 12_000 and part["sampled_rows"] == 2_000 and part["rows"] == 12_000
    assert list(part["mean_abs_contribution"])[:2] == ["a", "b"] == list(whole["mean_abs_contribution"])[:2]
    for f in features:
        assert abs(part["top_driver_share"][f] - whole["top_driver_share"][f]) < 0.03
        gap = abs(part["mean_abs_contribution"][f] - whole["mean_abs_contribution"][f])
        assert gap <= 0.05 * whole["mean_abs_contribution"]["a"]


def test_contributions_in_threads_are_the_same_row_for_row() -> None:
    import lightgbm as lgb

    from training.explain import contributions, contributions_in_threads

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3_001, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)  # three classes
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbosity": -1, "num_threads": 1},
                        lgb.Dataset(x, y), 15)
    alone = contributions(booster, x)
    for workers in (2, 3):
        np.testing.assert_array_equal(contributions_in_threads(booster, x, workers), alone)
    assert alone.shape == (3_001, 6) and np.abs(alone[:, :-1]).sum() > 0
