"""Buy-till-you-die baselines: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma spend, by maximum likelihood.

Written on scipy because the maintained package (pymc-marketing) brings PyMC and PyTensor (a C compiler at
run time and hundreds of MB) and ``lifetimes`` is unmaintained since 2020. Time is measured in days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1


@dataclass(frozen=True)
class BgNbd:
    """Fitted BG/NBD parameters (purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b))."""

    r: float
    alpha: float
    a: float
    b: float

    def _p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        ratio = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x)))
        odds = np.where(x > 0, self.a / (self.b + np.maximum(x, 1) - 1) * ratio, 0.0)
        return 1.0 / (1.0 + odds)

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[purchases in the next ``t`` days | x repeat purchases, last at t_x, observed for T days]."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        tail = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        alive_odds = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return np.nan_to_num(head * tail / (1 + alive_odds), nan=0.0, posinf=0.0)

    def prob_no_purchase(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(no purchase in the next ``t`` days): dead, or alive with no purchase (dropout within t ignored)."""
        alive = self._p_alive(x, t_x, T)
        none_if_alive = ((self.alpha + T) / (self.alpha + T + t)) ** (self.r + x)
        return 1 - alive * (1 - none_if_alive)


def _bgnbd_nll(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> float:
    return _bgnbd_nll_grad(log_params, x, t_x, T)[0]


def _bgnbd_nll_grad(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray,
                    T: np.ndarray) -> tuple[float, np.ndarray]:
    """BG/NBD negative log-likelihood and its gradient in the log parameters (analytic: a numerical
    gradient cost five likelihoods per step, a third of a million-user training run's BTYD time)."""
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    log_at, log_atx = np.log(alpha + T), np.log(alpha + t_x)
    repeat = x > 0
    b_x = b + np.maximum(x, 1) - 1
    a3 = -(r + x) * log_at
    a4 = np.where(repeat, np.log(a) - np.log(b_x) - (r + x) * log_atx, -np.inf)
    mix = np.logaddexp(a3, a4)
    w3, w4 = np.exp(a3 - mix), np.exp(a4 - mix)  # each term's share of the mixture
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * log_at - w4 * log_atx
    d_alpha = r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x))
    d_a = digamma(a + b) - digamma(a + b + x) + w4 / a
    d_b = digamma(b + x) - digamma(a + b + x) - digamma(b) + digamma(a + b) - w4 / b_x
    grad = np.array([d_r.sum() * r, d_alpha.sum() * alpha, d_a.sum() * a, d_b.sum() * b])
    return -float(np.sum(a1 + a2 + mix)), -grad


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BgNbd:
    """Maximum-likelihood BG/NBD on repeat purchases ``x``, recency ``t_x`` and age ``T`` (days)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    res = minimize(_bgnbd_nll_grad, np.log([1.0, 10.0, 2.0, 2.0]), args=(x, t_x, T), method="L-BFGS-B", jac=True,
                   bounds=[(-8, 8), (-8, 10), (-8, 8), (-8, 8)])
    r, alpha, a, b = np.exp(res.x)
    return BgNbd(r=r, alpha=alpha, a=max(a, 1.0 + 1e-6), b=b)


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend model (value per purchase day)."""

    p: float
    q: float
    v: float

    def expected_value(self, x: np.ndarray, mean_value: np.ndarray) -> np.ndarray:
        """E[value per purchase | x repeat purchases with mean value]; population mean when x == 0."""
        pop = self.p * self.v / (self.q - 1)
        cond = self.p * (self.v + x * mean_value) / (self.p * x + self.q - 1)
        return np.where(x > 0, cond, pop)


def _gg_nll(log_params: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
    return _gg_nll_grad(log_params, x, m)[0]


def _gg_nll_grad(log_params: np.ndarray, x: np.ndarray, m: np.ndarray) -> tuple[float, np.ndarray]:
    """Gamma-Gamma negative log-likelihood and its gradient in the log parameters (analytic)."""
    p, q, v = np.exp(log_params)
    px, log_xmv = p * x, np.log(x * m + v)
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m)
          + px * np.log(x) - (px + q) * log_xmv)
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - log_xmv)
    d_q = digamma(px + q) - digamma(q) + np.log(v) - log_xmv
    d_v = q / v - (px + q) / (x * m + v)
    return -float(np.sum(ll)), -np.array([d_p.sum() * p, d_q.sum() * q, d_v.sum() * v])


def fit_gamma_gamma(x: np.ndarray, mean_value: np.ndarray) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on users with repeat purchases (x > 0, mean value > 0)."""
    x, m = np.asarray(x, dtype=float), np.asarray(mean_value, dtype=float)
    keep = (x > 0) & (m > 0)
    res = minimize(_gg_nll_grad, np.log([1.0, 2.0, 10.0]), args=(x[keep], m[keep]), method="L-BFGS-B", jac=True,
                   bounds=[(-8, 8), (-8, 8), (-8, 12)])
    p, q, v = np.exp(res.x)
    return GammaGamma(p=p, q=max(q, 1.0 + 1e-6), v=v)
