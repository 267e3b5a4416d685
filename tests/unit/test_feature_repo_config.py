"""The feature repo follows persona.yaml (categories), and its feature order is the same in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from feast import FeatureService, FeatureView

from features.store import load_definitions
from tests.conftest import PROJECT


def _behaviour(categories: list[str]) -> tuple[list[str], list[str]]:
    repo = load_definitions(PROJECT / "feature_repo", categories)
    view = next(v for v in repo.named(FeatureView) if v.name == "user_behaviour")
    service = next(s for s in repo.named(FeatureService) if s.name == "persona_v1")
    return [f.name for f in view.features], [f.name for p in service.feature_view_projections for f in p.features]


def test_no_categories_means_no_affinity_features() -> None:
    view, served = _behaviour([])
    assert not [f for f in view + served if f.startswith("affinity_")]
    assert "spend_90d" in served and "last_event_ts" in view and "last_event_ts" not in served


def test_configured_categories_are_the_affinity_features_in_their_order() -> None:
    view, served = _behaviour(["music", "books"])
    assert [f for f in served if f.startswith("affinity_")] == ["affinity_music", "affinity_books"]
    assert [f for f in view if f.startswith("affinity_")] == ["affinity_music", "affinity_books"]
    assert os.environ.get("PERSONA_FEATURE_CATEGORIES") is None  # only set while the repo is imported


def test_feature_order_does_not_depend_on_the_process() -> None:
    code = ("import json; from features.store import load_definitions; from pathlib import Path; "
            "from feast import FeatureService; r = load_definitions(Path('feature_repo'), ['a', 'b']); "
            "s = next(x for x in r.named(FeatureService) if x.name == 'persona_v1'); "
            "print(json.dumps([f.name for p in s.feature_view_projections for f in p.features]))")
    orders = []
    for seed in ("1", "2"):  # string hashing, and so set order, differs per seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True,
                             check=True)
        orders.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert orders[0] == orders[1]
    assert orders[0][:3] == ["purchases_7d", "purchases_30d", "purchases_90d"]
