"""What the sample generator itself expects each user to spend after a cutoff: the headroom oracle.

The generator draws purchases from latent quantities no model sees: in the persona sample each user's
daily session rate and per-session purchase probability (persona, switches, drift decay, weekdays, the
sale) and the order value parameters (persona basket, category preferences, the sale discount); in the
buy-till-you-die sample each customer's purchase rate, drop-out probability, order value rate and whether
they are still alive. From these, re-derived deterministically from the same settings and seed (nothing
is stored), :func:`horizon_oracle` gives per registered user the *expected* spend and P(purchase) over
``[cutoff, cutoff + horizon)``. Ranking by the expected spend is the best any model could do: the rest
of the realized spend is the generator's own noise (Poisson counts, order values). It never changes the
generator's output (it calls the same functions with the same seeds, and writes nothing).

Purchase times are drawn at a local time of day in the user's zone, so a purchase on the generator's day
``d`` can fall on the UTC day before or after; the oracle weighs each day by the chance its purchases
land inside the UTC window (labels count UTC times). Users map to the pipeline's ``user_id`` as the
generator writes them (``u000001``...): orders carry the registered id, which ingestion keeps as it is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

MIN_ORDER_EUR = 2.5
"""The generator's floor on an order value (persona/sample_data.py ``_orders``)."""


def _zone_shift(offset_h: float) -> tuple[float, float, float]:
    """P(a purchase on generator day d lands on UTC day d-1, d, d+1) for a zone ``offset_h`` hours east of
    UTC, from the generator's morning/lunch/evening mixture of local times (taken modulo 24 h)."""
    from scipy.stats import norm

    weights, means, sds = (0.25, 0.35, 0.40), (9.0, 13.0, 20.5), (1.5, 2.0, 1.8)

    def below(x: float) -> float:  # P(local hour mod 24 < x), 0 <= x <= 24
        return float(sum(w * sum(norm.cdf((x + 24 * j - m) / s) - norm.cdf((24 * j - m) / s) for j in range(-2, 3))
                         for w, m, s in zip(weights, means, sds, strict=True)))

    before = below(offset_h) if offset_h > 0 else 0.0  # local hour < offset: the UTC day before
    after = 1.0 - below(24.0 + offset_h) if offset_h < 0 else 0.0  # local hour >= 24 + offset: the day after
    return before, 1.0 - before - after, after


def window_weights(zone: np.ndarray, days: int, first: int, horizon: int) -> np.ndarray:
    """(users, days): the chance that a purchase on generator day d lands in UTC days ``[first, first + horizon)``."""
    from persona.sample_data import _ZONES

    d = np.arange(days)
    inside = ((d >= first) & (d < first + horizon)).astype(float)
    prev_in = np.r_[0.0, inside[:-1]]  # day d-1 inside: a purchase shifted one day later lands inside
    next_in = np.r_[inside[1:], 0.0]
    per_zone = []
    for z in _ZONES:
        before, same, after = _zone_shift(z[4])
        per_zone.append(same * inside + before * next_in + after * prev_in)
    return np.asarray(per_zone)[zone]


def _gamma_floor_mean(shape: float, rate: np.ndarray, floor: float = MIN_ORDER_EUR) -> np.ndarray:
    """E[max(X, floor)] for X ~ Gamma(shape, rate)."""
    from scipy.special import gammainc

    x = floor * rate
    return floor * gammainc(shape, x) + shape / rate * (1.0 - gammainc(shape + 1.0, x))


def _persona_values(pop: Any, daily: Any, cat: Any) -> np.ndarray:
    """(users, days): expected order value (EUR) of a purchase on each day: persona basket (lognormal
    mean), the user's category preferences' price levels, the sale discount."""
    from persona.sample_data import PROFILES

    median = np.array([p.basket_eur for p in PROFILES])[daily.base]
    sigma = np.array([p.basket_sigma for p in PROFILES])[daily.base]
    share = np.diff(np.c_[np.zeros(len(pop.cat_cum)), pop.cat_cum], axis=1)
    level = (cat.price_level / np.mean(cat.price_level)) ** 0.5
    return median * np.exp(sigma**2 / 2) * (share @ level)[:, None] * np.where(daily.sale, 0.85, 1.0)[None, :]


def _btyd_alive_counts(rate: np.ndarray, dropout: np.ndarray, days: int, first: int) -> np.ndarray:
    """(users, days): expected purchases a day of a customer alive at the start of day ``first`` (zero
    before it): ``rate * exp(-rate * dropout) ** (d - first)`` (a day's purchases are Poisson and each one
    ends the customer's life with probability ``dropout``)."""
    k = np.arange(days)[None, :] - first
    decay = np.exp(-rate * dropout)[:, None] ** np.maximum(k, 0)
    return np.where(k >= 0, rate[:, None] * decay, 0.0)


def _p_alive(purchases: np.ndarray, birth: np.ndarray, rate: np.ndarray, dropout: np.ndarray,
             first: int) -> np.ndarray:
    """P(alive at the start of day ``first`` | the customer's parameters and purchases before it): after
    the last repeat purchase day (``n`` purchases) the customer survived with ``(1-p)^n``, and an alive
    customer buys nothing for ``m`` days with ``exp(-rate m)``; a customer without repeat purchases is alive."""
    past = purchases[:, :first]
    repeat = (past > 0) & (np.arange(first)[None, :] > birth[:, None])
    has = repeat.any(axis=1)
    last = np.where(has, first - 1 - np.argmax(repeat[:, ::-1], axis=1), 0)
    n = past[np.arange(len(past)), last]
    survive = (1.0 - dropout) ** n * np.exp(-rate * (first - 1 - last))
    return np.where(has, survive / np.maximum(survive + 1.0 - (1.0 - dropout) ** n, 1e-300), 1.0)


def horizon_oracle(settings: Any, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Per registered user of the sample ``settings`` describe: ``user_id``, ``expected_spend`` and
    ``p_purchase`` over ``[cutoff, cutoff + horizon_days)`` given every latent quantity of the generator;
    in ``btyd`` mode also ``alive`` (at the cutoff) and ``expected_spend_params`` / ``p_purchase_params``:
    the same knowing the customer's parameters but not whether they are still alive (P(alive) from their
    purchases before the cutoff)."""
    from persona.sample_data import _daily, _Timeline, _world

    sample = settings.sample
    tl = _Timeline(sample.end_date - timedelta(days=sample.days), sample.days)
    _, _, pop, ids, cat = _world(settings, sample.users, sample.days, sample.seed)
    first = (pd.Timestamp(cutoff).tz_localize(None).normalize() - pd.Timestamp(tl.start)).days
    n = pop.n_users
    weights = window_weights(pop.zone, tl.days, first, horizon_days)[:n]
    if sample.mode != "btyd":
        daily = _daily(pop, tl)
        mu = (daily.session_rate * daily.purchase_prob)[:n] * weights  # purchases a day are Poisson
        spend = (mu * _persona_values(pop, daily, cat)[:n]).sum(axis=1)
        return pd.DataFrame({"user_id": ids, "expected_spend": spend, "p_purchase": 1.0 - np.exp(-mu.sum(axis=1))})
    from persona.sample_btyd import BtydWorld, btyd_population, draw_btyd

    pop = btyd_population(pop, tl.days, sample.seed)
    draw = draw_btyd(pop, tl.days, sample.seed)
    world = BtydWorld()
    rate, dropout = draw.rate[:n], draw.dropout[:n]
    value = _gamma_floor_mean(world.p_value, draw.value_rate[:n])
    known = (np.where(np.arange(tl.days)[None, :] < first, draw.purchases[:n], 0) * weights).sum(axis=1)
    p_known = 1.0 - np.prod((1.0 - weights) ** np.where(np.arange(tl.days)[None, :] < first, draw.purchases[:n], 0),
                            axis=1)  # purchases already made that land in the window
    born = pop.signup_day[:n] < first
    alive = born & (draw.death_day[:n] > first)
    counts = (_btyd_alive_counts(rate, dropout, tl.days, first) * weights).sum(axis=1)
    exposure = (np.where(np.arange(tl.days)[None, :] >= first, weights, 0.0)).sum(axis=1)
    p_if_alive = 1.0 - (1.0 - p_known) * np.exp(-rate * exposure)
    p_alive = np.where(born, _p_alive(draw.purchases[:n], pop.signup_day[:n], rate, dropout, first), 0.0)
    return pd.DataFrame({
        "user_id": ids,
        "expected_spend": (known + alive * counts) * value,
        "p_purchase": np.where(alive, p_if_alive, p_known),
        "alive": alive,
        "expected_spend_params": (known + p_alive * counts) * value,
        "p_purchase_params": p_known + (1.0 - p_known) * p_alive * (1.0 - np.exp(-rate * exposure)),
    })
