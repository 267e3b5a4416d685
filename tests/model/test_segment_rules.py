"""The project's segment rule sets read only what the service serves, and segments.yaml (the default) puts each
persona's typical behaviour in the segment of that name; the hidden personas' recovery (adjusted Rand
index per rule set) is measured by ``python -m bench quality``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from base.config import load_segment_file
from base.segments import assign_segments, check_rules

PROJECT = Path(__file__).resolve().parents[2]


def _served_features() -> set[str]:
    from feast import FeatureService

    from features.store import FEATURE_SERVICE, load_definitions

    objs = load_definitions(PROJECT / "feature_repo", ["electronics", "fashion"])
    (service,) = [s for s in objs.named(FeatureService) if s.name == FEATURE_SERVICE]
    return {f.name for proj in service.feature_view_projections for f in proj.features}


@pytest.mark.parametrize("name", ["segments.yaml", "segments.tenure.yaml", "segments.classic.yaml"])
def test_rule_sets_name_only_served_features_or_predictions(name: str) -> None:
    from training.targets import segment_inputs

    rules = load_segment_file(PROJECT / name)
    check_rules(rules, _served_features() | set(segment_inputs()))  # raises ConfigError naming the field
    assert rules[-1].all == [] and len({r.name for r in rules}) == len(rules)


# one row per typical customer: (expected segment, features)
TYPICAL = [
    ("new_explorer", {"tenure_days": 20, "events_30d": 25, "lifetime_purchases": 1, "avg_order_value": 60}),
    ("drifting_away", {"tenure_days": 400, "events_30d": 2, "lifetime_purchases": 4, "avg_order_value": 70}),
    ("loyal_big_spender", {"tenure_days": 400, "events_30d": 26, "lifetime_purchases": 6, "avg_order_value": 160}),
    ("bargain_hunter", {"tenure_days": 400, "events_30d": 29, "lifetime_purchases": 4, "avg_order_value": 23}),
    ("window_shopper", {"tenure_days": 400, "events_30d": 30, "lifetime_purchases": 0, "avg_order_value": np.nan}),
    ("casual", {"tenure_days": 400, "events_30d": 20, "lifetime_purchases": 3, "avg_order_value": 65}),
]


def test_typical_customers_land_in_their_segment() -> None:
    rules = load_segment_file(PROJECT / "segments.yaml")
    fields = {c.field for r in rules for c in r.all}
    values = {f: np.array([row.get(f, np.nan) for _, row in TYPICAL], dtype=float) for f in fields}
    got = assign_segments(rules, values, len(TYPICAL))
    assert list(got) == [name for name, _ in TYPICAL]
    # a buyer never seen buying (no average order value: NaN) is never a big spender or bargain hunter
    assert "loyal_big_spender" not in got[values["lifetime_purchases"] == 0]
