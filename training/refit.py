"""The served model learns from the newest data: refit after the evaluation, on every labelled cutoff.

The evaluated fit never sees the evaluation window (its metrics and the gate's judgement come from it);
the refit uses the same parameters and the rounds chosen for the evaluated fit, on the training cutoffs,
the labelled cutoffs after them and the evaluation cutoff itself, so its newest labels are one horizon
old instead of two. Both go into the same MLflow run: the refit is the registered model (what the
service loads), the evaluated fit is the run's ``evaluated_model``, and the run's tag ``persona.serves``
says which one serves. The gate scores evaluated fits only (:func:`evaluated_uri`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from base.config import MlflowSettings
    from training.labels import Split
    from training.registry import ModelRef

EVALUATED_MODEL = "evaluated_model"
SERVES_TAG = "persona.serves"


def refit_frame(dataset: pd.DataFrame, split: Split, share: float = 1.0) -> pd.DataFrame:
    """Rows of every labelled cutoff the refit learns from (training, refit and evaluation cutoffs). The
    evaluation cutoff keeps every user (the gate's metrics are on everyone); the refit takes the same
    ``share`` of them as the fit cutoffs carry (``training.sample_share``), so the newest cutoff weighs in
    as each older one does and the refit costs what the fit does."""
    from training.user_sample import in_sample

    ts = pd.to_datetime(dataset["event_timestamp"], utc=True)
    fit = ts.isin(pd.to_datetime([*split.train, *split.refit], utc=True)).to_numpy()
    newest = (ts == pd.to_datetime(split.evaluation, utc=True)).to_numpy()
    if share < 1 and newest.any():
        newest[newest] = in_sample(dataset["user_id"].loc[newest], share)
    return dataset.loc[fit | newest]


def rounds_of(booster: Any) -> int:
    """Boosting rounds of a fitted booster (trees per class)."""
    return max(1, booster.num_trees() // max(1, int(booster.params.get("num_class", 1))))


def evaluated_uri(ml: MlflowSettings, ref: ModelRef) -> str:
    """The model the gate scores for a version: the run's evaluated fit when the registered model is a
    refit (it has seen the evaluation window), else the registered model itself."""
    from training.registry import client

    tags = client(ml).get_run(ref.run_id).data.tags
    return f"runs:/{ref.run_id}/{EVALUATED_MODEL}" if tags.get(SERVES_TAG) == "refit" else ref.uri
