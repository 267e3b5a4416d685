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
