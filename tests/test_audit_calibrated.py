"""Tests of the calibrated forget score with its status and of the permutation test
(``mu_lib.audit.calibrated_forget_score``, ``permutation_test``, ``adjust_p_values``).

References: the closed form of the largest certifiable ε (``max_certifiable_epsilon``), the
competition's bucket points, direct loops for Holm and Benjamini–Yekutieli, and the size of the
tests measured on identical distributions (the hypothesis is true), with a binomial bound on the
Monte-Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mu_lib import audit

# ---------------------------------------------------------------------------------------------
# calibrated_forget_score


@pytest.mark.parametrize("num_models", [2, 4, 8, 12, 14, 16, 32, 64])
def test_inconclusive_exactly_when_the_first_bucket_edge_cannot_be_certified(num_models):
    rng = np.random.default_rng(num_models)
    r = rng.normal(size=(num_models, 10))
    res = audit.calibrated_forget_score(r + 20.0, rng.normal(size=(num_models, 10)))  # forgets nothing
    top = audit.max_certifiable_epsilon(num_models) if num_models >= 4 else 0.0
    assert res.max_certifiable_epsilon == top
    assert res.conclusive == (top >= 0.5)
    if res.conclusive:
        # the floor is a perfectly separated method's score, and this method reaches it
        assert res.floor == audit.forget_points([top], num_models=num_models)[0]
        assert res.score == res.floor < 1.0
        assert "floor" in str(res)
    else:
        assert math.isnan(res.score) and math.isnan(res.floor)
        assert str(res).startswith("inconclusive")


def test_the_first_conclusive_number_of_models_is_sixteen():
    assert audit.models_needed(0.5) == 16
    assert not audit.calibrated_forget_score(np.zeros((14, 1)), np.ones((14, 1))).conclusive
    assert audit.calibrated_forget_score(np.zeros((16, 1)), np.ones((16, 1))).conclusive


def test_identical_distributions_score_one_when_conclusive():
    rng = np.random.default_rng(1)
    res = audit.calibrated_forget_score(rng.normal(size=(64, 40)), rng.normal(size=(64, 40)))
    assert res.conclusive and res.score >= 0.9
    cal = audit.calibrated_epsilons(rng.normal(size=(64, 40)), rng.normal(size=(64, 40)))
    assert cal.forget_score >= 0.9


def test_score_is_the_calibrated_forget_score():
    rng = np.random.default_rng(2)
    u, r = rng.normal(0.7, 1.0, (32, 25)), rng.normal(size=(32, 25))
    res = audit.calibrated_forget_score(u, r, alpha=0.1, seed=4)
    cal = audit.calibrated_epsilons(u, r, alpha=0.1, seed=4)
    assert res.score == cal.forget_score
    np.testing.assert_array_equal(res.epsilons, cal.epsilons)
    assert res.floor <= res.score <= 1.0


def test_calibrated_forget_score_validation():
    with pytest.raises(ValueError, match="alpha"):
        audit.calibrated_forget_score(np.zeros((8, 2)), np.ones((8, 2)), alpha=0.0)
    with pytest.raises(ValueError, match="needs at least 2 models"):
        audit.calibrated_forget_score(np.zeros((1, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="delta"):
        audit.calibrated_forget_score(np.zeros((8, 2)), np.ones((8, 2)), delta=1.0)


# ---------------------------------------------------------------------------------------------
# adjust_p_values


def _holm_loop(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    out, running = np.empty(m), 0.0
    for rank, j in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[j]))
        out[j] = running
    return out


def _by_loop(p: np.ndarray) -> np.ndarray:
    m = len(p)
    c = sum(1.0 / i for i in range(1, m + 1))
    order = np.argsort(p, kind="stable")
    out, running = np.empty(m), 1.0
    for rank in range(m - 1, -1, -1):
        j = order[rank]
        running = min(running, min(1.0, m * c * p[j] / (rank + 1)))
        out[j] = running
    return out


@pytest.mark.parametrize("correction, loop", [("holm", _holm_loop), ("by", _by_loop)])
def test_adjusted_p_values_match_a_direct_loop(correction, loop):
    rng = np.random.default_rng(3)
    for m in (1, 2, 7, 50):
        p = np.r_[rng.uniform(0, 0.2, m // 2), rng.uniform(0, 1, m - m // 2)]
        p[: min(2, m)] = 0.01  # ties
        np.testing.assert_allclose(audit.adjust_p_values(p, correction=correction), loop(p), rtol=1e-12)


def test_adjust_p_values_validation():
    with pytest.raises(ValueError, match="correction"):
        audit.adjust_p_values([0.1], correction="bonferroni")
    with pytest.raises(ValueError, match="p_values"):
        audit.adjust_p_values([1.5])


# ---------------------------------------------------------------------------------------------
# permutation_test


def test_permutation_p_values_are_counts_of_the_relabelled_statistic():
    rng = np.random.default_rng(4)
    u, r = rng.normal(0.5, 1.0, (8, 3)), rng.normal(size=(8, 3))
    test = audit.permutation_test(u, r, num_permutations=49, correction="by", seed=7)
    np.testing.assert_array_equal(test.statistic, audit.per_example_epsilons(u, r))
    # recompute with the same draws, one permutation at a time
    pooled = np.r_[u, r]
    draws = np.random.default_rng(7)
    exceed = np.zeros(3)
    for _ in range(49):
        rows = draws.permutation(16)
        exceed += audit.per_example_epsilons(pooled[rows[:8]], pooled[rows[8:]]) >= test.statistic
    np.testing.assert_array_equal(test.p_values, (1 + exceed) / 50)
    np.testing.assert_array_equal(test.adjusted_p_values, audit.adjust_p_values(test.p_values, correction="by"))
    assert test.min_p_value == 1 / 50


def test_permutation_test_size_under_identical_distributions():
    """The hypothesis is true: an example is rejected at level alpha at most an alpha fraction of
    the time (exact for a permutation p-value). 200 audits, binomial 99.9 % upper bound."""
    rng = np.random.default_rng(5)
    audits, alpha = 200, 0.05
    u, r = rng.normal(size=(8, audits)), rng.normal(size=(8, audits))
    # each column is one audit; p-values do not depend on the test's alpha (0.5 admits 39 draws)
    p = audit.permutation_test(u, r, num_permutations=39, correction="by", alpha=0.5, seed=1).p_values
    rejections = int(np.sum(p <= alpha))
    assert rejections <= stats.binom.ppf(0.999, audits, alpha)
    assert np.mean(p) > 0.4  # roughly uniform, not piled at small values


def test_permutation_test_has_power_where_the_calibrated_score_is_inconclusive():
    rng = np.random.default_rng(6)
    r = rng.normal(size=(8, 6))
    shifted = audit.permutation_test(r + 4.0, rng.normal(size=(8, 6)), seed=0)
    assert shifted.distinguishable and shifted.num_distinguishable == 6
    assert not audit.calibrated_forget_score(r + 4.0, rng.normal(size=(8, 6))).conclusive
    same = audit.permutation_test(rng.normal(size=(8, 6)), rng.normal(size=(8, 6)), seed=0)
    assert not same.distinguishable and same.num_distinguishable == 0
    assert "not distinguishable" in str(same)


def test_permutation_test_validation():
    u, r = np.zeros((8, 30)), np.ones((8, 30))
    with pytest.raises(ValueError, match="too small.*below 599 permutations"):
        audit.permutation_test(u, r, num_permutations=100, correction="holm")
    with pytest.raises(ValueError, match="correction"):
        audit.permutation_test(u, r, correction="fdr")
    with pytest.raises(ValueError, match="alpha"):
        audit.permutation_test(u, r, alpha=2.0)
    with pytest.raises(ValueError, match="num_permutations"):
        audit.permutation_test(u, r, num_permutations=0)
    assert audit.permutation_test(u[:, :2], r[:, :2], correction="holm").num_permutations == 199
