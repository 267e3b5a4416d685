"""The buy-till-you-die sample mode: purchases follow the drawn BG/NBD process, order values Gamma-Gamma,
and the persona mode is unchanged by it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from persona.pipeline import ingest_inbox, load_clean_events
from persona.sample_btyd import BtydWorld, btyd_population, draw_btyd
from persona.sample_data import _world, generate_sample_data
from tests.unit.test_sample_data import digest, make_settings

USERS, DAYS = 300, 120


def test_process_has_heterogeneous_rates_and_dropout(tmp_path) -> None:
    s = make_settings(tmp_path, users=2000, days=DAYS, mode="btyd")
    pop = btyd_population(_world(s, 2000, DAYS, 7)[2], DAYS, 7)
    draw = draw_btyd(pop, DAYS, 7)
    reg = pop.registered
    w = BtydWorld()
    assert abs(draw.rate[reg].mean() - w.r / w.alpha) < 0.15 * w.r / w.alpha
    assert draw.rate[reg].std() > 0.5 * draw.rate[reg].mean()  # heterogeneous
    born = pop.signup_day[reg]
    assert born.min() >= 0 and born.max() < DAYS // 2
    assert (draw.purchases[reg, :][np.arange(reg.sum()), born] >= 1).all()  # first purchase on acquisition
    dead = draw.death_day[reg] < DAYS
    assert 0.2 < dead.mean() < 0.9
    late = draw.purchases[reg].cumsum(axis=1)
    after = [late[i, -1] - late[i, d - 1] for i, d in enumerate(draw.death_day[reg]) if d < DAYS]
    assert max(after) == 0  # nobody buys after dropping out
    assert not draw.purchases[~reg].any()


def test_btyd_sample_writes_exactly_the_drawn_purchases(tmp_path) -> None:
    s = make_settings(tmp_path, users=USERS, days=DAYS, mode="btyd", mess_rate=0.0)
    generate_sample_data(s)
    ingest_inbox(s)
    events = load_clean_events(s)
    buys = events.loc[events["event_type"] == "purchase"]
    pop = btyd_population(_world(s, USERS, DAYS, s.sample.seed)[2], DAYS, s.sample.seed)
    draw = draw_btyd(pop, DAYS, s.sample.seed)
    ids = _world(s, USERS, DAYS, s.sample.seed)[3]
    want = pd.Series(draw.purchases[:USERS].sum(axis=1), index=ids)
    got = buys.groupby("user_id").size().reindex(ids, fill_value=0)
    assert (got.to_numpy() == want.to_numpy()).all()
    values = buys["amount"].to_numpy(dtype=float)
    w = BtydWorld()
    assert abs(np.median(values) / (w.p_value * w.gamma_value / (w.q_value - 1)) - 1) < 0.5
    # per-customer mean values differ more than one customer's orders would by chance (Gamma-Gamma)
    per_user = buys.groupby("user_id")["amount"].agg(["mean", "size"])
    assert per_user.loc[per_user["size"] >= 3, "mean"].std() > 10


def test_persona_mode_is_unchanged_by_the_btyd_option(tmp_path) -> None:
    a = make_settings(tmp_path / "a", users=100, days=35)
    b = make_settings(tmp_path / "b", users=100, days=35, mode="personas")
    generate_sample_data(a)
    generate_sample_data(b)
    assert digest(a.data_dir) == digest(b.data_dir)
    c = make_settings(tmp_path / "c", users=100, days=35, mode="btyd")
    generate_sample_data(c)
    assert digest(c.data_dir) != digest(a.data_dir)


def test_replayed_btyd_days_carry_on_the_same_process(tmp_path) -> None:
    """``replay_day`` in ``btyd`` mode writes the purchases the same customers' process draws on those days
    (it used to replay the persona process whatever the mode)."""
    from persona.sample_data import replay_day

    s = make_settings(tmp_path, users=USERS, days=DAYS, mode="btyd", mess_rate=0.0)
    generate_sample_data(s)
    replays = [replay_day(s, k) for k in range(3)]
    ingest_inbox(s)
    events = load_clean_events(s)
    buys = events.loc[events["event_type"] == "purchase"]
    pop = btyd_population(_world(s, USERS, DAYS, s.sample.seed)[2], DAYS, s.sample.seed)
    draw = draw_btyd(pop, DAYS + 3, s.sample.seed)
    ids = _world(s, USERS, DAYS, s.sample.seed)[3]
    want = pd.Series(draw.purchases[:USERS].sum(axis=1), index=ids)
    got = buys.groupby("user_id").size().reindex(ids, fill_value=0)
    assert draw.purchases[:USERS, DAYS:].sum() > 0 and all(r.events > 0 for r in replays)
    assert (got.to_numpy() == want.to_numpy()).all()
