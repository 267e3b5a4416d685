"""The BTYD likelihoods' analytic gradients (training/btyd.py) equal finite differences of the likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from training.btyd import _bgnbd_nll, _bgnbd_nll_grad, _gg_nll, _gg_nll_grad, fit_bgnbd


def _customers(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 200, n).astype(float)
    x = rng.poisson(rng.gamma(0.7, 1 / 15, n) * T * rng.beta(1, 3, n)).astype(float)
    t_x = np.where(x > 0, np.floor(rng.random(n) * T), 0.0)
    m = np.where(x > 0, rng.gamma(4, 15, n), 0.0)
    return x, t_x, T, m


@pytest.mark.parametrize("point", [[0.0, 2.3, 0.7, 0.7], [-1.5, 1.0, 3.0, 4.5], [0.8, 4.0, -0.5, 1.2]])
def test_bgnbd_gradient_equals_finite_differences(point: list[float]) -> None:
    x, t_x, T, _ = _customers()
    at = np.asarray(point)
    value, grad = _bgnbd_nll_grad(at, x, t_x, T)
    assert value == pytest.approx(_bgnbd_nll(at, x, t_x, T))
    numeric = approx_fprime(at, _bgnbd_nll, 1e-6, x, t_x, T)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-3 * np.abs(numeric).max())


@pytest.mark.parametrize("point", [[0.0, 0.7, 2.3], [1.7, 1.7, 3.9], [-0.5, 2.5, 6.0]])
def test_gamma_gamma_gradient_equals_finite_differences(point: list[float]) -> None:
    x, _, _, m = _customers()
    keep = (x > 0) & (m > 0)
    at = np.asarray(point)
    _, grad = _gg_nll_grad(at, x[keep], m[keep])
    numeric = approx_fprime(at, _gg_nll, 1e-6, x[keep], m[keep])
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-3 * np.abs(numeric).max())


def test_fit_reaches_the_likelihood_maximum() -> None:
    """No direction from the fitted parameters raises the likelihood (the optimum, not a stopped search)."""
    x, t_x, T, _ = _customers(20000, seed=1)
    fit = fit_bgnbd(x, t_x, T)
    at = np.log([fit.r, fit.alpha, fit.a, fit.b])
    best = _bgnbd_nll(at, x, t_x, T)
    for step in np.eye(4) * 1e-2:
        assert _bgnbd_nll(at + step, x, t_x, T) >= best - 1e-6 * abs(best)
        assert _bgnbd_nll(at - step, x, t_x, T) >= best - 1e-6 * abs(best)
