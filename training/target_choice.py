"""Which targets a training run fits: the configured ones the data can support, decided before any fit.

A target switched off in ``training.targets`` is not trained; a target the data cannot support (no
categories configured, no labelled row, a label with one value) is skipped with the reason, so the
others are still fitted, logged and registered and no time is spent on a fit that cannot succeed.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from base.config import TrainingConfig
from training.targets import TARGETS, Target


def skip_reason(target: Target, train: pd.DataFrame, evaluation: pd.DataFrame,
                categories: Sequence[str]) -> str | None:
    """Why ``target`` cannot be trained and evaluated on these rows (None: it can)."""
    if target.output == "classes" and not categories:
        return "no categories configured (features.categories: []): no affinity features, no category model"
    fit_rows, eval_rows = target.rows(train), target.rows(evaluation)
    if fit_rows.empty:
        what = "labelled " if target.labelled_only else ""
        return f"no {what}training rows for {target.label} at the training cutoffs"
    if eval_rows.empty:
        what = "labelled " if target.labelled_only else ""
        return f"no {what}evaluation rows for {target.label} at the evaluation cutoff"
    if target.output != "amount" and fit_rows[target.label].nunique() < 2:
        value = fit_rows[target.label].iloc[0]
        return f"{target.label} is {value} in every training row: nothing to learn"
    return None


def choose_targets(cfg: TrainingConfig, train: pd.DataFrame, evaluation: pd.DataFrame,
                   categories: Sequence[str]) -> tuple[list[Target], dict[str, str]]:
    """The targets to fit (registry order) and, per target left out, why."""
    chosen, skipped = [], {}
    for target in TARGETS:
        if cfg.targets is not None and target.key not in cfg.targets:
            skipped[target.key] = "switched off (training.targets)"
            continue
        reason = skip_reason(target, train, evaluation, categories)
        if reason is None:
            chosen.append(target)
        else:
            skipped[target.key] = reason
    return chosen, skipped
