"""Tests of mu_lib.convex: certified removal (Guo et al.), Sekhari et al., Descent-to-Delete.

References: retraining from scratch, closed forms, scipy's optimiser on the mean-form objective,
a power iteration and the exact Gaussian-mechanism delta (Balle and Wang 2018).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import norm

from mu_lib import convex as cx


def make_data(n: int, d: int, seed: int = 0, *, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Rows with ||x|| = 1 and labels in {-1, +1} from a noisy linear teacher."""
    rng = np.random.default_rng(seed)
    X = cx.normalize_rows(rng.normal(size=(n, d)))
    y = np.where(X @ rng.normal(size=d) + noise * rng.normal(size=n) > 0, 1.0, -1.0)
    return X, y


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lam", [1e-4, 1e-3, 1e-1])
@pytest.mark.parametrize("sigma", [0.0, 10.0])
def test_fit_logistic_reaches_gradient_tolerance(lam, sigma):
    X, y = make_data(500, 20, seed=1)
    b = sigma * np.random.default_rng(2).standard_normal(20)
    w = cx.fit_logistic(X, y, lam=lam, b=b)
    assert cx.gradient_residual(w, X, y, lam=lam, b=b) < 1e-10


def test_fit_ridge_is_the_minimiser():
    X, y = make_data(300, 8, seed=3)
    b = np.random.default_rng(4).normal(size=8)
    w = cx.fit_ridge(X, y, lam=0.05, b=b)
    assert cx.gradient_residual(w, X, y, lam=0.05, loss="squared", b=b) < 1e-10
    # scikit-learn-free closed-form check: (X^T X + lam n I) w = X^T y - b
    np.testing.assert_allclose((X.T @ X + 0.05 * 300 * np.eye(8)) @ w, X.T @ y - b, atol=1e-10)


def test_gradient_and_hessian_match_finite_differences():
    X, y = make_data(50, 4, seed=5)
    b = np.array([0.3, -0.2, 0.1, 0.0])
    w = np.array([0.5, -1.0, 0.2, 0.7])
    h = 1e-6
    eye = np.eye(4)
    num_grad = np.array([(cx.objective(w + h * e, X, y, lam=0.1, b=b) - cx.objective(w - h * e, X, y, lam=0.1, b=b))
                         / (2 * h) for e in eye])
    np.testing.assert_allclose(cx.gradient(w, X, y, lam=0.1, b=b), num_grad, atol=1e-6)
    num_hess = np.array([(cx.gradient(w + h * e, X, y, lam=0.1) - cx.gradient(w - h * e, X, y, lam=0.1)) / (2 * h)
                         for e in eye])
    np.testing.assert_allclose(cx.hessian(w, X, y, lam=0.1), num_hess, atol=1e-6)


def test_mean_form_with_b_over_n_has_the_same_minimiser():
    """Guo et al.'s code minimises mean loss + (lam/2)||w||^2 + b^T w / n: the same w* as the sum form."""
    X, y = make_data(400, 6, seed=6)
    lam, n = 1e-2, 400
    b = 3.0 * np.random.default_rng(7).standard_normal(6)

    def f(w):
        return np.mean(np.logaddexp(0, -y * (X @ w))) + lam / 2 * w @ w + b @ w / n

    def g(w):
        return X.T @ (-y * expit(-y * (X @ w))) / n + lam * w + b / n

    def h(w):
        s = expit(y * (X @ w))
        return X.T @ ((s * (1 - s))[:, None] * X) / n + lam * np.eye(6)

    w_sum = cx.fit_logistic(X, y, lam=lam, b=b)
    assert np.linalg.norm(g(w_sum)) < 1e-12
    w_mean = minimize(f, np.zeros(6), jac=g, hess=h, method="trust-exact", options={"gtol": 1e-14}).x
    np.testing.assert_allclose(w_mean, w_sum, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# Guo et al.: Newton removal
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("remove", [7, [3, 11, 42, 99, 250]])
def test_ridge_newton_removal_equals_retraining(remove):
    X, y = make_data(300, 10, seed=8)
    y = y + 0.3 * np.random.default_rng(9).normal(size=300)  # real targets for ridge
    b = 2.0 * np.random.default_rng(10).standard_normal(10)
    lam = 1e-2
    w = cx.fit_ridge(X, y, lam=lam, b=b)
    keep = np.setdiff1d(np.arange(300), remove)
    retrained = cx.fit_ridge(X[keep], y[keep], lam=lam, b=b)
    res = cx.newton_remove(w, X, y, remove, lam=lam, loss="squared", b=b)
    np.testing.assert_allclose(res.w, retrained, atol=1e-10, rtol=0)
    assert res.data_dependent_bound == 0.0 and res.worst_case_bound == 0.0
    cached = cx.newton_remove(w, X, y, remove, lam=lam, loss="squared", b=b,
                              hessian=cx.hessian(w, X, y, lam=lam, loss="squared"), gram=X.T @ X)
    np.testing.assert_allclose(cached.w, retrained, atol=1e-10, rtol=0)


@pytest.mark.parametrize("m", [1, 10, 100])
def test_logistic_residual_below_data_dependent_below_worst_case(m):
    X, y = make_data(2000, 10, seed=11)
    lam = 1e-3
    w = cx.fit_logistic(X, y, lam=lam)
    remove = np.random.default_rng(12).choice(2000, size=m, replace=False)
    res = cx.newton_remove(w, X, y, remove, lam=lam)
    keep = np.setdiff1d(np.arange(2000), remove)
    residual = cx.gradient_residual(res.w, X[keep], y[keep], lam=lam)
    assert 0 < residual <= res.data_dependent_bound <= res.worst_case_bound
    assert res.worst_case_bound == pytest.approx(4 * 0.25 * m**2 / (lam**2 * (2000 - m)), rel=1e-12)
    # The Newton step moves towards retraining: far closer than the original weights.
    retrained = cx.fit_logistic(X[keep], y[keep], lam=lam)
    assert np.linalg.norm(res.w - retrained) < 0.05 * np.linalg.norm(w - retrained)


def test_cached_hessian_and_gram_agree_with_direct_computation():
    X, y = make_data(600, 12, seed=13)
    lam = 1e-2
    b = np.random.default_rng(14).standard_normal(12)
    w = cx.fit_logistic(X, y, lam=lam, b=b)
    remove = [5, 17, 300]
    direct = cx.newton_remove(w, X, y, remove, lam=lam, b=b)
    cached = cx.newton_remove(w, X, y, remove, lam=lam, b=b, hessian=cx.hessian(w, X, y, lam=lam), gram=X.T @ X)
    np.testing.assert_allclose(cached.w, direct.w, rtol=1e-12, atol=1e-14)
    assert cached.data_dependent_bound == pytest.approx(direct.data_dependent_bound, rel=1e-12)
    keep = np.setdiff1d(np.arange(600), remove)
    np.testing.assert_allclose(cached.gram, X[keep].T @ X[keep], rtol=1e-12, atol=1e-12)


def test_worst_case_bound_with_perturbation_still_bounds_the_residual():
    X, y = make_data(500, 8, seed=15)
    lam = 1e-2
    b = 10.0 * np.random.default_rng(16).standard_normal(8)
    w = cx.fit_logistic(X, y, lam=lam, b=b)
    res = cx.newton_remove(w, X, y, [1, 2, 3], lam=lam, b=b)
    keep = np.setdiff1d(np.arange(500), [1, 2, 3])
    residual = cx.gradient_residual(res.w, X[keep], y[keep], lam=lam, b=b)
    assert residual <= res.data_dependent_bound <= res.worst_case_bound
    assert res.worst_case_bound > cx.worst_case_bound(n=500, m=3, lam=lam)  # the ||b||/n term


def test_sequential_removals_stay_within_accumulated_bound():
    X, y = make_data(800, 10, seed=17)
    rm = cx.CertifiedRemover(X, y, lam=1e-3, sigma=1.0, eps=1.0, delta=1e-4, seed=0, retrain=False)
    beta0 = rm.beta
    assert beta0 < 1e-10  # the fit's residual is charged to beta
    order = np.random.default_rng(18).permutation(800)[:20]
    for i in order:
        step = rm.remove(int(i))
        assert not step.retrained
        assert rm.residual() <= rm.beta
    assert rm.beta == pytest.approx(beta0 + sum(s.bound for s in rm.history), rel=1e-12)
    assert sorted(set(range(800)) - set(rm.ids.tolist())) == sorted(order.tolist())
    retrained = cx.fit_logistic(rm.X, rm.y, lam=1e-3, b=rm.b)
    assert np.linalg.norm(rm.w - retrained) < 1e-3 * np.linalg.norm(retrained)


def test_budget_arithmetic():
    assert cx.gaussian_c(1e-4) == pytest.approx(4.3854, abs=5e-5)
    assert cx.removal_budget(sigma=10, eps=1, delta=1e-4, calibration="classic") == pytest.approx(2.2803, abs=5e-5)
    assert cx.removal_budget(sigma=5, eps=2, delta=1e-4, calibration="classic") == pytest.approx(2.2803, abs=5e-5)


def test_retrain_exactly_when_beta_exceeds_budget_and_b_is_resampled():
    X, y = make_data(400, 8, seed=19)
    lam, sigma, seed = 1e-2, 0.05, 7
    rm = cx.CertifiedRemover(X, y, lam=lam, sigma=sigma, eps=1.0, delta=1e-4, seed=seed)
    draws = np.random.default_rng(seed)
    expected_b = sigma * draws.standard_normal(8)
    np.testing.assert_array_equal(rm.b, expected_b)
    since_fit = 0
    for i in np.random.default_rng(20).permutation(400)[:60]:
        beta_before, b_before = rm.beta, rm.b.copy()
        step = rm.remove(int(i))
        assert step.retrained == (beta_before + step.bound > rm.budget)
        if step.retrained:
            expected_b = sigma * draws.standard_normal(8)
            np.testing.assert_array_equal(rm.b, expected_b)
            assert not np.array_equal(rm.b, b_before)
            assert rm.beta < 1e-10
            assert rm.removals_before_retrain[-1] == since_fit
            since_fit = 0
            np.testing.assert_allclose(rm.w, cx.fit_logistic(rm.X, rm.y, lam=lam, b=rm.b), atol=1e-12)
        else:
            np.testing.assert_array_equal(rm.b, b_before)
            assert rm.beta == pytest.approx(beta_before + step.bound, rel=1e-14)
            since_fit += 1
        assert rm.certified and rm.beta <= rm.budget
    assert rm.retrains >= 2 and len(rm.removals_before_retrain) == rm.retrains
    assert rm.n == 340


def test_remover_rejects_unknown_or_removed_ids():
    X, y = make_data(100, 4, seed=21)
    rm = cx.CertifiedRemover(X, y, lam=0.1, sigma=1.0, eps=1.0, delta=1e-4)
    rm.remove([3, 4])
    with pytest.raises(ValueError, match=r"\[3\]"):
        rm.remove(3)
    with pytest.raises(ValueError, match="100"):
        rm.remove(100)
    with pytest.raises(ValueError, match=r"duplicated ids.*\[7\]"):
        rm.remove([7, 7])
    assert rm.n == 98 and rm.history[0].ids.tolist() == [3, 4]


def test_gamma_constant_of_the_logistic_loss():
    z = np.linspace(-20, 20, 2_000_001)
    s = expit(z)
    third = np.abs(s * (1 - s) * (1 - 2 * s))
    assert third.max() == pytest.approx(1 / (6 * math.sqrt(3)), rel=1e-9)
    assert cx.LOGISTIC_THIRD_DERIVATIVE_MAX == pytest.approx(third.max(), rel=1e-9)
    assert third.max() <= cx.GAMMA["logistic"] == 0.25
    # l'' is GAMMA-Lipschitz on the grid
    second = s * (1 - s)
    assert np.max(np.abs(np.diff(second)) / np.diff(z)) <= cx.GAMMA["logistic"]


def test_spectral_norm_is_exact_and_above_power_iteration():
    X, _ = make_data(700, 30, seed=22)
    G = X.T @ X
    v = np.random.default_rng(23).normal(size=30)
    for _ in range(20):  # the 20 power iterations of Guo et al.'s code
        v = G @ v
        v /= np.linalg.norm(v)
    power = math.sqrt(v @ G @ v)
    exact = cx.spectral_norm(X)
    assert exact >= power
    assert exact == pytest.approx(np.linalg.norm(X, 2), rel=1e-12)
    assert exact == pytest.approx(np.linalg.svd(X, compute_uv=False)[0], rel=1e-12)


# ----------------------------------------------------------------------------------------------
# Sekhari et al.
# ----------------------------------------------------------------------------------------------

def test_sekhari_hessian_downdate_equals_direct_recomputation():
    X, y = make_data(500, 9, seed=24)
    st = cx.sekhari_fit(X, y, lam=0.05)
    U = np.arange(0, 500, 7)
    keep = np.setdiff1d(np.arange(500), U)
    direct = cx.hessian(st.w, X[keep], y[keep], lam=0.05) / len(keep)  # mean form on S \ U
    np.testing.assert_allclose(cx.sekhari_downdate(st, X[U], y[U]), direct, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.hessian, cx.hessian(st.w, X, y, lam=0.05) / 500, rtol=1e-12)


@pytest.mark.parametrize("m", [1, 10, 50, 200])
def test_sekhari_newton_error_within_gamma(m):
    X, y = make_data(4000, 10, seed=25)
    lam = 0.05
    st = cx.sekhari_fit(X, y, lam=lam)
    U = np.random.default_rng(26).choice(4000, size=m, replace=False)
    keep = np.setdiff1d(np.arange(4000), U)
    res = cx.sekhari_unlearn(st, X[U], y[U], eps=1.0, delta=1e-5, M=cx.LOGISTIC_THIRD_DERIVATIVE_MAX, L=2.0)
    retrained = cx.fit_logistic(X[keep], y[keep], lam=lam)
    assert np.linalg.norm(res.w_bar - retrained) <= 2 * cx.LOGISTIC_THIRD_DERIVATIVE_MAX * m**2 * 4 / (lam**3 * 4000**2)
    assert res.gamma == pytest.approx(2 * cx.LOGISTIC_THIRD_DERIVATIVE_MAX * m**2 * 4 / (lam**3 * 4000**2), rel=1e-12)
    # Algorithm 1's step is the batch Newton step of the sum form.
    np.testing.assert_allclose(res.w_bar, cx.newton_remove(st.w, X, y, U, lam=lam).w, rtol=1e-10, atol=1e-12)


def test_sekhari_quadratic_loss_is_exact_and_noiseless():
    X, y = make_data(300, 6, seed=27)
    y = y + 0.2 * np.random.default_rng(28).normal(size=300)
    st = cx.sekhari_fit(X, y, lam=0.02, loss="squared")
    U = np.arange(20)
    res = cx.sekhari_unlearn(st, X[U], y[U], eps=1.0, delta=1e-5)
    assert res.gamma == 0.0 and res.sigma == 0.0
    np.testing.assert_allclose(res.w, cx.fit_ridge(X[20:], y[20:], lam=0.02), atol=1e-10, rtol=0)


def test_sekhari_noise_scaling():
    base = dict(m=4, n=1000, lam=0.1, eps=0.5, delta=1e-5, M=0.25, L=2.0, calibration="classic")
    g, s = cx.sekhari_noise(**base)
    assert s == pytest.approx(g / 0.5 * math.sqrt(2 * math.log(1.25e5)), rel=1e-12)
    assert cx.sekhari_noise(**{**base, "m": 8})[1] == pytest.approx(4 * s, rel=1e-12)
    assert cx.sekhari_noise(**{**base, "n": 2000})[1] == pytest.approx(s / 4, rel=1e-12)
    assert cx.sekhari_noise(**{**base, "eps": 1.0})[1] == pytest.approx(s / 2, rel=1e-12)
    assert cx.sekhari_noise(**{**base, "lam": 0.2})[1] == pytest.approx(s / 8, rel=1e-12)
    with pytest.raises(ValueError, match="m=501"):
        cx.sekhari_noise(**{**base, "m": 501})


def test_sekhari_noise_has_the_announced_scale():
    X, y = make_data(2000, 50, seed=29)
    st = cx.sekhari_fit(X, y, lam=0.01)
    res = cx.sekhari_unlearn(st, X[:5], y[:5], eps=1.0, delta=1e-5, seed=3)
    assert np.std(res.w - res.w_bar) == pytest.approx(res.sigma, rel=0.3)


# ----------------------------------------------------------------------------------------------
# Descent-to-Delete
# ----------------------------------------------------------------------------------------------

D2D = dict(n=1000, eps=5.0, delta=1e-6, lipschitz=1.05, strong_convexity=0.05, smoothness=3.95)


def test_d2d_sigma_golden_value_and_monotonicity():
    assert cx.d2d_sigma(T=25, **D2D, calibration="classic") == pytest.approx(0.217, abs=5e-4)
    sig_T = [cx.d2d_sigma(T=T, **D2D) for T in range(1, 2000, 7)]
    assert np.all(np.diff(sig_T) < 0) and sig_T[-1] < 1e-20  # gamma = 0.975 here
    sig_eps = [cx.d2d_sigma(T=25, **{**D2D, "eps": e}) for e in (0.1, 0.5, 1, 2, 5, 10)]
    assert np.all(np.diff(sig_eps) < 0)
    assert cx.d2d_sigma(T=25, **{**D2D, "n": 2000}) == pytest.approx(cx.d2d_sigma(T=25, **D2D) / 2, rel=1e-12)
    assert cx.d2d_sigma(T=25, **{**D2D, "lipschitz": 2.1}) == pytest.approx(2 * cx.d2d_sigma(T=25, **D2D), rel=1e-12)


def exact_gaussian_delta(eps: float, sensitivity: float, sigma: float) -> float:
    """Balle and Wang (2018): the smallest delta of the Gaussian mechanism at this eps."""
    a, b = sensitivity / (2 * sigma), eps * sigma / sensitivity
    return float(norm.cdf(a - b) - math.exp(eps) * norm.cdf(-a - b))


@pytest.mark.parametrize("eps", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6])
def test_d2d_conversion_factor_is_sound(eps, delta):
    k = math.sqrt(math.log(1 / delta) + eps) - math.sqrt(math.log(1 / delta))
    assert exact_gaussian_delta(eps, 1.0, 1.0 / (math.sqrt(2) * k)) <= delta
    # d2d_sigma covers a sensitivity of twice the steady-state drift 2 L gamma^T / (m n (1 - gamma^T))
    T, n, L, m, M = 10, 500, 2.0, 0.1, 0.35
    g = cx.d2d_contraction(strong_convexity=m, smoothness=M)
    sens = 4 * L * g**T / (m * n * (1 - g**T))
    for calibration in ("classic", "exact"):
        sigma = cx.d2d_sigma(T=T, n=n, eps=eps, delta=delta, lipschitz=L, strong_convexity=m, smoothness=M,
                             calibration=calibration)
        assert exact_gaussian_delta(eps, sens, sigma) <= delta


@pytest.mark.parametrize("eps", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("delta", [1e-2, 1e-4, 1e-6])
def test_guo_gaussian_calibration_is_sound(eps, delta):
    c = cx.gaussian_c(delta)
    sens = 0.37
    assert exact_gaussian_delta(eps, sens, c * sens / eps) <= 1.5 * math.exp(-c * c / 2)


def test_gradient_descent_contracts_on_a_strongly_convex_quadratic():
    X, y = make_data(200, 5, seed=30)
    y = y + 0.1 * np.random.default_rng(31).normal(size=200)
    lam = 0.05
    w_star = cx.fit_ridge(X, y, lam=lam)
    gamma = cx.d2d_contraction(strong_convexity=lam, smoothness=1 + lam)
    theta = 5 * np.random.default_rng(32).normal(size=5)
    for _ in range(50):
        nxt = cx.projected_gradient_descent(theta, X, y, lam=lam, steps=1, radius=100.0, loss="squared")
        assert np.linalg.norm(nxt - w_star) <= gamma * np.linalg.norm(theta - w_star) + 1e-15
        theta = nxt
    assert np.linalg.norm(theta - w_star) < 1e-6


def test_projection_keeps_iterates_in_the_ball():
    X, y = make_data(100, 3, seed=33)
    theta = cx.projected_gradient_descent(np.zeros(3), X, y, lam=1e-3, steps=200, radius=0.5)
    assert np.linalg.norm(theta) <= 0.5 + 1e-12


def test_descent_to_delete_session():
    X, y = make_data(300, 5, seed=34)
    lam = 0.05
    dd = cx.DescentToDelete(X, y, lam=lam, eps=1.0, delta=1e-5, steps_per_update=30, seed=1)
    w_star = cx.fit_logistic(X, y, lam=lam)
    assert np.linalg.norm(dd.secret - w_star) < 1e-3
    secret_before = dd.secret.copy()
    published = dd.remove([10, 20, 30])
    keep = np.setdiff1d(np.arange(300), [10, 20, 30])
    expected = secret_before  # a batch is three sequential deletions, T steps each
    for removed in ([10], [10, 20], [10, 20, 30]):
        left = np.setdiff1d(np.arange(300), removed)
        expected = cx.projected_gradient_descent(expected, X[left], y[left], lam=lam, steps=30, radius=1 / lam)
    np.testing.assert_allclose(dd.secret, expected)
    assert dd.sigma == pytest.approx(cx.d2d_sigma(T=30, n=297, eps=1.0, delta=1e-5, lipschitz=2.0,
                                                  strong_convexity=lam, smoothness=0.25 + lam), rel=1e-12)
    assert np.array_equal(published, dd.published) and not np.array_equal(published, dd.secret)
    assert np.linalg.norm(dd.secret - cx.fit_logistic(X[keep], y[keep], lam=lam)) < 1e-3
    with pytest.raises(ValueError, match=r"\[10\]"):
        dd.remove(10)


# ----------------------------------------------------------------------------------------------
# data and validation
# ----------------------------------------------------------------------------------------------

def test_binary_task_on_digits():
    task = cx.binary_task("digits", classes=(3, 8), test_fraction=0.25, seed=1)
    X = np.concatenate([task.X_train, task.X_test])
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-12)
    assert set(np.unique(task.y_train)) == {-1.0, 1.0}
    assert len(X) == 183 + 174  # digits has 183 threes and 174 eights
    assert (np.concatenate([task.y_train, task.y_test]) == 1).sum() == 183  # 3 -> +1
    w = cx.fit_logistic(task.X_train, task.y_train, lam=1e-2)
    assert task.accuracy(w) > 0.9
    with pytest.raises(ValueError, match="classes"):
        cx.binary_task("digits", classes=(3, 3), test_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="test_fraction"):
        cx.binary_task("digits", test_fraction=1.5, seed=0)


GOOD_X, GOOD_Y = make_data(20, 3, seed=35)
GOOD_W = np.zeros(3)


@pytest.mark.parametrize("call, match", [
    (lambda: cx.fit_logistic(2 * GOOD_X, GOOD_Y, lam=0.1), "norm <= 1"),
    (lambda: cx.fit_logistic(GOOD_X, np.where(GOOD_Y > 0, 1.0, 0.0), lam=0.1), r"\[0\.0\]"),
    (lambda: cx.fit_logistic(GOOD_X, GOOD_Y, lam=0.0), "lam.*0.0"),
    (lambda: cx.fit_ridge(GOOD_X, GOOD_Y, lam=-1.0), "lam.*-1.0"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, 20, lam=0.1), r"\[20\]"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, -1, lam=0.1), r"\[-1\]"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, [2, 5, 2], lam=0.1), r"duplicated.*\[2\]"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, np.arange(20), lam=0.1), "all 20"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, [], lam=0.1), "non-empty"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, [1.0], lam=0.1), "integers"),
    (lambda: cx.newton_remove(np.zeros(4), GOOD_X, GOOD_Y, 1, lam=0.1), r"w must have shape \(3,\)"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, 1, lam=0.1, b=np.ones(2)), r"b must have shape"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, 1, lam=0.1, gram=np.eye(2)), r"gram must have shape"),
    (lambda: cx.fit_logistic(GOOD_X, GOOD_Y[:-1], lam=0.1), r"y must have shape \(20,\)"),
    (lambda: cx.fit_logistic(GOOD_X[0], GOOD_Y, lam=0.1), "2-D"),
    (lambda: cx.fit_logistic(np.where(np.eye(20, 3) > 0, np.nan, GOOD_X), GOOD_Y, lam=0.1), "NaN"),
    (lambda: cx.fit_ridge(GOOD_X, np.where(np.arange(20) == 4, np.nan, GOOD_Y), lam=0.1), "NaN.*index 4"),
    (lambda: cx.newton_remove(np.full(3, np.nan), GOOD_X, GOOD_Y, 1, lam=0.1), "w contains NaN"),
    (lambda: cx.newton_remove(GOOD_W, GOOD_X, GOOD_Y, 1, lam=0.1, loss="hinge"), "hinge"),
    (lambda: cx.gaussian_c(0.0), "delta"),
    (lambda: cx.removal_budget(sigma=0.0, eps=1.0, delta=1e-4), "sigma"),
    (lambda: cx.d2d_sigma(T=0, **D2D), "T must"),
    (lambda: cx.CertifiedRemover(GOOD_X, GOOD_Y, lam=0.1, sigma=1.0, eps=-1.0, delta=1e-4), "eps"),
])
def test_bad_inputs_raise_naming_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
