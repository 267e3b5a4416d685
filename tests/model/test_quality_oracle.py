"""The headroom oracle (persona/sample_oracle.py) maps the generator's users to the pipeline's evaluation users
and its expectations agree with what the pipeline then counts as each user's spend after the cutoff."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from base.config import Settings
from persona.pipeline import ingest_inbox, load_clean_events
from persona.sample_data import generate_sample_data
from persona.sample_oracle import horizon_oracle, window_weights
from tests.unit.test_sample_data import make_settings
from training.labels import make_labels

USERS, DAYS, HORIZON = 600, 120, 30


def _labelled(tmp_path, mode: str) -> tuple[Settings, pd.Timestamp, pd.DataFrame]:
    """A clean sample through ingestion, labels at the cutoff one horizon before the end, joined to the oracle."""
    s = make_settings(tmp_path, users=USERS, days=DAYS, mode=mode, mess_rate=0.0)
    generate_sample_data(s)
    ingest_inbox(s)
    cutoff = pd.Timestamp(s.sample.end_date - timedelta(days=HORIZON), tz="UTC")
    labels = make_labels(load_clean_events(s), [cutoff], HORIZON)
    oracle = horizon_oracle(s, cutoff, HORIZON)
    assert labels["user_id"].isin(oracle["user_id"]).all()  # every evaluation user is a generator user
    return s, cutoff, labels.merge(oracle, on="user_id", how="left", validate="one_to_one")


def _agrees(rows: pd.DataFrame) -> None:
    """Mean expected spend and P(purchase) within 3 standard errors of the realized means (sample size: rows)."""
    n = len(rows)
    spend = rows["label_spend"].to_numpy(dtype=float)
    assert abs(rows["expected_spend"].mean() - spend.mean()) < 3 * spend.std(ddof=1) / np.sqrt(n)
    bought = (rows["label_churn"] == 0).to_numpy(dtype=float)
    p = rows["p_purchase"].to_numpy(dtype=float)
    assert abs(p.mean() - bought.mean()) < 3 * np.sqrt(np.sum(p * (1 - p))) / n
    # the user-level mapping, not just the means: expected spend ranks the realized spend
    assert np.corrcoef(rows["expected_spend"], spend)[0, 1] > 0.3


def test_btyd_oracle_knows_who_is_dead_and_matches_realized_spend(tmp_path) -> None:
    from persona.sample_btyd import btyd_population, draw_btyd
    from persona.sample_data import _world

    s, cutoff, rows = _labelled(tmp_path, "btyd")
    pop = btyd_population(_world(s, USERS, DAYS, s.sample.seed)[2], DAYS, s.sample.seed)
    draw = draw_btyd(pop, DAYS, s.sample.seed)
    first = DAYS - HORIZON
    ids = _world(s, USERS, DAYS, s.sample.seed)[3]
    index = pd.Series(np.arange(USERS), index=ids)[rows["user_id"]].to_numpy()
    dead = (draw.death_day[index] <= first) & (draw.purchases[index, first - 1] == 0)
    assert dead.sum() > 50
    assert (rows.loc[dead, "p_purchase"] == 0).all() and (rows.loc[dead, "expected_spend"] == 0).all()
    assert (rows.loc[dead, "label_spend"] == 0).all()  # the pipeline counts nothing for them either
    assert (rows["alive"] == (draw.death_day[index] > first)).all()
    _agrees(rows)
    # not knowing who is alive can only blur: P(alive) sits between 0 and 1 and the means still agree
    assert rows.loc[dead, "p_purchase_params"].gt(0).any()
    assert abs(rows["expected_spend_params"].mean() - rows["expected_spend"].mean()) < \
        3 * rows["label_spend"].std(ddof=1) / np.sqrt(len(rows))


def test_persona_oracle_matches_realized_spend(tmp_path) -> None:
    _, _, rows = _labelled(tmp_path, "personas")
    assert rows["p_purchase"].between(0, 1).all() and rows["p_purchase"].std() > 0.05
    _agrees(rows)


@pytest.mark.parametrize("first", [0, 40, 89])
def test_window_weights_move_purchases_across_utc_days_without_losing_them(first: int) -> None:
    zone = np.arange(4)
    w = window_weights(zone, 120, first, HORIZON)
    assert w.shape == (4, 120) and ((w >= 0) & (w <= 1)).all()
    inner = w[:, first + 1: first + HORIZON - 1]
    np.testing.assert_allclose(inner, 1.0)  # days well inside the window land inside it
    assert abs(w.sum(axis=1) - HORIZON).max() < 0.5  # what leaves at one end arrives from the other
