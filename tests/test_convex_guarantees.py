"""Tests that the guarantees of mu_lib.convex hold across their parameter range (issue 9).

* Exact Gaussian calibration: over a grid of eps in [0.01, 50] and delta in [1e-8, 1e-2], the
  exact delta (Balle and Wang 2018, evaluated in 50-digit arithmetic with mpmath, an independent
  reference) of every budget or noise that ``removal_budget``, ``sekhari_noise`` and ``d2d_sigma``
  return is at most the requested delta and at least 0.99 of it.
* Descent-to-Delete batches are never published with less noise than the deletions require.
* Newton removal with quantities cached at training time (the spectral norm, the Cholesky
  factorisation) gives the same step as the direct computation and a bound that still holds.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from mu_lib import convex as cx

mpmath.mp.dps = 50

EPS_GRID = np.geomspace(0.01, 50, 12)
DELTA_GRID = np.geomspace(1e-8, 1e-2, 7)


def exact_delta(eps: float, sensitivity: float, sigma: float) -> float:
    """Phi(D/(2s) - e s/D) - e^e Phi(-D/(2s) - e s/D), in 50 digits."""
    D, s, e = mpmath.mpf(sensitivity), mpmath.mpf(sigma), mpmath.mpf(eps)
    return float(mpmath.ncdf(D / (2 * s) - e * s / D) - mpmath.exp(e) * mpmath.ncdf(-D / (2 * s) - e * s / D))


def _assert_tight(got: float, delta: float) -> None:
    assert got <= delta
    assert got >= 0.99 * delta


@pytest.mark.parametrize("eps", EPS_GRID)
def test_removal_budget_is_exact_on_the_grid(eps):
    for delta in DELTA_GRID:
        sigma = 3.7
        budget = cx.removal_budget(sigma=sigma, eps=eps, delta=delta)
        _assert_tight(exact_delta(eps, budget, sigma), delta)


@pytest.mark.parametrize("eps", EPS_GRID)
def test_sekhari_and_d2d_noise_are_exact_on_the_grid(eps):
    for delta in DELTA_GRID:
        gamma, sigma = cx.sekhari_noise(m=3, n=500, lam=0.05, eps=eps, delta=delta)
        _assert_tight(exact_delta(eps, gamma, sigma), delta)
        kw = dict(T=20, n=800, eps=eps, delta=delta, lipschitz=1.5, strong_convexity=0.05, smoothness=0.3)
        sens = cx.d2d_sensitivity(T=20, n=800, lipschitz=1.5, strong_convexity=0.05, smoothness=0.3)
        _assert_tight(exact_delta(eps, sens, cx.d2d_sigma(**kw)), delta)


def test_gaussian_delta_matches_the_50_digit_reference():
    for eps in (0.01, 1.0, 10.0, 50.0):
        for ratio in (1e-3, 0.1, 1.0, 5.0, 30.0):
            ref = exact_delta(eps, ratio, 1.0)
            assert cx.gaussian_delta(ratio=ratio, eps=eps) == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_what_the_exact_rule_buys_and_where_the_classic_one_fails():
    # more budget (less noise) for eps <= 1: at least 1.2 times, most at small eps and large delta
    ratio = {(e, d): cx.removal_budget(sigma=1.0, eps=e, delta=d)
             / cx.removal_budget(sigma=1.0, eps=e, delta=d, calibration="classic")
             for e in (0.01, 0.1, 0.5, 1.0) for d in (1e-8, 1e-5, 1e-2)}
    assert min(ratio.values()) > 1.2
    assert 1.3 < ratio[(1.0, 1e-5)] < ratio[(0.1, 1e-5)] < 1.6 < ratio[(0.01, 1e-2)]
    # the classic rule of Guo et al. is not valid at large eps: eps = 10, delta = 1e-4 gives 2.2e-4
    classic = cx.removal_budget(sigma=1.0, eps=10.0, delta=1e-4, calibration="classic")
    assert exact_delta(10.0, classic, 1.0) == pytest.approx(2.25e-4, rel=0.01)
    # noise: the exact rule never adds more than the classic ones
    for e in (0.1, 1.0, 5.0):
        assert cx.sekhari_noise(m=1, n=100, lam=0.1, eps=e, delta=1e-5)[1] < \
            cx.sekhari_noise(m=1, n=100, lam=0.1, eps=e, delta=1e-5, calibration="classic")[1]
        kw = dict(T=10, n=500, eps=e, delta=1e-6, lipschitz=2.0, strong_convexity=0.1, smoothness=0.35)
        assert cx.d2d_sigma(**kw) < cx.d2d_sigma(**kw, calibration="classic")


def test_calibration_validation():
    with pytest.raises(ValueError, match="calibration"):
        cx.removal_budget(sigma=1.0, eps=1.0, delta=1e-5, calibration="tight")
    with pytest.raises(ValueError, match="delta"):
        cx.gaussian_ratio(eps=1.0, delta=0.0)
    with pytest.raises(ValueError, match="eps"):
        cx.gaussian_ratio(eps=-1.0, delta=1e-5)
    with pytest.raises(ValueError, match="ratio"):
        cx.gaussian_delta(ratio=-1.0, eps=1.0)


# ----------------------------------------------------------------------------------------------
# Descent-to-Delete batches


def _data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = cx.normalize_rows(rng.normal(size=(n, d)))
    return X, np.where(X @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)


def test_d2d_batch_is_never_published_with_less_noise_than_its_deletions_require():
    X, y = _data(300, 5, seed=1)
    kw = dict(lam=0.05, eps=1.0, delta=1e-5, steps_per_update=15)
    batch = cx.DescentToDelete(X, y, **kw, seed=2)
    one_by_one = cx.DescentToDelete(X, y, **kw, seed=2)
    for request in ([4, 9, 60, 61], [100], list(range(200, 220))):
        batch.remove(request)
        for point in request:
            one_by_one.remove(point)
        np.testing.assert_array_equal(batch.secret, one_by_one.secret)  # m sequential deletions
        # the noise of the last of the m sequential deletions, at the final dataset size
        required = cx.d2d_sigma(T=15, n=batch.n, eps=1.0, delta=1e-5, lipschitz=batch.lipschitz,
                                strong_convexity=0.05, smoothness=0.3)
        assert batch.sigma >= required
        assert batch.sigma == one_by_one.sigma
    # one update of m deletions with T steps would need m times the noise
    for m in (1, 2, 7):
        assert cx.d2d_sigma(T=15, n=280, eps=1.0, delta=1e-5, lipschitz=2.0, strong_convexity=0.05,
                            smoothness=0.3, m=m) == pytest.approx(
            m * cx.d2d_sigma(T=15, n=280, eps=1.0, delta=1e-5, lipschitz=2.0, strong_convexity=0.05,
                             smoothness=0.3), rel=1e-12)


def test_d2d_secret_iterate_stays_in_the_steady_state_after_batches():
    """After every request the secret iterate is within 2 L gamma^T / (mu n (1 - gamma^T)) of the
    minimiser on the remaining data: the invariant that the noise of one deletion relies on."""
    X, y = _data(400, 4, seed=3)
    lam, T = 0.05, 10
    dd = cx.DescentToDelete(X, y, lam=lam, eps=1.0, delta=1e-5, steps_per_update=T, seed=0)
    rng = np.random.default_rng(4)
    for size in (1, 5, 20, 40):
        dd.remove(rng.choice(dd.ids, size=size, replace=False))
        optimum = cx.fit_logistic(dd.X, dd.y, lam=lam)
        steady = cx.d2d_sensitivity(T=T, n=dd.n, lipschitz=dd.lipschitz, strong_convexity=lam,
                                    smoothness=0.25 + lam) / 2
        assert np.linalg.norm(dd.secret - optimum) <= steady


# ----------------------------------------------------------------------------------------------
# Newton removal with cached quantities


def test_cached_spectral_norm_and_factorisation_give_the_same_step():
    from scipy.linalg import cho_factor
    X, y = _data(1000, 30, seed=5)
    lam = 1e-3
    w = cx.fit_logistic(X, y, lam=lam)
    H = cx.hessian(w, X, y, lam=lam)
    F = cho_factor(H)
    norm = cx.spectral_norm(X)
    for remove in ([17], [3, 400, 999], list(range(100, 150))):
        direct = cx.newton_remove(w, X, y, remove, lam=lam)
        cached = cx.newton_remove(w, X, y, remove, lam=lam, hessian=H, factor=F, spectral_norm=norm)
        np.testing.assert_allclose(cached.step, direct.step, rtol=1e-10, atol=1e-14)
        assert cached.solve_residual <= 1e-12 * np.linalg.norm(direct.step) * np.linalg.norm(H, 2)
        keep = np.setdiff1d(np.arange(1000), remove)
        assert cached.spectral_norm == norm >= cx.spectral_norm(X[keep])  # a valid upper bound
        residual = cx.gradient_residual(cached.w, X[keep], y[keep], lam=lam)
        assert residual <= cached.bound <= cached.worst_case_bound
        assert cached.data_dependent_bound >= direct.data_dependent_bound * (1 - 1e-9)


def test_session_reuses_its_factorisation_and_matches_refactorising_every_step(monkeypatch):
    X, y = _data(600, 12, seed=6)
    kw = dict(lam=1e-3, sigma=1.0, eps=1.0, delta=1e-4, seed=0, retrain=False)
    order = np.random.default_rng(7).permutation(600)[:40]
    reuse = cx.CertifiedRemover(X, y, **kw)
    for i in order:
        reuse.remove(int(i))
        assert reuse.residual() <= reuse.beta
    assert reuse.factorisations < 10  # far fewer than the 40 removals
    monkeypatch.setattr(cx.CertifiedRemover, "_REFINE_ITERATIONS", 0)  # refactorise at every step
    fresh = cx.CertifiedRemover(X, y, **kw)
    for i in order:
        fresh.remove(int(i))
    assert fresh.factorisations == 41
    np.testing.assert_allclose(reuse.w, fresh.w, rtol=1e-9, atol=1e-12)
    assert reuse.beta == pytest.approx(fresh.beta, rel=1e-6)


def test_newton_remove_cache_validation():
    X, y = _data(50, 3, seed=8)
    w = cx.fit_logistic(X, y, lam=0.1)
    from scipy.linalg import cho_factor
    with pytest.raises(ValueError, match="factor"):
        cx.newton_remove(w, X, y, 1, lam=0.1, factor=cho_factor(np.eye(3)))
    with pytest.raises(ValueError, match="spectral_norm"):
        cx.newton_remove(w, X, y, 1, lam=0.1, spectral_norm=-1.0)
    assert math.isfinite(cx.newton_remove(w, X, y, 1, lam=0.1, spectral_norm=5.0).bound)
