"""Tests of the core of mu_lib.audit: ε from error rates, Clopper–Pearson, Monte-Carlo ε lower bounds.

References: the hypothesis-testing bound of Kairouz et al. written out directly, SciPy's exact
binomial interval, TF-Privacy's test vector (TP 500/500, FP 0/500, α = 0.01 -> 4.54), and the
coverage of the bound on randomised response with a known ε (Jagielski et al.).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mu_lib.audit import clopper_pearson, eps_from_rates, epsilon_lower_bound

# ---------------------------------------------------------------------------- eps_from_rates

def _kairouz(fpr: float, fnr: float, delta: float) -> float:
    """max(ln((1 - δ - FPR) / FNR), ln((1 - δ - FNR) / FPR), 0), written out case by case."""
    sides = []
    for num, den in ((1 - delta - fpr, fnr), (1 - delta - fnr, fpr)):
        if num <= 0:
            sides.append(0.0)
        elif den == 0:
            sides.append(math.inf)
        else:
            sides.append(math.log(num / den))
    return max(0.0, *sides)


def test_eps_from_rates_anchor_values():
    assert eps_from_rates(0.5, 0.5, delta=0.0) == 0.0
    assert eps_from_rates(0.1, 0.1, delta=0.0) == pytest.approx(math.log(9), abs=1e-12)
    assert eps_from_rates(0.0, 0.0) == math.inf
    assert eps_from_rates(0.0, 1.0) == 0.0  # the test that always says D0 tells nothing


def test_eps_from_rates_matches_the_formula_and_is_never_negative():
    grid = np.linspace(0, 1, 21)
    for delta in (0.0, 1e-5, 0.05, 0.3):
        fpr, fnr = np.meshgrid(grid, grid)
        got = eps_from_rates(fpr, fnr, delta=delta)
        assert got.shape == fpr.shape
        assert (got >= 0).all()
        want = np.vectorize(lambda a, b: _kairouz(a, b, delta))(fpr, fnr)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # worse-than-chance tests are clamped at 0, not negative
    assert eps_from_rates(0.9, 0.9) == 0.0
    assert eps_from_rates(0.7, 0.6) == 0.0


def test_eps_from_rates_is_non_increasing_in_delta():
    rng = np.random.default_rng(0)
    fpr, fnr = rng.uniform(0, 1, 500), rng.uniform(0, 1, 500)
    deltas = [0.0, 1e-6, 1e-3, 0.01, 0.1, 0.5, 0.9]
    values = np.stack([eps_from_rates(fpr, fnr, delta=d) for d in deltas])
    assert (np.diff(values, axis=0) <= 1e-12).all()


def test_eps_from_rates_rejects_bad_inputs():
    with pytest.raises(ValueError, match="fpr"):
        eps_from_rates(-0.1, 0.5)
    with pytest.raises(ValueError, match="fnr"):
        eps_from_rates(0.5, float("nan"))
    with pytest.raises(ValueError, match="delta"):
        eps_from_rates(0.5, 0.5, delta=1.0)


# ---------------------------------------------------------------------------- Clopper–Pearson

@pytest.mark.parametrize("n", [1, 7, 50, 500])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.3])
def test_clopper_pearson_equals_scipy_exact(n, alpha):
    ks = np.unique(np.linspace(0, n, 11).round().astype(int))
    lo, hi = clopper_pearson(ks, n, alpha=alpha)
    for k, a, b in zip(ks, lo, hi):
        ci = stats.binomtest(int(k), n).proportion_ci(confidence_level=1 - alpha, method="exact")
        assert a == pytest.approx(ci.low, abs=1e-12)
        assert b == pytest.approx(ci.high, abs=1e-12)
        s_lo, s_hi = clopper_pearson(int(k), n, alpha=alpha)  # the scalar path agrees
        assert (s_lo, s_hi) == (pytest.approx(a, abs=0), pytest.approx(b, abs=0))


def test_clopper_pearson_properties():
    for n in (1, 10, 100, 1000):
        ks = np.arange(n + 1)
        lo, hi = clopper_pearson(ks, n, alpha=0.05)
        assert (lo <= ks / n).all() and (ks / n <= hi).all()
        assert ((lo == 0) == (ks == 0)).all()
        assert ((hi == 1) == (ks == n)).all()
        # it widens as alpha decreases
        lo2, hi2 = clopper_pearson(ks, n, alpha=0.01)
        assert (lo2 <= lo).all() and (hi2 >= hi).all()
        assert ((hi2 - lo2) > (hi - lo)).all()
    # and narrows as n grows at a fixed proportion
    widths = [np.subtract(*clopper_pearson(3 * m, 10 * m, alpha=0.05)[::-1]) for m in (1, 10, 100, 1000)]
    assert all(a > b for a, b in zip(widths, widths[1:]))


def test_clopper_pearson_rejects_bad_inputs():
    for k, n in ((-1, 5), (6, 5), (1.5, 5), (0, 0)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            clopper_pearson(k, n)
    with pytest.raises(ValueError, match="alpha"):
        clopper_pearson(1, 5, alpha=0.0)


# ---------------------------------------------------------------------------- epsilon_lower_bound

def _scores(tp: int, fp: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary scores: ``tp`` of the ``n`` D1 models and ``fp`` of the ``n`` D0 models score 1."""
    return np.r_[np.ones(tp), np.zeros(n - tp)], np.r_[np.ones(fp), np.zeros(n - fp)]


def test_golden_vector_tp_500_fp_0():
    r = epsilon_lower_bound(*_scores(500, 0, 500), alpha=0.01, threshold="same_data")
    assert r.epsilon == pytest.approx(4.54, abs=0.01)
    # it is ln(p1 / p0) with the Clopper–Pearson ends at alpha = 0.01
    p1 = clopper_pearson(500, 500, alpha=0.01)[0]
    p0 = clopper_pearson(0, 500, alpha=0.01)[1]
    assert r.epsilon == pytest.approx(math.log(p1 / p0), rel=1e-12)
    assert r.empirical_epsilon == math.inf


def test_lower_bound_at_fixed_rates_grows_with_n():
    # rates 0.9 / 0.1: the bound approaches ln 9 from below as the number of models grows
    values = [epsilon_lower_bound(*_scores(9 * n // 10, n // 10, n), alpha=0.05, threshold="same_data").epsilon
              for n in (100, 1000, 10000)]
    np.testing.assert_allclose(values, [1.54, 1.99, 2.13], atol=0.01)
    assert values[0] < values[1] < values[2] < math.log(9)


def test_lower_bound_monotone_in_counts_and_delta():
    n = 200
    by_tp = [epsilon_lower_bound(*_scores(tp, 20, n), alpha=0.05, threshold="same_data").epsilon
             for tp in range(0, n + 1, 10)]
    by_fp = [epsilon_lower_bound(*_scores(180, fp, n), alpha=0.05, threshold="same_data").epsilon
             for fp in range(0, n + 1, 10)]
    assert all(b >= a - 1e-12 for a, b in zip(by_tp, by_tp[1:]))
    assert all(b <= a + 1e-12 for a, b in zip(by_fp, by_fp[1:]))
    assert by_tp[-1] > by_tp[0] and by_fp[0] > by_fp[-1]
    by_delta = [epsilon_lower_bound(*_scores(180, 20, n), alpha=0.05, delta=d, threshold="same_data").epsilon
                for d in (0, 1e-3, 0.05, 0.2)]
    assert all(b <= a + 1e-12 for a, b in zip(by_delta, by_delta[1:]))


def test_lower_bound_is_divided_by_the_group_size():
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(2, 1, 300), rng.normal(0, 1, 300)
    one = epsilon_lower_bound(s_in, s_out, alpha=0.05)
    for k in (2, 5):
        r = epsilon_lower_bound(s_in, s_out, alpha=0.05, group_size=k)
        assert r.epsilon == pytest.approx(one.epsilon / k, rel=1e-12)
        assert r.threshold == one.threshold


def test_lower_bound_uses_the_complementary_inequality():
    # TPR = 1, FPR = 0.5: TNR <= e^eps FNR + delta (the second inequality) is the informative one
    n, alpha = 200, 0.05
    s_in, s_out = _scores(n, n // 2, n)
    r = epsilon_lower_bound(s_in, s_out, alpha=alpha, threshold="same_data")
    p1 = clopper_pearson(n, n, alpha=alpha)[0]
    p0 = clopper_pearson(n // 2, n, alpha=alpha)[1]
    assert p0 + p1 > 1
    assert r.epsilon == pytest.approx(math.log((1 - p0) / (1 - p1)), rel=1e-12)
    assert r.epsilon > math.log(p1 / p0) + 1.0
    # the direction is fixed: larger scores must indicate D1; reversed scores certify nothing
    assert epsilon_lower_bound(-s_in, -s_out, alpha=alpha, threshold="same_data").epsilon == 0.0
    assert epsilon_lower_bound(-s_in, -s_out, alpha=alpha).epsilon == 0.0


def test_lower_bound_rejects_bad_inputs():
    with pytest.raises(ValueError, match="scores_in is empty"):
        epsilon_lower_bound(np.array([]), np.ones(3))
    with pytest.raises(ValueError, match="scores_out contains NaN"):
        epsilon_lower_bound(np.ones(3), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="group_size"):
        epsilon_lower_bound(np.ones(3), np.zeros(3), group_size=0)


def test_coverage_on_randomised_response():
    """ε_true = 1; 1000 "trained models" per world; threshold chosen on one half, bound on the other.

    A valid (1 − α) lower bound exceeds the true ε in at most an α fraction of audits (up to the
    binomial noise of the finite number of audits); it should also not be vacuous.
    """
    eps_true, alpha, trials, audits = 1.0, 0.05, 1000, 400
    p_yes = math.exp(eps_true) / (1 + math.exp(eps_true))  # randomised response: P[report the truth]
    rng = np.random.default_rng(2024)
    half = trials // 2
    bounds = []
    for _ in range(audits):
        s_in = (rng.random(trials) < p_yes).astype(float)  # D1: the bit is 1, reported truthfully w.p. p_yes
        s_out = (rng.random(trials) < 1 - p_yes).astype(float)  # D0: the bit is 0
        t = epsilon_lower_bound(s_in[:half], s_out[:half], alpha=alpha, threshold="same_data").threshold
        held = epsilon_lower_bound(s_in[half:], s_out[half:], alpha=alpha, threshold=t)
        bounds.append(held.epsilon)
    bounds = np.array(bounds)
    assert (bounds > eps_true).mean() <= alpha
    assert 0.6 < bounds.mean() < eps_true  # not vacuous: close to, and below, the truth


# ---------------------------------------------------------------------------- validity over the threshold

@pytest.mark.parametrize("choice", ["held_out", "simultaneous"])
def test_false_positive_rate_under_epsilon_zero_is_at_most_alpha(choice):
    """Identical score distributions (ε = 0): a valid 1 − α lower bound is positive in at most an
    α fraction of audits; 400 audits of 300 models per world, binomial 99.9 % upper bound on the
    count. (Maximising over thresholds on the same scores is not valid: see the next test.)"""
    audits, alpha = 400, 0.05
    rng = np.random.default_rng(17)
    positive = sum(epsilon_lower_bound(rng.normal(size=300), rng.normal(size=300), alpha=alpha, threshold=choice,
                                       seed=i).epsilon > 0 for i in range(audits))
    assert positive <= stats.binom.ppf(0.999, audits, alpha)


def test_the_same_data_maximum_is_biased_upward_under_epsilon_zero():
    audits, alpha = 400, 0.05
    rng = np.random.default_rng(17)
    positive = sum(epsilon_lower_bound(rng.normal(size=1000), rng.normal(size=1000), alpha=alpha,
                                       threshold="same_data").epsilon > 0 for _ in range(audits))
    assert positive > alpha * audits  # more than alpha (32 of 400): the bias that the default removes


def test_simultaneous_band_covers_the_laplace_mechanism():
    """Laplace(1, 1) against Laplace(0, 1) is exactly 1-DP (the likelihood ratio is at most e)."""
    rng = np.random.default_rng(18)
    bounds = np.array([epsilon_lower_bound(rng.laplace(1, 1, 2000), rng.laplace(0, 1, 2000), threshold=choice,
                                           seed=i).epsilon
                       for i in range(60) for choice in ("held_out", "simultaneous")])
    assert (bounds > 1.0).mean() <= 0.05
    assert bounds.mean() > 0.3  # and not vacuous


def test_fixed_threshold_and_held_out_split():
    rng = np.random.default_rng(19)
    s_in, s_out = rng.normal(2, 1, 400), rng.normal(0, 1, 400)
    fixed = epsilon_lower_bound(s_in, s_out, threshold=1.0)
    k1, k0 = int(np.sum(s_in > 1.0)), int(np.sum(s_out > 1.0))
    p1 = clopper_pearson(k1, 400)[0]
    p0 = clopper_pearson(k0, 400)[1]
    assert fixed.threshold_choice == "fixed" and fixed.num_models == (400, 400)
    assert fixed.epsilon == pytest.approx(max(0.0, math.log(p1 / p0)), rel=1e-12)
    held = epsilon_lower_bound(s_in, s_out, seed=3)
    assert held.num_models == (200, 200)
    again = epsilon_lower_bound(s_in, s_out, seed=3)
    assert again == held  # seeded
    # the bound is the fixed-threshold bound on the held-out half
    rng3 = np.random.default_rng(3)
    perm_in, perm_out = rng3.permutation(400), rng3.permutation(400)
    on_half = epsilon_lower_bound(s_in[perm_in[200:]], s_out[perm_out[200:]], threshold=held.threshold)
    assert on_half.epsilon == held.epsilon


def test_threshold_option_validation():
    with pytest.raises(ValueError, match="threshold must be one of"):
        epsilon_lower_bound(np.ones(4), np.zeros(4), threshold="best")
    with pytest.raises(ValueError, match="finite"):
        epsilon_lower_bound(np.ones(4), np.zeros(4), threshold=float("nan"))
    with pytest.raises(ValueError, match="at least 2 models"):
        epsilon_lower_bound(np.ones(1), np.zeros(4))
