"""Segment rules and smoothing."""

import numpy as np
import pytest

from persona.config import ConfigError, SegmentRule
from persona.segments import assign_segments, check_rules, smooth

RULES = [
    SegmentRule(name="vip", all=[{"field": "spend", "op": ">=", "value": 100}]),
    SegmentRule(name="risk", all=[{"field": "churn", "op": ">", "value": 0.5}]),
    SegmentRule(name="rest", all=[]),
]


def test_first_matching_rule_wins_and_nan_never_matches() -> None:
    out = assign_segments(RULES, {"spend": np.array([150, 10, np.nan, 500]), "churn": np.array([0.9, 0.9, 0.1, 0.1])}, 4)
    assert list(out) == ["vip", "risk", "rest", "vip"]


def test_unknown_field_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown field 'churn'"):
        check_rules(RULES, {"spend"})


def test_smoothing_moves_toward_target_and_converges() -> None:
    p = np.array([np.nan, 0.0])
    for _ in range(30):
        p = smooth(p, np.array([1.0, 1.0]), 0.3)
    assert p[0] == 1.0 and p[1] == pytest.approx(1.0, abs=1e-4)
    assert smooth(np.array([0.2]), np.array([1.0]), 0.5)[0] == pytest.approx(0.6)
