"""Segment rules: named personas assigned by the first rule whose conditions all hold."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

import numpy as np

from base.config import ConfigError, SegmentRule

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}


def check_rules(rules: Sequence[SegmentRule], known_fields: set[str]) -> None:
    """Fail clearly when a rule names a field that neither the features nor the predictions provide."""
    if not rules:
        raise ConfigError("segments: at least one rule is required (end with a catch-all rule)")
    for i, rule in enumerate(rules):
        for cond in rule.all:
            if cond.field not in known_fields:
                raise ConfigError(
                    f"segments[{i}] ({rule.name}): unknown field {cond.field!r}; "
                    f"known: {', '.join(sorted(known_fields))}"
                )


def assign_segments(rules: Sequence[SegmentRule], values: Mapping[str, np.ndarray], n: int,
                    default: str = "unassigned") -> np.ndarray:
    """Vectorised: the first matching rule's name per row; NaN never satisfies a condition."""
    out = np.full(n, default, dtype=object)
    open_rows = np.ones(n, dtype=bool)
    with np.errstate(invalid="ignore"):  # once for all rules (per condition it cost more than the rules on one row)
        for rule in rules:
            match = open_rows & _matches(rule, values, n)
            out[match] = rule.name
            open_rows &= ~match
    return out


def rule_matches(rule: SegmentRule, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Rows that satisfy every condition of ``rule``, whatever the rules before it say; NaN never does."""
    with np.errstate(invalid="ignore"):
        return _matches(rule, values, n)


def _matches(rule: SegmentRule, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    match = np.ones(n, dtype=bool)
    for cond in rule.all:
        col = np.asarray(values[cond.field], dtype=float)
        match &= ~np.isnan(col) & _OPS[cond.op](col, cond.value)
    return match


def smooth(previous: np.ndarray, target: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential smoothing toward the newest model output: P + α·(P* − P); NaN previous → target."""
    previous = np.asarray(previous, dtype=float)
    target = np.asarray(target, dtype=float)
    return np.where(np.isnan(previous), target, previous + alpha * (target - previous))
