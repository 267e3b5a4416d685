"""Per-target LightGBM parameters from persona.yaml override the shared ones for that target only."""

import pytest

from persona.config import ConfigError, TrainingConfig, load_settings
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


def test_unknown_target_in_target_params_is_rejected() -> None:
    with pytest.raises((ValueError, ConfigError)):
        TrainingConfig(target_params={"revenue": {"learning_rate": 0.1}})
