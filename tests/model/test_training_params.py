"""Per-target LightGBM parameters from persona.yaml override the shared ones for that target only."""

import pytest

from base.config import ConfigError, TrainingConfig, load_settings
from tests.conftest import PROJECT
from training.targets import target
from training.train import lgb_params


def test_target_params_override_only_their_target() -> None:
    cfg = TrainingConfig(learning_rate=0.05, num_leaves=15, target_params={"category": {"learning_rate": 0.02, "num_leaves": 7}})
    cat = lgb_params(target("category"), cfg, ["a", "b"])
    assert cat["learning_rate"] == 0.02 and cat["num_leaves"] == 7 and isinstance(cat["num_leaves"], int)
    assert cat["num_class"] == 2 and cat["objective"] == "multiclass"
    assert lgb_params(target("spend"), cfg)["learning_rate"] == 0.05


def test_project_config_sets_the_category_learning_rate() -> None:
    s = load_settings(PROJECT / "persona.yaml")
    assert lgb_params(target("category"), s.training, s.features.categories)["learning_rate"] < s.training.learning_rate


def _leaf_counts(tree: dict) -> list[int]:
    if "leaf_count" in tree:
        return [tree["leaf_count"]]
    return _leaf_counts(tree["left_child"]) + _leaf_counts(tree["right_child"])


def test_project_config_fits_spend_with_larger_leaves_than_churn() -> None:
    """The project's spend model learns with leaves of at least 200 rows (issue 17: better RMSE and top-decile
    capture on both samples), through the one fit; the churn model keeps the shared, smaller leaves."""
    import numpy as np
    import pandas as pd

    from training.train import fit

    s = load_settings(PROJECT / "persona.yaml")
    cfg = s.training.model_copy(update={"stacking": False, "btyd_offset": False, "early_stopping_rounds": 0,
                                        "num_boost_round": 10})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2))
    frame = pd.DataFrame({"f0": x[:, 0], "f1": x[:, 1], "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
                          "label_spend": rng.gamma(1, 30 * np.exp(x[:, 0])) * (rng.random(3000) < 0.4),
                          "label_churn": (x[:, 1] + rng.normal(size=3000) > 0).astype(int)})
    boosters = {k: fit(target(k), frame, ["f0", "f1"], cfg) for k in ("spend", "churn")}
    assert boosters["spend"].params["min_data_in_leaf"] == 200 > s.training.min_data_in_leaf
    assert boosters["churn"].params["min_data_in_leaf"] == s.training.min_data_in_leaf
    leaves = {k: [c for t in b.dump_model()["tree_info"] for c in _leaf_counts(t["tree_structure"])]
              for k, b in boosters.items()}
    assert np.median(leaves["spend"]) >= 200 > np.median(leaves["churn"])  # the trees did grow larger leaves


def test_unknown_target_in_target_params_is_rejected(tmp_path) -> None:  # noqa: ANN001
    """Per-target settings name targets of the registry; an unknown one is an error naming file and key."""
    from training.targets import check_target_settings

    cfg = tmp_path / "persona.yaml"
    cfg.write_text((PROJECT / "persona.yaml").read_text().replace("category: {learning_rate: 0.02}",
                                                                   "revenue: {learning_rate: 0.02}"))
    (tmp_path / "mlflow.yaml").write_text((PROJECT / "mlflow.yaml").read_text())
    (tmp_path / "segments.yaml").write_text((PROJECT / "segments.yaml").read_text())
    with pytest.raises(ConfigError, match=r"persona.yaml: training.target_params: unknown target 'revenue'"):
        check_target_settings(load_settings(cfg))
    check_target_settings(load_settings(PROJECT / "persona.yaml"))  # the project's own config is fine
