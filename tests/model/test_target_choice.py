"""Targets follow the configuration and the data: switched-off targets are not trained, a target the data
cannot support is skipped with a clear reason before any fit, and the others are still logged and registered."""

from __future__ import annotations

import pytest

from base.config import ConfigError, MlflowSettings, load_settings
from tests.conftest import PROJECT
from tests.model.conftest import CATEGORIES, FAST, FEATURES, RULES, synthetic_set
from training.registry import alias_version
from training.target_choice import choose_targets
from training.targets import check_target_settings
from training.train import split_frames, train_all


def test_no_categories_skips_the_category_target_with_the_reason() -> None:
    data, split = synthetic_set(users=100)
    train, evaluation = split_frames(data, split)
    chosen, skipped = choose_targets(FAST, train, evaluation, [])
    assert [t.key for t in chosen] == ["spend", "churn"]
    assert skipped == {"category": "no categories configured (features.categories: []): no affinity features, "
                                   "no category model"}


def test_a_target_without_labelled_rows_or_with_one_label_value_is_skipped() -> None:
    data, split = synthetic_set(users=100)
    data = data.assign(label_category=-1, label_churn=1)  # nobody buys a configured category; everyone churns
    train, evaluation = split_frames(data, split)
    chosen, skipped = choose_targets(FAST, train, evaluation, CATEGORIES)
    assert [t.key for t in chosen] == ["spend"]
    assert skipped["category"] == "no labelled training rows for label_category at the training cutoffs"
    assert skipped["churn"] == "label_churn is 1 in every training row: nothing to learn"


def test_switched_off_targets_are_not_trained(mlflow_settings: MlflowSettings) -> None:
    data, split = synthetic_set(users=300)
    cfg = FAST.model_copy(update={"targets": ["spend", "churn"]})
    summary = train_all(data, FEATURES, split, cfg, mlflow_settings, rules=RULES, categories=CATEGORIES)
    assert [m.target for m in summary.models] == ["spend", "churn"]
    assert summary.skipped == {"category": "switched off (training.targets)"}
    assert alias_version(mlflow_settings, "spend") is not None
    assert alias_version(mlflow_settings, "category") is None
    assert summary.split == split and summary.horizon_days == FAST.horizon_days


def test_required_targets_cannot_be_switched_off_and_unknown_ones_are_named() -> None:
    base = load_settings(PROJECT / "persona.yaml")
    off = base.model_copy(update={"training": base.training.model_copy(update={"targets": ["spend"]})})
    with pytest.raises(ConfigError, match="training.targets: churn cannot be switched off"):
        check_target_settings(off)
    unknown = base.model_copy(update={"training": base.training.model_copy(update={"targets": ["spend", "churn", "ltv"]})})
    with pytest.raises(ConfigError, match="training.targets: unknown target 'ltv'"):
        check_target_settings(unknown)
