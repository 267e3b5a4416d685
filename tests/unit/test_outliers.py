"""The outlier rule: caps per event type and a robust z-score, vectorised over a batch."""

import numpy as np
import pandas as pd

from ingestion.outliers import outlier_reasons, robust_z
from base.config import OutlierConfig


def _batch() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    amount = np.round(rng.lognormal(3.5, 0.4, 200), 2)
    amount[[10, 20]] = [9_000.0, 4_000.0]
    kinds = np.array(["purchase"] * 200, dtype=object)
    kinds[150:] = "refund"
    return pd.DataFrame({"amount": amount, "event_type": kinds})


def test_cap_flags_only_its_event_type() -> None:
    batch = _batch()
    reasons = outlier_reasons(batch, OutlierConfig(caps={"purchase": 5_000}))
    assert list(np.flatnonzero(reasons != "")) == [10]
    assert "above cap 5000.0 for purchase" in reasons[10]


def test_robust_z_finds_values_far_from_the_median() -> None:
    batch = _batch()
    reasons = outlier_reasons(batch, OutlierConfig(robust_z=8))
    assert {10, 20} <= set(np.flatnonzero(reasons != ""))
    assert (reasons != "").sum() <= 4 and "robust z-score" in reasons[20]


def test_small_groups_and_missing_amounts_are_never_outliers() -> None:
    frame = pd.DataFrame({"amount": [1.0, 2.0, 1000.0, np.nan], "event_type": ["purchase"] * 3 + ["page_view"]})
    assert robust_z(frame["amount"], frame["event_type"], min_rows=20).isna().all()
    assert (outlier_reasons(frame, OutlierConfig(robust_z=3)) == "").all()
