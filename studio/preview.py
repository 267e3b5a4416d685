"""What a rule edit would do to the current personas, before it is saved: segment sizes, overlap between
rules, who moves in and out, a sample of members. Both sides are assigned on the same current personas
(features of the newest snapshot and the current predictions), so only the rules differ."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from base.config import SegmentRule
from base.segments import assign_segments, rule_matches

SAMPLE = 10


@dataclass
class Preview:
    """The effect of the candidate rules."""

    users: int
    sizes: list[tuple[str, int, int]]  # segment, users now, users with the edit
    overlap: pd.DataFrame  # rule × rule: users whose conditions both rules match (order ignored)
    moves: list[tuple[str, str, int]]  # from, to, users (only changes)
    focus: str
    entered: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    entered_count: int = 0
    left_count: int = 0
    sample: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def changed(self) -> int:
        """Users whose segment the edit changes."""
        return sum(n for _, _, n in self.moves)


def values_of(frame: pd.DataFrame, rules: Sequence[SegmentRule]) -> dict[str, np.ndarray]:
    """The columns the rules name, as float arrays (a column the frame lacks is all missing)."""
    names = {c.field for r in rules for c in r.all}
    n = len(frame)
    return {f: (frame[f].to_numpy(dtype=float) if f in frame.columns else np.full(n, np.nan)) for f in names}


def preview(frame: pd.DataFrame, saved: Sequence[SegmentRule], candidate: Sequence[SegmentRule],
            focus: str | None = None) -> Preview:
    """The candidate rules against the saved ones on ``frame`` (one row per user with features and predictions)."""
    n = len(frame)
    values = values_of(frame, [*saved, *candidate])
    old = assign_segments(saved, values, n)
    new = assign_segments(candidate, values, n)
    names = list(dict.fromkeys([r.name for r in candidate] + [r.name for r in saved]))
    old_counts, new_counts = pd.Series(old).value_counts(), pd.Series(new).value_counts()
    sizes = [(s, int(old_counts.get(s, 0)), int(new_counts.get(s, 0))) for s in names]
    masks = {r.name: rule_matches(r, values, n) for r in candidate}
    overlap = pd.DataFrame({a: {b: int((masks[a] & masks[b]).sum()) for b in masks} for a in masks})
    diff = old != new
    moves = pd.Series(1, index=pd.MultiIndex.from_arrays([old[diff], new[diff]])).groupby(level=[0, 1]).sum() \
        if diff.any() else pd.Series(dtype=int)
    move_list = sorted(((str(a), str(b), int(v)) for (a, b), v in moves.items()), key=lambda m: -m[2])
    if focus not in masks:
        focus = next((b for _, b, _ in move_list if b in masks), candidate[0].name)
    users = frame["user_id"].astype(str).to_numpy()
    entered, left = (new == focus) & (old != focus), (old == focus) & (new != focus)
    shown = [c for c in ("user_id", "segment", "predicted_spend", "churn_risk") if c in frame.columns]
    shown += [f for f in sorted(values) if f not in shown and f in frame.columns]
    members = frame.loc[new == focus, shown].head(SAMPLE)
    return Preview(users=n, sizes=sizes, overlap=overlap, moves=move_list[:20], focus=focus,
                   entered=users[entered][:SAMPLE].tolist(), left=users[left][:SAMPLE].tolist(),
                   entered_count=int(entered.sum()), left_count=int(left.sum()),
                   sample=members.rename(columns={"segment": "segment now"}))
