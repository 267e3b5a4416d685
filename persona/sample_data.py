"""Deterministic sample data: a multi-channel e-commerce history driven by hidden personas.

Every user has a ground-truth persona (some switch persona partway through). Sessions, events,
orders, refunds, social interactions and support tickets are drawn per user and day with numpy
(no Python loop per event), rendered in each channel's source format as configured in
``persona.yaml`` (column names, event-type values, timestamp units, delimiters), sprinkled with
realistic mess (re-delivered duplicates, missing values, malformed rows, outliers) and written
as a few monthly drops per channel.
"""

from __future__ import annotations

import fnmatch
import os
import zlib
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from base.config import ChannelConfig, Settings, TimestampSpec
from base.paths import DataPaths

PERSONA_NAMES: tuple[str, ...] = (
    "loyal_big_spender",
    "bargain_hunter",
    "window_shopper",
    "new_explorer",
    "drifting_away",
)
LOYAL, BARGAIN, WINDOW, EXPLORER, DRIFTING = range(5)
_ANON = 5  # behaviour row of never-registered visitors
PERSONA_SHARES = (0.15, 0.25, 0.30, 0.15, 0.15)

# persona -> personas it may switch to (drifting_away users do not switch)
SWITCH_TO = MappingProxyType(
    {BARGAIN: (LOYAL,), LOYAL: (DRIFTING,), WINDOW: (BARGAIN,), EXPLORER: (LOYAL, BARGAIN)}
)

DAY_MS = 86_400_000
_WEB_EVENTS = ("page_view", "product_view", "search", "add_to_cart")
_WEEKDAY_FACTOR = (0.95, 0.92, 0.95, 1.0, 1.05, 1.12, 1.06)  # Mon..Sun


@dataclass(frozen=True)
class Profile:
    """Per-day behaviour of one persona."""

    sessions_per_day: float
    events_per_session: float
    purchase_prob: float  # per session
    basket_eur: float  # median basket (lognormal)
    basket_sigma: float
    type_probs: tuple[float, float, float, float]  # page_view, product_view, search, add_to_cart
    concentration: float  # Dirichlet concentration of the category preference (low = focused)
    refund_prob: float
    ticket_rate: float  # support tickets per active day
    social_factor: float


PROFILES: tuple[Profile, ...] = (
    Profile(0.17, 4.2, 0.48, 150.0, 0.45, (0.25, 0.45, 0.10, 0.20), 0.6, 0.04, 0.0015, 1.2),
    Profile(0.17, 5.0, 0.32, 24.0, 0.40, (0.18, 0.58, 0.16, 0.08), 1.5, 0.06, 0.0015, 1.0),
    Profile(0.19, 5.0, 0.015, 55.0, 0.50, (0.35, 0.47, 0.12, 0.06), 1.2, 0.05, 0.0008, 1.3),
    Profile(0.21, 4.2, 0.12, 60.0, 0.55, (0.30, 0.42, 0.20, 0.08), 6.0, 0.05, 0.0015, 1.5),
    Profile(0.15, 3.8, 0.35, 70.0, 0.50, (0.30, 0.45, 0.10, 0.15), 1.0, 0.07, 0.0040, 0.6),
    Profile(0.04, 2.5, 0.0, 1.0, 0.1, (0.50, 0.35, 0.15, 0.00), 3.0, 0.0, 0.0, 0.0),  # anonymous
)

# known categories: relative price level and which personas lean towards them
_CATEGORY_PRICE = MappingProxyType(
    {"electronics": 2.0, "fashion": 1.0, "home": 1.3, "beauty": 0.6, "sports": 0.9, "grocery": 0.4}
)
_CATEGORY_TILT = MappingProxyType(
    {
        LOYAL: MappingProxyType({"electronics": 2.0, "home": 1.6, "fashion": 1.2}),
        BARGAIN: MappingProxyType({"grocery": 2.2, "beauty": 1.6, "fashion": 1.3}),
        WINDOW: MappingProxyType({"fashion": 2.0, "electronics": 1.7, "sports": 1.2}),
    }
)

# (zone, share, phone country code, preferred currency, typical UTC offset in hours)
_ZONES: tuple[tuple[str, float, str, str, float], ...] = (
    ("Europe/Berlin", 0.72, "+49", "EUR", 1.5),
    ("UTC", 0.12, "+49", "EUR", 1.5),  # browsers that report UTC ("Z")
    ("Europe/London", 0.09, "+44", "GBP", 0.5),
    ("America/New_York", 0.07, "+1", "USD", -4.5),
)
_DEVICES = ("desktop", "mobile", "tablet")
_PLATFORMS = ("ios", "android")
_NETWORKS = ("instagram", "tiktok", "facebook")
_SOCIAL_KINDS = ("like", "share", "comment")
_TOPICS = ("delivery", "returns", "payment", "account")
_FIRST = ("jane", "john", "anna", "lukas", "mia", "noah", "emma", "leon", "sofia", "paul", "lea",
          "felix", "marie", "jonas", "laura", "max", "clara", "elias", "nora", "tom")
_LAST = ("doe", "smith", "mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner",
         "becker", "brown", "wilson", "taylor", "klein", "wolf", "neumann", "braun", "zimmer")
_DOMAINS = ("example.com", "example.org", "example.net")

# canonical fields each channel is rendered from, in file column order ("pii:<kind>" = PII column)
_LAYOUTS = MappingProxyType(
    {
        "web": ("event_id", "anonymous_id", "user_id", "event_type", "timestamp", "product_id",
                "category", "session_id", "device"),
        "app": ("event_id", "user_id", "device_id", "event_type", "timestamp", "product_id",
                "category", "device", "session_id"),
        "orders": ("event_id", "user_id", "pii:email", "event_type", "timestamp", "amount",
                   "currency", "quantity", "category", "product_id"),
        "social": ("event_id", "user_id", "event_type", "timestamp", "properties"),
        "crm": ("event_id", "user_id", "timestamp", "category", "pii:phone"),
    }
)
_PREFIXES = MappingProxyType(
    {"web": "clickstream", "app": "app_events", "orders": "orders", "social": "social", "crm": "tickets"}
)


@dataclass(frozen=True)
class SampleSummary:
    """What :func:`generate_sample_data` wrote."""

    users: int
    days: int
    events: int  # clean events generated before mess was injected
    rows_written: int  # rows written over all channel files (incl. duplicates/malformed)
    files: dict[str, list[Path]]  # channel -> files written
    ground_truth: Path


@dataclass(frozen=True)
class _Timeline:
    """The history: ``days`` UTC days starting at ``start``."""

    start: date
    days: int

    @property
    def t0_ms(self) -> int:
        """Epoch milliseconds of the first instant."""
        return int(datetime.combine(self.start, datetime.min.time(), timezone.utc).timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """Epoch milliseconds of the first instant after the history."""
        return self.t0_ms + self.days * DAY_MS


@dataclass(frozen=True)
class _Population:
    """Per-user attributes; rows ``n_users..`` are never-registered anonymous visitors."""

    n_users: int
    start: np.ndarray  # persona at the start
    end: np.ndarray  # persona at the end
    switch_day: np.ndarray  # -1 = no switch
    signup_day: np.ndarray  # negative = before the history
    drift_day: np.ndarray  # day activity starts to decay
    drift_tau: np.ndarray
    activity: np.ndarray
    buy_mult: np.ndarray
    app_share: np.ndarray
    zone: np.ndarray
    n_browsers: np.ndarray
    anon_ids: np.ndarray  # (n, 3)
    browser_device: np.ndarray  # (n, 3)
    device_id: np.ndarray
    platform: np.ndarray
    currency: np.ndarray  # index into the currency list
    email: np.ndarray
    phone: np.ndarray
    cat_cum: np.ndarray  # (n, C) cumulative category preference
    social_rate: np.ndarray
    network: np.ndarray

    @property
    def n_total(self) -> int:
        """Users plus anonymous visitors."""
        return len(self.start)

    @property
    def registered(self) -> np.ndarray:
        """True for real (registered) users."""
        return np.arange(self.n_total) < self.n_users


@dataclass(frozen=True)
class _Catalogue:
    """Products per category (Zipf popularity) with unit prices."""

    categories: tuple[str, ...]
    ids: np.ndarray  # (C, P)
    prices: np.ndarray  # (C, P) EUR
    popularity_cum: np.ndarray  # (P,)
    price_level: np.ndarray  # (C,)


# --------------------------------------------------------------------------- small helpers


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible stream per component."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int, prefix: str = "") -> np.ndarray:
    """``n`` random hex ids of ``2*nbytes`` characters."""
    if n == 0:
        return np.array([], dtype=object)
    raw = np.frombuffer(rng.bytes(n * nbytes).hex().encode(), dtype=f"S{2 * nbytes}")
    return np.strings.add(prefix, raw.astype(f"U{2 * nbytes}")).astype(object)


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings."""
    if n == 0:
        return np.array([], dtype=object)
    b = np.frombuffer(rng.bytes(n * 16), dtype=np.uint8).reshape(n, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nib = np.empty((n, 32), dtype=np.uint8)
    nib[:, 0::2], nib[:, 1::2] = digits[b >> 4], digits[b & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for lo, hi, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        out[:, at : at + hi - lo] = nib[:, lo:hi]
    return out.view("S36").ravel().astype("U36").astype(object)


def _padded(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers, e.g. ``u000123``."""
    if len(numbers) == 0:
        return np.array([], dtype=object)
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width)).astype(object)


def user_ids(n: int, first: int = 1, width: int | None = None) -> np.ndarray:
    """The ids of users ``first``..``first + n - 1`` ("u000001" ...), zero-padded to ``width`` digits
    (default: enough for the last id, at least 6)."""
    return _padded("u", np.arange(first, first + n), width or max(6, len(str(first + n - 1))))


def _draw_cum(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """One categorical draw per row of the cumulative probability matrix ``cum``."""
    u = rng.random(len(cum))
    return np.minimum((cum < u[:, None]).sum(axis=1), cum.shape[1] - 1)


def _diurnal_ms(rng: np.random.Generator, n: int) -> np.ndarray:
    """Local time of day (ms) from a morning/lunch/evening mixture."""
    comp = rng.choice(3, size=n, p=[0.25, 0.35, 0.40])
    hours = rng.normal(np.array([9.0, 13.0, 20.5])[comp], np.array([1.5, 2.0, 1.8])[comp]) % 24
    return (hours * 3_600_000).astype(np.int64)


def _day_times(rng: np.random.Generator, days: np.ndarray, zone: np.ndarray, tl: _Timeline) -> np.ndarray:
    """UTC epoch ms for activity on history day ``days`` at a local time of day in ``zone``."""
    offset_h = np.array([z[4] for z in _ZONES])[zone]
    t = tl.t0_ms + days.astype(np.int64) * DAY_MS + _diurnal_ms(rng, len(days)) - (offset_h * 3_600_000).astype(np.int64)
    return _inside(t, tl)


def _inside(t: np.ndarray, tl: _Timeline) -> np.ndarray:
    """Move times that fell outside the history by whole days back inside it."""
    t = np.where(t >= tl.end_ms, t - DAY_MS * ((t - tl.end_ms) // DAY_MS + 1), t)
    return np.where(t < tl.t0_ms, t + DAY_MS * ((tl.t0_ms - t - 1) // DAY_MS + 1), t)


# --------------------------------------------------------------------------- population


def _catalogue(categories: list[str], rng: np.random.Generator, n_products: int = 300) -> _Catalogue:
    """Product ids like ``ELE-00042`` and unit prices per category."""
    codes = [c[:3].upper() for c in categories]
    if len(set(codes)) < len(codes):
        codes = [f"C{i:02d}" for i in range(len(categories))]
    level = np.array([_CATEGORY_PRICE.get(c, 1.0) for c in categories])
    ids = np.stack([_padded(f"{code}-", np.arange(1, n_products + 1), 5) for code in codes])
    prices = np.round(35.0 * level[:, None] * rng.lognormal(0.0, 0.5, (len(categories), n_products)), 2)
    pop = 1.0 / (np.arange(n_products) + 5.0) ** 1.1
    return _Catalogue(tuple(categories), ids, np.maximum(prices, 0.99), np.cumsum(pop) / pop.sum(), level)


def _switches(start: np.ndarray, signup: np.ndarray, share: float, n_users: int, days: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Persona at the end and the switch day (-1 = none) for a ``share`` of the users."""
    end, switch = start.copy(), np.full(len(start), -1)
    eligible = np.flatnonzero((np.arange(len(start)) < n_users) & (start != DRIFTING))
    chosen = np.sort(rng.choice(eligible, size=min(round(share * n_users), len(eligible)), replace=False))
    for origin, targets in SWITCH_TO.items():
        idx = chosen[start[chosen] == origin]
        end[idx] = np.asarray(targets)[rng.integers(0, len(targets), len(idx))]
    lo = np.where(start[chosen] == EXPLORER, signup[chosen] + max(3, days // 10), int(0.25 * days))
    hi = np.maximum(lo + 1, days - max(2, days // 20))
    switch[chosen] = np.minimum(lo + (rng.random(len(chosen)) * (hi - lo)).astype(int), days - 1)
    return end, switch


def _preferences(persona: np.ndarray, categories: list[str], rng: np.random.Generator) -> np.ndarray:
    """Cumulative per-user category preference drawn from a persona-tilted Dirichlet."""
    n_cat = len(categories)
    base = np.ones((len(PROFILES), n_cat))
    for p, tilt in _CATEGORY_TILT.items():
        base[p] = [tilt.get(c, 1.0) for c in categories]
    base /= base.sum(axis=1, keepdims=True)
    conc = np.array([pr.concentration for pr in PROFILES])[persona]
    alpha = base[persona] * conc[:, None] * n_cat
    weights = rng.gamma(alpha) + 1e-9
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    return cum


def _contacts(n_users: int, zone: np.ndarray, rng: np.random.Generator,
              first: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Raw emails (``jane.doe42@example.com``, numbered from ``first``: unique over a population drawn
    in parts) and phones (``+49-170-5551234``) per user."""
    num = np.arange(first, first + n_users).astype(str)
    first = np.array(_FIRST)[rng.integers(0, len(_FIRST), n_users)]
    last = np.array(_LAST)[rng.integers(0, len(_LAST), n_users)]
    dom = np.array(_DOMAINS)[rng.choice(len(_DOMAINS), n_users, p=[0.7, 0.2, 0.1])]
    email = first + "." + last + num + "@" + dom
    cc = np.array([z[2] for z in _ZONES])[zone[:n_users]]
    area = rng.integers(150, 180, n_users).astype(str)
    line = np.strings.zfill(rng.integers(0, 10_000, n_users).astype(str), 4)
    phone = cc + "-" + area + "-555" + line
    return email.astype(object), phone.astype(object)


def _population(n_users: int, days: int, switch_share: float, categories: list[str],
                currencies: list[str], seed: int, first: int = 1) -> _Population:
    """Draw users (with hidden personas) and anonymous visitors; ``first``: number of the first user."""
    rng = _rng(seed, "population")
    n_anon = max(1, n_users // 8)
    n = n_users + n_anon
    registered = np.arange(n) < n_users
    start = np.where(registered, rng.choice(len(PERSONA_NAMES), size=n, p=PERSONA_SHARES), WINDOW)
    explorer_signup = rng.integers(int(0.15 * days), int(0.6 * days) + 1, n)
    signup = np.where(start == EXPLORER, explorer_signup, -rng.integers(30, 900, n))
    signup = np.where(registered, signup, 10 * days + 10**6)
    end, switch = _switches(start, signup, switch_share, n_users, days, rng)
    native_drift = rng.integers(int(0.1 * days), int(0.45 * days) + 1, n)
    drift_day = np.where(start == DRIFTING, native_drift, np.where(end == DRIFTING, switch, 10 * days))
    zone = rng.choice(len(_ZONES), size=n, p=[z[1] for z in _ZONES])
    preferred = np.array([z[3] if z[3] in currencies else currencies[0] for z in _ZONES])[zone]
    currency = np.array([currencies.index(c) for c in preferred])
    other = rng.random(n) < 0.03
    currency = np.where(other, rng.integers(0, len(currencies), n), currency)
    kind = rng.random(n)
    app_share = np.where(kind < 0.35, 0.0, np.where(kind < 0.55, 1.0, rng.uniform(0.2, 0.8, n)))
    n_browsers = np.where(registered, 1 + (rng.random(n) < 0.35) + (rng.random(n) < 0.08), 1)
    email, phone = _contacts(n_users, zone, rng, first)
    social = (rng.random(n) < 0.6) * rng.lognormal(np.log(0.03), 0.8, n)
    social *= np.array([p.social_factor for p in PROFILES])[start] * registered
    return _Population(
        n_users=n_users,
        start=start,
        end=end,
        switch_day=switch,
        signup_day=signup,
        drift_day=drift_day,
        drift_tau=rng.uniform(7.0, 18.0, n),
        activity=rng.lognormal(0.0, 0.35, n),
        buy_mult=rng.lognormal(0.0, 0.25, n),
        app_share=np.where(registered, app_share, 0.0),
        zone=zone,
        n_browsers=n_browsers,
        anon_ids=_hex_ids(rng, 3 * n, 6, "a-").reshape(n, 3),
        browser_device=rng.choice(len(_DEVICES), size=(n, 3), p=[0.5, 0.4, 0.1]),
        device_id=_hex_ids(rng, n, 8, "d-"),
        platform=rng.choice(len(_PLATFORMS), size=n, p=[0.45, 0.55]),
        currency=currency,
        email=email,
        phone=phone,
        cat_cum=_preferences(start, categories, rng),
        social_rate=social,
        network=rng.choice(len(_NETWORKS), size=n, p=[0.5, 0.3, 0.2]),
    )


# --------------------------------------------------------------------------- daily behaviour


@dataclass(frozen=True)
class _Daily:
    """User × day matrices of the behaviour in force."""

    persona: np.ndarray  # persona on that day
    base: np.ndarray  # behaviour row (drifting users keep the habits they drift from)
    decay: np.ndarray  # activity multiplier of drifting users
    active: np.ndarray  # signed up (or a registered user before the history)
    session_rate: np.ndarray
    purchase_prob: np.ndarray
    sale: np.ndarray  # (D,) True on sale days
    purchases: np.ndarray | None = None  # (U, D) purchases a day, drawn elsewhere (persona/sample_btyd.py)
    value_rate: np.ndarray | None = None  # (U,) Gamma rate of each user's order values (with ``purchases``)
    value_shape: float = 0.0


def _daily(pop: _Population, tl: _Timeline) -> _Daily:
    """Rates per user and day: persona, switches, drift decay, signup, weekdays and a sale."""
    d = np.arange(tl.days)[None, :]
    switched = (pop.switch_day[:, None] >= 0) & (d >= pop.switch_day[:, None])
    persona = np.where(switched, pop.end[:, None], pop.start[:, None])
    base = np.where((persona == DRIFTING) & (pop.start[:, None] != DRIFTING), pop.start[:, None], persona)
    base = np.where(pop.registered[:, None], base, _ANON)
    since = d - pop.drift_day[:, None]
    decay = np.where((persona == DRIFTING) & (since > 0), np.exp(-np.maximum(since, 0) / pop.drift_tau[:, None]), 1.0)
    decay = np.maximum(decay, np.where(persona == DRIFTING, 0.02, 0.0))
    signup = pop.signup_day[:, None]
    active = pop.registered[:, None] & (d >= signup)
    pre = pop.registered[:, None] & (d < signup) & (d >= signup - 21)
    burst = np.where(active & (d < signup + 7), 1.6, 1.0)
    weekday = np.array(_WEEKDAY_FACTOR)[(tl.start.weekday() + np.arange(tl.days)) % 7]
    sale_start = int(0.6 * tl.days)
    sale = (np.arange(tl.days) >= sale_start) & (np.arange(tl.days) < sale_start + 3)
    rate = np.array([p.sessions_per_day for p in PROFILES])[base] * pop.activity[:, None] * decay
    presence = np.where(active, burst, np.where(pre, 0.35, np.where(pop.registered[:, None], 0.0, 1.0)))
    rate = rate * presence * weekday[None, :] * np.where(sale, 1.3, 1.0)[None, :]
    buy = np.array([p.purchase_prob for p in PROFILES])[base] * pop.buy_mult[:, None] * decay
    sale_boost = np.where(base == BARGAIN, 2.2, 1.4)
    buy = np.where(sale[None, :], np.minimum(buy * sale_boost, 0.9), buy) * active
    return _Daily(persona, base, decay, active, rate, np.minimum(buy, 0.95), sale)


# --------------------------------------------------------------------------- sessions and events


@dataclass(frozen=True)
class _Sessions:
    """One row per session."""

    user: np.ndarray
    day: np.ndarray
    base: np.ndarray
    start_ms: np.ndarray
    n_events: np.ndarray  # regular (non-identify) events
    purchase: np.ndarray
    attached: np.ndarray  # the purchase follows the session's last add_to_cart
    app: np.ndarray
    login: np.ndarray  # 0 anonymous, 1 identify/signin inside, 2 signed in throughout (app)
    login_pos: np.ndarray  # slot of the identify event
    browser: np.ndarray
    category: np.ndarray


def _sessions(pop: _Population, daily: _Daily, tl: _Timeline, rng: np.random.Generator) -> _Sessions:
    """Draw sessions per user-day and their shape (size, channel, login, purchase)."""
    counts = rng.poisson(daily.session_rate)
    if daily.purchases is not None:  # a purchase is a session's checkout: as many sessions as purchases
        counts = np.maximum(counts, daily.purchases)
    uu, dd = np.nonzero(counts)
    reps = counts[uu, dd]
    user, day = np.repeat(uu, reps), np.repeat(dd, reps)
    base = daily.base[user, day]
    n = len(user)
    mean_events = np.array([p.events_per_session for p in PROFILES])[base]
    n_events = 1 + rng.poisson(mean_events - 1.0)
    purchase = rng.random(n) < daily.purchase_prob[user, day]
    if daily.purchases is not None:
        rank = np.arange(n) - np.repeat(np.cumsum(reps) - reps, reps)
        purchase = rank < daily.purchases[user, day]
    attached = purchase & (rng.random(n) < 0.9)
    n_events = np.where(attached, np.maximum(n_events, 3), n_events)
    app = rng.random(n) < pop.app_share[user]
    can_login = daily.active[user, day]
    first_after_signup = np.zeros(n, dtype=bool)
    new_users = can_login & (pop.start[user] == EXPLORER)
    _, first_idx = np.unique(user[new_users], return_index=True)
    first_after_signup[np.flatnonzero(new_users)[first_idx]] = True
    r = rng.random(n)
    web_login = np.where(purchase | first_after_signup | (r < 0.3), 1, 0)
    app_login = np.where(r < 0.55, 2, np.where((r < 0.75) | purchase | first_after_signup, 1, 0))
    login = np.where(can_login, np.where(app, app_login, web_login), 0)
    login_pos = 1 + (rng.random(n) * n_events).astype(np.int64)
    return _Sessions(
        user=user,
        day=day,
        base=base,
        start_ms=_day_times(rng, day, pop.zone[user], tl),
        n_events=n_events,
        purchase=purchase,
        attached=attached,
        app=app,
        login=login,
        login_pos=login_pos,
        browser=(rng.random(n) * pop.n_browsers[user]).astype(np.int64),
        category=_draw_cum(rng, pop.cat_cum[user]),
    )


@dataclass(frozen=True)
class _Events:
    """One row per behavioural event (web and app), canonical values."""

    session: np.ndarray
    ms: np.ndarray
    event_type: np.ndarray  # object: canonical type
    signed_in: np.ndarray
    category: np.ndarray  # -1 = none
    product: np.ndarray  # -1 = none
    last_in_session: np.ndarray  # per session: event index of its last non-identify event


def _events(s: _Sessions, pop: _Population, cat: _Catalogue, tl: _Timeline, rng: np.random.Generator) -> _Events:
    """Expand sessions into typed, timed events with categories and products."""
    has_login = s.login == 1
    slots = s.n_events + has_login
    total = int(slots.sum())
    ses = np.repeat(np.arange(len(slots)), slots)
    first = np.cumsum(slots) - slots
    pos = np.arange(total) - first[ses]
    k = s.login_pos[ses]
    identify = has_login[ses] & (pos == k)
    reg = pos - (has_login[ses] & (pos > k))
    probs = np.cumsum(np.array([p.type_probs for p in PROFILES]), axis=1)
    kind = _draw_cum(rng, probs[s.base[ses]])
    n_ev = s.n_events[ses]
    att = s.attached[ses]
    kind = np.where(reg == 0, 0, kind)
    kind = np.where(att & (reg == n_ev - 2), 1, np.where(att & (reg == n_ev - 1), 3, kind))
    event_type = np.array(_WEB_EVENTS, dtype=object)[kind]
    event_type[identify] = "identify"
    signed_in = (s.login[ses] == 2) | (has_login[ses] & (pos >= k))
    gaps = rng.exponential(45_000.0, total).astype(np.int64) + 2_000
    gaps[first] = 0
    cs = np.cumsum(gaps)
    ms = s.start_ms[ses] + cs - cs[first][ses]
    # sessions running past the end of the history happened a little earlier (room for a checkout)
    overrun = np.maximum(ms[first + slots - 1] - (tl.end_ms - 600_000), 0)
    ms = ms - overrun[ses]
    fresh = _draw_cum(rng, pop.cat_cum[s.user[ses]])
    category = np.where(rng.random(total) < 0.75, s.category[ses], fresh)
    product = np.searchsorted(cat.popularity_cum, rng.random(total))
    product = np.minimum(product, cat.ids.shape[1] - 1)
    has_product = (kind == 1) | (kind == 3)
    has_category = has_product | ((kind == 0) & (rng.random(total) < 0.4)) | ((kind == 2) & (rng.random(total) < 0.3))
    has_category &= ~identify
    has_product &= ~identify
    # the cart add that precedes a purchase is the product just viewed
    cart = np.flatnonzero(att & (reg == n_ev - 1) & ~identify)
    view = np.flatnonzero(att & (reg == n_ev - 2) & ~identify)
    category[cart], product[cart] = category[view], product[view]
    last = first + slots - 1 - (has_login & (s.login_pos == s.n_events))
    return _Events(
        session=ses,
        ms=ms,
        event_type=event_type,
        signed_in=signed_in,
        category=np.where(has_category, category, -1),
        product=np.where(has_product, product, -1),
        last_in_session=last,
    )


def _category_names(cat: _Catalogue, idx: np.ndarray) -> np.ndarray:
    """Category names, None where ``idx`` is -1."""
    names = np.array(cat.categories + (None,), dtype=object)
    return names[np.where(idx < 0, len(cat.categories), idx)]


def _product_ids(cat: _Catalogue, c: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Product ids, None where ``p`` is -1."""
    out = cat.ids[np.maximum(c, 0), np.maximum(p, 0)].astype(object)
    out[(p < 0) | (c < 0)] = None
    return out


def _behaviour_frames(s: _Sessions, ev: _Events, pop: _Population, cat: _Catalogue, ids: np.ndarray,
                      rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical web and app frames."""
    user = s.user[ev.session]
    uid = np.append(ids, np.full(pop.n_total - pop.n_users, None, dtype=object))[user]
    uid = np.where(ev.signed_in, uid, None)
    category = _category_names(cat, ev.category)
    product = _product_ids(cat, ev.category, ev.product)
    app = s.app[ev.session]
    web_sid = _hex_ids(rng, len(s.user), 8, "s-")
    app_sid = _hex_ids(rng, len(s.user), 8, "as-")
    w = ~app
    web = pd.DataFrame(
        {
            "event_id": _hex_ids(rng, int(w.sum()), 10, "ev-"),
            "anonymous_id": pop.anon_ids[user[w], s.browser[ev.session[w]]],
            "user_id": uid[w],
            "event_type": ev.event_type[w],
            "_ms": ev.ms[w],
            "_zone": pop.zone[user[w]],
            "product_id": product[w],
            "category": category[w],
            "session_id": web_sid[ev.session[w]],
            "device": np.array(_DEVICES, dtype=object)[pop.browser_device[user[w], s.browser[ev.session[w]]]],
        }
    )
    app_frame = pd.DataFrame(
        {
            "event_id": _uuids(rng, int(app.sum())),
            "user_id": uid[app],
            "device_id": pop.device_id[user[app]],
            "event_type": ev.event_type[app],
            "_ms": ev.ms[app] + rng.integers(0, 1000, int(app.sum())),
            "product_id": product[app],
            "category": category[app],
            "device": np.array(_PLATFORMS, dtype=object)[pop.platform[user[app]]],
            "session_id": app_sid[ev.session[app]],
        }
    )
    return web, app_frame


def _orders(s: _Sessions, ev: _Events, pop: _Population, daily: _Daily, cat: _Catalogue, ids: np.ndarray,
            currencies: list[str], fx: np.ndarray, tl: _Timeline, rng: np.random.Generator) -> pd.DataFrame:
    """Canonical orders (purchases) and refunds, with sequential order ids."""
    o = np.flatnonzero(s.purchase)
    user, base = s.user[o], s.base[o]
    att = s.attached[o]
    last = ev.last_in_session[o]
    after_session = ev.ms[last] + 30_000 + rng.exponential(180_000.0, len(o)).astype(np.int64)
    standalone = _day_times(rng, s.day[o], pop.zone[user], tl)
    ms = np.where(att, np.minimum(after_session, tl.end_ms - 1_000), standalone)
    category = np.where(att, ev.category[last], _draw_cum(rng, pop.cat_cum[user]))
    product = np.where(att, ev.product[last], np.searchsorted(cat.popularity_cum, rng.random(len(o))))
    product = np.minimum(product, cat.ids.shape[1] - 1)
    median = np.array([p.basket_eur for p in PROFILES])[base]
    sigma = np.array([p.basket_sigma for p in PROFILES])[base]
    level = cat.price_level[category] / np.mean(cat.price_level)
    eur = median * np.exp(sigma * rng.standard_normal(len(o))) * level ** 0.5
    eur *= np.where(daily.sale[s.day[o]], 0.85, 1.0)
    if daily.value_rate is not None:  # Gamma-Gamma order values (persona/sample_btyd.py)
        eur = rng.gamma(daily.value_shape, 1.0 / daily.value_rate[user])
    eur = np.maximum(eur, 2.5)
    qty = np.clip(np.round(eur / cat.prices[category, product]), 1, 12).astype(np.int64)
    cur = pop.currency[user]
    amount = np.round(eur / fx[cur], 2)
    order = np.argsort(ms, kind="stable")
    frame = pd.DataFrame(
        {
            "event_id": _padded("O", 1_000_001 + np.arange(len(o)), 7),
            "user_id": ids[user[order]],
            "pii:email": pop.email[user[order]],
            "event_type": "purchase",
            "_ms": ms[order],
            "amount": amount[order],
            "currency": np.array(currencies, dtype=object)[cur[order]],
            "quantity": qty[order],
            "category": _category_names(cat, category[order]),
            "product_id": _product_ids(cat, category[order], product[order]),
            "_user": user[order],
        }
    )
    refund_p = np.array([p.refund_prob for p in PROFILES])[base[order]]
    refunded = rng.random(len(o)) < refund_p
    later = frame["_ms"].to_numpy() + rng.integers(2 * DAY_MS, 25 * DAY_MS, len(o))
    refunds = frame[refunded & (later < tl.end_ms)].copy()
    refunds["event_type"] = "refund"
    refunds["_ms"] = later[refunded & (later < tl.end_ms)]
    return pd.concat([frame, refunds], ignore_index=True).sort_values("_ms", kind="stable", ignore_index=True)


def _social(pop: _Population, daily: _Daily, ids: np.ndarray, tl: _Timeline, rng: np.random.Generator) -> pd.DataFrame:
    """Canonical social interactions (likes, shares, comments)."""
    rate = pop.social_rate[:, None] * daily.decay * daily.active
    counts = rng.poisson(rate)
    uu, dd = np.nonzero(counts)
    reps = counts[uu, dd]
    user, day = np.repeat(uu, reps), np.repeat(dd, reps)
    n = len(user)
    network = np.where(rng.random(n) < 0.8, pop.network[user], rng.integers(0, len(_NETWORKS), n))
    frame = pd.DataFrame(
        {
            "event_id": _hex_ids(rng, n, 8, "si_"),
            "user_id": ids[user],
            "event_type": np.array(_SOCIAL_KINDS, dtype=object)[rng.choice(3, n, p=[0.7, 0.1, 0.2])],
            "_ms": _day_times(rng, day, pop.zone[user], tl),
            "properties": np.array(_NETWORKS, dtype=object)[network],
        }
    )
    return frame.sort_values("_ms", kind="stable", ignore_index=True)


def _tickets(pop: _Population, daily: _Daily, orders: pd.DataFrame, ids: np.ndarray, tl: _Timeline,
             rng: np.random.Generator) -> pd.DataFrame:
    """Canonical support tickets: background, drifting users' complaints, order follow-ups."""
    d = np.arange(tl.days)[None, :]
    rate = np.array([p.ticket_rate for p in PROFILES])[daily.base] * daily.active
    near_drift = (daily.persona == DRIFTING) & (np.abs(d - pop.drift_day[:, None] - 5) <= 15)
    rate = rate + np.where(near_drift & daily.active, 0.012, 0.0)
    counts = rng.poisson(rate)
    uu, dd = np.nonzero(counts)
    reps = counts[uu, dd]
    user, day = np.repeat(uu, reps), np.repeat(dd, reps)
    drifting = daily.persona[user, day] == DRIFTING
    topic = np.where(drifting, rng.choice(4, len(user), p=[0.4, 0.3, 0.15, 0.15]),
                     rng.choice(4, len(user), p=[0.3, 0.2, 0.2, 0.3]))
    ms = _day_times(rng, day, pop.zone[user], tl)
    buys = orders[orders["event_type"] == "purchase"]
    late = buys[rng.random(len(buys)) < 0.03]
    back = orders[(orders["event_type"] == "refund")]
    back = back[rng.random(len(back)) < 0.5]
    extra_ms = np.concatenate([
        late["_ms"].to_numpy() + rng.integers(DAY_MS, 6 * DAY_MS, len(late)),
        back["_ms"].to_numpy() - rng.integers(0, 2 * DAY_MS, len(back)),
    ])
    keep = extra_ms < tl.end_ms
    user = np.concatenate([user, np.concatenate([late["_user"], back["_user"]]).astype(np.int64)[keep]])
    topic = np.concatenate([topic, np.r_[np.zeros(len(late), int), np.ones(len(back), int)][keep]])
    ms = np.concatenate([ms, extra_ms[keep]])
    order = np.argsort(ms, kind="stable")
    return pd.DataFrame(
        {
            "event_id": _padded("T", 500_001 + np.arange(len(ms)), 7),
            "user_id": ids[user[order]],
            "_ms": ms[order],
            "category": np.array(_TOPICS, dtype=object)[topic[order]],
            "pii:phone": pop.phone[user[order]],
        }
    )


# --------------------------------------------------------------------------- rendering


def _zone_offsets(ms: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """UTC offset in seconds of each instant in its zone (DST aware)."""
    out = np.zeros(len(ms), dtype=np.int64)
    for z, (name, *_rest) in enumerate(_ZONES):
        mask = zone == z
        if name == "UTC" or not mask.any():
            continue
        utc = pd.DatetimeIndex(pd.to_datetime(ms[mask], unit="ms", utc=True))
        local = utc.tz_convert(name).tz_localize(None)
        out[mask] = (local.asi8 - utc.tz_localize(None).asi8) // 10**9
    return out


def _offset_labels(offsets: np.ndarray, utc: np.ndarray) -> np.ndarray:
    """``+02:00`` style suffixes, ``Z`` where ``utc``."""
    uniq, inv = np.unique(offsets, return_inverse=True)
    labels = np.array(
        [f"{'+' if o >= 0 else '-'}{abs(o) // 3600:02d}:{abs(o) % 3600 // 60:02d}" for o in uniq.tolist()],
        dtype=object,
    )
    return np.where(utc, "Z", labels[inv.ravel()])


def _format_times(ms: np.ndarray, zone: np.ndarray | None, spec: TimestampSpec) -> np.ndarray:
    """Render epoch ms per the channel's timestamp spec."""
    ms = np.asarray(ms, dtype=np.int64)
    if len(ms) == 0:
        return np.array([], dtype=object)
    if spec.unit == "ms":
        return ms
    if spec.unit == "s":
        return ms // 1000
    if spec.unit == "us":
        return ms * 1000
    if spec.unit == "iso8601":
        if zone is None:
            return np.strings.add(np.datetime_as_string((ms // 1000).astype("datetime64[s]"), unit="s"), "Z").astype(object)
        offsets = _zone_offsets(ms, zone)
        text = np.datetime_as_string((ms // 1000 + offsets).astype("datetime64[s]"), unit="s").astype(object)
        is_utc = np.array([z[0] == "UTC" for z in _ZONES])[zone]
        return text + _offset_labels(offsets, is_utc)
    local = pd.to_datetime(ms, unit="ms", utc=True).tz_convert(spec.timezone).tz_localize(None)
    if spec.format == "%Y-%m-%d %H:%M:%S":
        text = np.datetime_as_string(local.to_numpy().astype("datetime64[s]"), unit="s")
        return np.strings.replace(text, "T", " ").astype(object)
    return np.asarray(local.strftime(spec.format or "%Y-%m-%d %H:%M:%S"), dtype=object)


def _render(canon: pd.DataFrame, name: str, cfg: ChannelConfig) -> pd.DataFrame:
    """Canonical frame -> source columns (names, event-type values, timestamps) of ``cfg``."""
    inverse: dict[str, str] = {}
    for source, canonical in cfg.event_types.items():
        inverse.setdefault(canonical, source)
    out: dict[str, object] = {}
    for field in _LAYOUTS[name]:
        if field.startswith("pii:"):
            sources = [src for src, kind in cfg.pii.items() if kind == field[4:]]
            if sources:
                out[sources[0]] = canon[field].to_numpy()
            continue
        if field not in cfg.columns:
            continue
        values = canon[field].to_numpy() if field in canon else None
        if field == "event_type":
            missing = sorted(set(canon[field].unique()) - set(inverse))
            if missing:
                raise ValueError(f"channels.{name}.event_types has no source value for {missing}")
            values = canon[field].map(inverse).to_numpy()
        elif field == "timestamp":
            zone = canon["_zone"].to_numpy() if "_zone" in canon else None
            values = _format_times(canon["_ms"].to_numpy(), zone, cfg.timestamp)
        elif field == "amount" and cfg.format != "jsonl":
            values = np.char.mod("%.2f", canon[field].to_numpy())
        out[cfg.columns[field]] = values
    return pd.DataFrame(out, index=canon.index)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as strings, missing values as empty strings."""
    return frame.apply(lambda c: c.astype(object).where(c.notna(), "").astype(str))


def _csv_lines(text: pd.DataFrame, delimiter: str) -> tuple[str, np.ndarray]:
    """Header and data lines; ``whitespace`` aligns columns with runs of spaces."""
    if delimiter == "whitespace":
        if text.empty:
            return "  ".join(text.columns), np.array([], dtype=object)
        cols = []
        for col in text.columns:
            longest = int(text[col].str.len().max()) if len(text) else 0
            width = max(len(col), longest) + 2
            cols.append((col.ljust(width), np.strings.ljust(text[col].to_numpy().astype(str), width)))
        header = "".join(h for h, _ in cols).rstrip()
        body = cols[0][1]
        for _, values in cols[1:]:
            body = np.strings.add(body, values)
        return header, np.strings.rstrip(body).astype(object)
    first, *rest = text.columns
    joined = text[first].to_numpy(dtype=object)
    for col in rest:
        joined = joined + delimiter + text[col].to_numpy(dtype=object)
    return delimiter.join(text.columns), joined


def _jsonl_lines(frame: pd.DataFrame) -> np.ndarray:
    """One compact JSON object per row; None becomes null."""
    if frame.empty:
        return np.array([], dtype=object)
    # Records are flat, and a '"' inside a string is always escaped, so '},{"' only ever occurs
    # between two records: splitting the array form is exact (and much faster than lines=True).
    text = frame.to_json(orient="records", force_ascii=False)
    parts = np.array(text[2:-2].split('},{"'), dtype=object)
    parts[1:] = '{"' + parts[1:]
    parts[0] = "{" + parts[0]
    return parts + "}"


# --------------------------------------------------------------------------- mess


def _pick(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Random row positions, each chosen with probability ``rate``."""
    return np.flatnonzero(rng.random(n) < rate) if n else np.array([], dtype=np.int64)


def _blank_values(canon: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """Missing values: null categories and product ids on a share of the rows that have them."""
    canon = canon.copy()
    for column, share in (("category", 1.0), ("product_id", 0.5)):
        if column in canon:
            has = np.flatnonzero(canon[column].notna().to_numpy())
            canon.loc[canon.index[has[_pick(rng, len(has), rate * share)]], column] = None
    return canon


def _outliers(orders: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """A few order totals typed in cents (×100)."""
    buys = np.flatnonzero((orders["event_type"] == "purchase").to_numpy())
    if rate <= 0 or len(buys) == 0:
        return orders
    n = max(1, round(len(buys) * rate / 10))
    orders = orders.copy()
    rows = orders.index[np.sort(rng.choice(buys, size=min(n, len(buys)), replace=False))]
    orders.loc[rows, "amount"] = orders.loc[rows, "amount"] * 100
    return orders


def _shout_emails(orders: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """Emails typed with odd capitalisation on a share of orders."""
    rows = orders.index[_pick(rng, len(orders), rate)]
    orders = orders.copy()
    orders.loc[rows, "pii:email"] = orders.loc[rows, "pii:email"].str.title()
    return orders


def _break_values(text: pd.DataFrame, name: str, cfg: ChannelConfig, rows: np.ndarray,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Non-numeric numbers (``n/a``, decimal commas) in a CSV's numeric column."""
    if name == "orders" and "amount" in cfg.columns:
        column = cfg.columns["amount"]
    elif cfg.timestamp.unit in ("s", "ms", "us"):
        column = cfg.columns["timestamp"]
    else:
        return text
    if len(rows) == 0:
        return text
    text = text.copy()
    idx = text.index[rows]
    values = text.loc[idx, column].to_numpy(dtype=object)
    comma = rng.random(len(idx)) < 0.5
    broken = np.where(comma, np.strings.replace(values.astype(str), ".", ",").astype(object), "n/a")
    broken = np.where(comma & (broken == values), np.strings.add(values.astype(str), "x").astype(object), broken)
    text.loc[idx, column] = broken
    return text


def _break_fields(lines: np.ndarray, rows: np.ndarray, delimiter: str, rng: np.random.Generator) -> np.ndarray:
    """Rows with one field too few or one too many."""
    lines = lines.copy()
    sep = "  " if delimiter == "whitespace" else delimiter
    for i in rows:  # a handful of rows
        line = str(lines[i])
        lines[i] = line.rsplit(sep, 1)[0] if rng.random() < 0.5 else f"{line}{sep}see{sep}notes"
    return lines


def _truncate(lines: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JSON lines cut off mid-object."""
    lines = lines.copy()
    for i in rows:  # a handful of rows
        line = str(lines[i])
        lines[i] = line[: int(rng.integers(5, max(6, len(line) - 2)))]
    return lines


@dataclass(frozen=True)
class _Drop:
    """Lines of one channel with their month (file) and order key within the file."""

    header: str | None
    lines: np.ndarray
    month: np.ndarray
    key: np.ndarray
    last_month: str  # month of the history's last day ("2026-10")


def _prepare(canon: pd.DataFrame, name: str, cfg: ChannelConfig, rate: float, tl: _Timeline,
             rng: np.random.Generator) -> _Drop:
    """Render a channel with its mess: malformed rows, re-delivered duplicates, re-exported orders."""
    if name in ("web", "app", "orders"):
        canon = _blank_values(canon, rate if name != "orders" else rate / 2, rng)
    if name == "orders":
        canon = _outliers(_shout_emails(canon, rate, rng), rate, rng)
    source = _render(canon, name, cfg)
    bad = _pick(rng, len(source), rate / 5)
    header: str | None = None
    if cfg.format == "jsonl":
        lines = _truncate(_jsonl_lines(source), bad, rng)
    else:
        text = _as_text(source)
        by_value = bad[rng.random(len(bad)) < 0.5] if name in ("app", "orders") else bad[:0]
        header, lines = _csv_lines(_break_values(text, name, cfg, by_value, rng), cfg.delimiter)
        lines = _break_fields(lines, np.setdiff1d(bad, by_value), cfg.delimiter, rng) if name != "crm" else lines
    month = canon["_ms"].to_numpy().astype("datetime64[ms]").astype("datetime64[M]")
    key = np.arange(len(lines), dtype=float)
    dup_rate = rate / 2 if name == "orders" else rate
    dup = _pick(rng, len(lines), dup_rate)
    lines = np.concatenate([lines, lines[dup]])
    key = np.concatenate([key, dup + rng.uniform(0.5, 300.0, len(dup))])
    month = np.concatenate([month, month[dup]])
    if name == "orders":
        months = np.unique(month)
        again = _pick(rng, len(canon), rate / 2)
        if len(months) > 1 and len(again):
            pos = np.searchsorted(months, month[again])
            target = months[np.where(pos + 1 < len(months), pos + 1, pos - 1)]
            lines = np.concatenate([lines, lines[again]])
            key = np.concatenate([key, -1.0 - rng.random(len(again))])
            month = np.concatenate([month, target])
    last = (tl.start + timedelta(days=tl.days - 1)).strftime("%Y-%m")
    return _Drop(header, lines, month, key, last)


# --------------------------------------------------------------------------- files


def _file_pattern(data_dir: Path, cfg: ChannelConfig) -> tuple[Path, str]:
    """Folder and file-name glob of a channel; the folder part may not contain wildcards."""
    rel = Path(cfg.path)
    if any(ch in str(rel.parent) for ch in "*?[") or "*" not in rel.name:
        raise ValueError(f"channel path {cfg.path!r}: need a fixed folder and a '*' in the file name")
    return data_dir / rel.parent, rel.name


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temp file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_channel(drop: _Drop, name: str, cfg: ChannelConfig, data_dir: Path, part: str = "") -> list[Path]:
    """One file per month; previous sample files of this channel that are not rewritten are removed.
    ``part`` (a population drawn in parts, persona/sample_scale.py): suffix of the file names, and the
    other parts' files are kept."""
    folder, pattern = _file_pattern(data_dir, cfg)
    prefix = _PREFIXES[name]
    order = np.lexsort((drop.key, drop.month))
    lines, months = drop.lines[order], drop.month[order]
    written: list[Path] = []
    # a channel without any rows still gets one (header-only) drop, so every glob matches a file
    for month in np.unique(months) if len(months) else [np.datetime64(drop.last_month, "M")]:
        label = str(month)  # "2026-07"
        path = folder / pattern.replace("*", f"{prefix}_{label}{part}", 1).replace("*", "")
        if not fnmatch.fnmatch(path.name, pattern):
            raise ValueError(f"channel path {cfg.path!r}: generated name {path.name!r} does not match")
        rows = lines[months == month].tolist()
        body = "\n".join(rows) + "\n" if rows else ""
        _atomic_write(path, (drop.header + "\n" if drop.header is not None else "") + body)
        written.append(path)
    stale = pattern.replace("*", f"{prefix}_*", 1)
    for old in [] if part else sorted(folder.glob(stale)):
        if old not in written and old.is_file():
            old.unlink()
    for tmp in folder.glob(f".{prefix}_*{part}.*.tmp"):  # a part's own leftovers (parts are written at once)
        tmp.unlink(missing_ok=True)
    return written


def _ground_truth(pop: _Population, ids: np.ndarray, tl: _Timeline) -> pd.DataFrame:
    """One row per user: persona at the end and start, switch day and signup date."""
    n = pop.n_users
    names = np.array(PERSONA_NAMES, dtype=object)
    start = np.datetime64(tl.start, "D")
    switch = np.where(pop.switch_day[:n] >= 0, (start + pop.switch_day[:n]).astype(str).astype(object), "")
    return pd.DataFrame(
        {
            "user_id": ids,
            "persona": names[pop.end[:n]],
            "persona_start": names[pop.start[:n]],
            "switch_day": switch,
            "signup_date": (start + pop.signup_day[:n]).astype(str),
        }
    )


# --------------------------------------------------------------------------- public API


def generate_sample_data(settings: Settings, *, users: int | None = None, days: int | None = None,
                         seed: int | None = None) -> SampleSummary:
    """Generate the sample history into the channel folders under ``settings.data_dir``."""
    sample = settings.sample
    n_users = sample.users if users is None else users
    n_days = sample.days if days is None else days
    seed = sample.seed if seed is None else seed
    if n_users <= 0 or n_days <= 0:
        raise ValueError("users and days must be positive")
    tl = _Timeline(sample.end_date - timedelta(days=n_days), n_days)
    currencies, fx, pop, ids, cat = _world(settings, n_users, n_days, seed)
    pop, frames = _channel_frames(settings, tl, currencies, fx, pop, ids, cat, seed)
    files, events_total, rows = _write_frames(settings, frames, tl, seed)
    truth = DataPaths(settings.data_dir).ground_truth
    _atomic_write(truth, _ground_truth(pop, ids, tl).to_csv(index=False, lineterminator="\n"))
    return SampleSummary(n_users, n_days, events_total, rows, files, truth)


def _channel_frames(settings: Settings, tl: _Timeline, currencies: list[str], fx: np.ndarray, pop: _Population,
                    ids: np.ndarray, cat: _Catalogue, seed: int,
                    activity: float = 1.0) -> tuple[_Population, dict[str, pd.DataFrame]]:
    """Canonical frames per channel drawn for ``pop`` (and the population, with its BTYD draws in
    ``btyd`` mode); ``activity`` multiplies every user's session rate."""
    if settings.sample.mode == "btyd":  # purchases and order values from a buy-till-you-die process
        from persona.sample_btyd import btyd_daily, btyd_population

        pop = btyd_population(pop, tl.days, seed)
        daily = btyd_daily(_daily(pop, tl), pop, seed)
    else:
        daily = _daily(pop, tl)
    if activity != 1.0:
        daily = replace(daily, session_rate=daily.session_rate * activity)
    sessions = _sessions(pop, daily, tl, _rng(seed, "sessions"))
    events = _events(sessions, pop, cat, tl, _rng(seed, "events"))
    web, app = _behaviour_frames(sessions, events, pop, cat, ids, _rng(seed, "ids"))
    orders = _orders(sessions, events, pop, daily, cat, ids, currencies, fx, tl, _rng(seed, "orders"))
    return pop, {
        "web": web.sort_values("_ms", kind="stable", ignore_index=True),
        "app": app.sort_values("_ms", kind="stable", ignore_index=True),
        "orders": orders,
        "social": _social(pop, daily, ids, tl, _rng(seed, "social")),
        "crm": _tickets(pop, daily, orders, ids, tl, _rng(seed, "crm")),
    }


def _write_frames(settings: Settings, frames: dict[str, pd.DataFrame], tl: _Timeline, seed: int,
                  part: str = "") -> tuple[dict[str, list[Path]], int, int]:
    """Render every configured channel with its mess and write its files; returns (files per channel,
    clean events, rows written)."""
    files: dict[str, list[Path]] = {}
    rows = events_total = 0
    for name, cfg in settings.channels.items():
        if name not in frames:
            continue  # a channel the generator does not know (real data only)
        drop = _prepare(frames[name], name, cfg, settings.sample.mess_rate, tl, _rng(seed, f"mess-{name}"))
        files[name] = _write_channel(drop, name, cfg, settings.data_dir, part)
        events_total += len(frames[name])
        rows += len(drop.lines)
    return files, events_total, rows


def _world(settings: Settings, n_users: int, n_days: int,
           seed: int) -> tuple[list[str], np.ndarray, _Population, list[str], _Catalogue]:
    """The simulated shop: currencies (base first) and their rates, the population with its hidden
    personas, user ids and the catalogue; the same for the history and for every replayed day."""
    categories = list(settings.features.categories)
    currencies = [settings.base_currency] + sorted(c for c in settings.fx_rates if c != settings.base_currency)
    fx = np.array([settings.fx_rates[c] for c in currencies])
    pop = _population(n_users, n_days, settings.sample.switch_share, categories, currencies, seed)
    return currencies, fx, pop, user_ids(n_users), _catalogue(categories, _rng(seed, "catalogue"))


def has_sample_data(settings: Settings) -> bool:
    """True when every channel the generator writes already has at least one file (channels it does
    not know, such as the API's event log, are not sample data)."""
    generated = [cfg for name, cfg in settings.channels.items() if name in _LAYOUTS]
    return bool(generated) and all(
        any(p.is_file() for p in settings.data_dir.glob(cfg.path)) for cfg in generated
    )


# --------------------------------------------------------------------------- replay (further days)

REPLAY_TAG = "replay"


@dataclass(frozen=True)
class Drift:
    """A shift injected into one replayed day: a campaign (more sessions), pricier baskets, an app push."""

    activity: float = 6.0  # sessions multiplier (a campaign day)
    price: float = 1.5  # order amounts multiplier
    app_share: float = 0.85  # least share of sessions in the app


@dataclass(frozen=True)
class ReplaySummary:
    """What :func:`replay_day` wrote for one further day."""

    day: date
    events: int
    rows_written: int
    files: dict[str, list[Path]]
    drift: bool


def _day_slice(daily: _Daily, d: int) -> _Daily:
    """The behaviour matrices of one day (column ``d``) of a longer history."""
    cols = slice(d, d + 1)
    return _Daily(daily.persona[:, cols], daily.base[:, cols], daily.decay[:, cols], daily.active[:, cols],
                  daily.session_rate[:, cols], daily.purchase_prob[:, cols], daily.sale[cols],
                  None if daily.purchases is None else daily.purchases[:, cols], daily.value_rate, daily.value_shape)


def _replay_ids(values: pd.Series, day: date) -> pd.Series:
    """Sequential ids (``O1000001``) made unique per replayed day (``O20261101-1000001``)."""
    return values.str[0] + f"{day:%Y%m%d}-" + values.str[1:]


def replay_day(settings: Settings, offset: int, *, drift: Drift | None = None, users: int | None = None,
               days: int | None = None, seed: int | None = None) -> ReplaySummary:
    """Write the events of day ``end_date + offset`` into the channel inboxes as new files.

    The same users with the same hidden personas as :func:`generate_sample_data` (same ``users``,
    ``days`` and ``seed``) carry on; ``drift`` injects a campaign-like shift on this day.
    Files are named ``<prefix>_replay_<day>``; writing a day again rewrites the same bytes.
    """
    sample = settings.sample
    n_users = sample.users if users is None else users
    n_days = sample.days if days is None else days
    seed = sample.seed if seed is None else seed
    if offset < 0:
        raise ValueError("offset must be >= 0 (0 is the first day after the history)")
    day = sample.end_date + timedelta(days=offset)
    currencies, fx, pop, ids, cat = _world(settings, n_users, n_days, seed)
    d = n_days + offset
    daily = _daily(pop, _Timeline(sample.end_date - timedelta(days=n_days), d + 1))
    if sample.mode == "btyd":  # the same customers' buy-till-you-die process, carried on to day d
        from persona.sample_btyd import btyd_daily, btyd_population

        pop = btyd_population(pop, n_days, seed)  # acquisition days as in the history
        daily = btyd_daily(daily, pop, seed)
    daily = _day_slice(daily, d)
    pop = replace(pop, drift_day=pop.drift_day - d)
    if drift is not None:
        daily = replace(daily, session_rate=daily.session_rate * drift.activity)
        pop = replace(pop, app_share=np.where(pop.registered, np.maximum(pop.app_share, drift.app_share), 0.0))
    tl = _Timeline(day, 1)

    def rng(name: str) -> np.random.Generator:
        return _rng(seed, f"{REPLAY_TAG}-{day.isoformat()}-{name}")

    sessions = _sessions(pop, daily, tl, rng("sessions"))
    events = _events(sessions, pop, cat, tl, rng("events"))
    web, app = _behaviour_frames(sessions, events, pop, cat, ids, rng("ids"))
    orders = _orders(sessions, events, pop, daily, cat, ids, currencies, fx, tl, rng("orders"))
    orders = orders.assign(event_id=_replay_ids(orders["event_id"], day))
    if drift is not None:
        orders = orders.assign(amount=np.round(orders["amount"] * drift.price, 2))
    tickets = _tickets(pop, daily, orders, ids, tl, rng("crm"))
    frames = {
        "web": web.sort_values("_ms", kind="stable", ignore_index=True),
        "app": app.sort_values("_ms", kind="stable", ignore_index=True),
        "orders": orders,
        "social": _social(pop, daily, ids, tl, rng("social")),
        "crm": tickets.assign(event_id=_replay_ids(tickets["event_id"], day)),
    }
    files: dict[str, list[Path]] = {}
    rows = events_total = 0
    for name, cfg in settings.channels.items():
        if name not in frames:
            continue
        drop = _prepare(frames[name], name, cfg, sample.mess_rate, tl, rng(f"mess-{name}"))
        folder, pattern = _file_pattern(settings.data_dir, cfg)
        path = folder / pattern.replace("*", f"{_PREFIXES[name]}_{REPLAY_TAG}_{day.isoformat()}", 1).replace("*", "")
        lines = drop.lines[np.argsort(drop.key, kind="stable")].tolist()
        body = "\n".join(lines) + "\n" if lines else ""
        _atomic_write(path, (drop.header + "\n" if drop.header is not None else "") + body)
        files[name] = [path]
        events_total += len(frames[name])
        rows += len(drop.lines)
    return ReplaySummary(day, events_total, rows, files, drift is not None)


def replayed_days(settings: Settings) -> list[date]:
    """Days already replayed into the inbox (from the file names), oldest first."""
    found: set[date] = set()
    for name, cfg in settings.channels.items():
        if name not in _PREFIXES:
            continue
        folder, _ = _file_pattern(settings.data_dir, cfg)
        for path in folder.glob(f"{_PREFIXES[name]}_{REPLAY_TAG}_*"):
            stamp = path.name[len(f"{_PREFIXES[name]}_{REPLAY_TAG}_"):][:10]
            try:
                found.add(date.fromisoformat(stamp))
            except ValueError:
                continue
    return sorted(found)


def next_replay_offset(settings: Settings) -> int:
    """The offset of the first day not replayed yet (0 = the day after the sample history)."""
    done = replayed_days(settings)
    return (done[-1] - settings.sample.end_date).days + 1 if done else 0
