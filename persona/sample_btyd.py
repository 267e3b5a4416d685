"""The buy-till-you-die sample mode (``sample.mode: btyd``): purchases follow BG/NBD, order values Gamma-Gamma.

Beside the persona sample (purchases driven by hidden personas, switches and drift), this mode draws
every registered customer's purchases from the process the classic customer-base models assume, so
the project's models are tested where BG/NBD + Gamma-Gamma are correctly specified:

* customers are acquired over the first half of the history; the first purchase is on that day;
* each has a purchase rate ``lambda ~ Gamma(r, alpha)`` (per day) while alive: Poisson purchases a day;
* after each repeat purchase the customer drops out with probability ``p ~ Beta(a, b)``;
* order values are ``Gamma(p_value, nu)`` with ``nu ~ Gamma(q_value, gamma_value)`` per customer.

Browsing (sessions, events, social, tickets) still follows the personas; a customer who has dropped
out browses at ``dead_browse`` of their rate (people who stopped buying visit less), the one signal
beyond purchases that the models can use and BG/NBD cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# the generator's _Population and _Daily arrive as arguments (typed Any: importing them here would make
# an import cycle with persona/sample_data.py, which calls this module)
_Population = _Daily = Any


@dataclass(frozen=True)
class BtydWorld:
    """Population parameters of the buy-till-you-die process (time in days, money in EUR)."""

    r: float = 0.75
    alpha: float = 20.0  # mean rate r/alpha = 0.0375 purchases a day (about 1.1 a month)
    a: float = 1.0
    b: float = 4.0  # mean drop-out probability a/(a+b) = 0.2 after each repeat purchase
    p_value: float = 4.0
    q_value: float = 4.0
    gamma_value: float = 45.0  # mean order value p*gamma/(q-1) = 60 EUR
    acquisition_share: float = 0.5  # customers are acquired over this share of the history
    dead_browse: float = 0.3


def _rng(seed: int, name: str) -> np.random.Generator:
    import zlib

    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def btyd_population(pop: _Population, days: int, seed: int, world: BtydWorld = BtydWorld()) -> _Population:
    """The population with acquisition days inside the history (the first purchase is on that day)."""
    rng = _rng(seed, "btyd-acquisition")
    n = pop.n_total
    signup = rng.integers(0, max(1, int(world.acquisition_share * days)), n)
    return replace(pop, signup_day=np.where(pop.registered, signup, pop.signup_day))


@dataclass(frozen=True)
class BtydDraw:
    """What the process drew per customer (for tests and the benchmark)."""

    rate: np.ndarray
    dropout: np.ndarray
    value_rate: np.ndarray
    purchases: np.ndarray  # (users, days) purchases a day
    death_day: np.ndarray  # first day no longer alive (days = alive to the end)


def draw_btyd(pop: _Population, days: int, seed: int, world: BtydWorld = BtydWorld()) -> BtydDraw:
    """Simulate the purchase process day by day (vectorised over customers)."""
    rng = _rng(seed, "btyd-purchases")
    n = pop.n_total
    reg = pop.registered
    rate = rng.gamma(world.r, 1.0 / world.alpha, n)
    dropout = rng.beta(world.a, world.b, n)
    value_rate = rng.gamma(world.q_value, 1.0 / world.gamma_value, n)
    purchases = np.zeros((n, days), dtype=np.int64)
    birth = pop.signup_day
    alive = np.zeros(n, dtype=bool)
    death = np.full(n, days, dtype=np.int64)
    for d in range(days):
        born = reg & (birth == d)
        count = np.where(alive, rng.poisson(rate), 0)
        purchases[:, d] = count + born  # the first purchase on the day of acquisition
        alive |= born
        dies = alive & (count > 0) & (rng.random(n) < 1.0 - (1.0 - dropout) ** count)
        death[dies] = d + 1
        alive &= ~dies
    return BtydDraw(rate, dropout, value_rate, purchases, death)


def btyd_daily(daily: _Daily, pop: _Population, seed: int, world: BtydWorld = BtydWorld()) -> _Daily:
    """The persona sample's daily rates with purchases and order values from the BTYD process."""
    draw = draw_btyd(pop, daily.session_rate.shape[1], seed, world)
    d = np.arange(daily.session_rate.shape[1])[None, :]
    dead = d >= draw.death_day[:, None]
    session_rate = daily.session_rate * np.where(dead & pop.registered[:, None], world.dead_browse, 1.0)
    return replace(daily, session_rate=session_rate, purchases=draw.purchases,
                   value_rate=draw.value_rate, value_shape=world.p_value)
