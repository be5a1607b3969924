"""U-LiRA (Hayes et al. 2025): the per-example likelihood-ratio test between unlearned and retrained models.

References: a per-example Python loop over the shadow models with the Gaussian density written
out, closed forms, and the known answers (identical populations: about 0.5; separated: detected).
"""

import math

import numpy as np
import pytest

from mu_lib import mia


def _loop_log_ratio(t, u_values, r_values, pooled_u=None, pooled_r=None):
    def fit(values, pooled):
        mu = sum(values) / len(values)
        sd = pooled if pooled is not None else math.sqrt(sum((v - mu) ** 2 for v in values) / len(values))
        return mu, sd + 1e-30

    def log_pdf(x, mu, sd):
        return -0.5 * ((x - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)

    mu_u, sd_u = fit(u_values, pooled_u)
    mu_r, sd_r = fit(r_values, pooled_r)
    return log_pdf(t, mu_u, sd_u) - log_pdf(t, mu_r, sd_r)


def _loop_ulira(u, r, fixed_variance=False):
    n, m = u.shape
    scores = np.zeros((2 * n, m))
    for i in range(n):
        others = [k for k in range(n) if k != i]
        pooled = {}
        if fixed_variance:
            for name, pop in (("u", u), ("r", r)):
                sq, count = 0.0, 0
                for j in range(m):
                    col = [pop[k, j] for k in others]
                    mu = sum(col) / len(col)
                    sq += sum((v - mu) ** 2 for v in col)
                    count += len(col)
                pooled[name] = math.sqrt(sq / count)
        for j in range(m):
            uv, rv = [u[k, j] for k in others], [r[k, j] for k in others]
            for row, t in ((i, u[i, j]), (n + i, r[i, j])):
                scores[row, j] = _loop_log_ratio(t, uv, rv, pooled.get("u"), pooled.get("r"))
    correct = np.zeros((2 * n, m), bool)
    correct[:n] = scores[:n] > 0
    correct[n:] = scores[n:] <= 0
    return scores, correct.mean(), correct.mean(axis=0)


@pytest.mark.parametrize("fixed_variance", [False, True])
@pytest.mark.parametrize("n, m, shift", [(3, 4, 0.0), (5, 7, 1.0), (8, 3, -2.0)])
def test_ulira_equals_the_per_example_loop(n, m, shift, fixed_variance):
    rng = np.random.default_rng(n * 10 + m)
    u = rng.normal(shift, rng.uniform(0.5, 2.0, m), (n, m))
    r = rng.normal(0.0, rng.uniform(0.5, 2.0, m), (n, m))
    res = mia.ulira(u, r, fixed_variance=fixed_variance)
    scores, acc, per_example = _loop_ulira(u, r, fixed_variance)
    np.testing.assert_allclose(res.scores, scores, rtol=1e-10, atol=1e-10)
    assert res.accuracy == pytest.approx(acc)
    np.testing.assert_allclose(res.per_example_accuracy, per_example)
    assert res.is_unlearned.tolist() == [True] * n + [False] * n


def test_log_ratio_is_the_closed_form_for_two_point_shadows():
    # Two shadow values mu -/+ sd have mean mu and (maximum-likelihood) standard deviation sd exactly.
    mu_u, sd_u, mu_r, sd_r = np.array([2.0, -1.0]), np.array([0.5, 2.0]), np.array([0.0, 0.0]), np.array([1.0, 1.5])
    u = np.stack([mu_u - sd_u, mu_u + sd_u])
    r = np.stack([mu_r - sd_r, mu_r + sd_r])
    t = np.array([1.0, 3.0])
    from scipy.stats import norm

    expected = norm.logpdf(t, mu_u, sd_u) - norm.logpdf(t, mu_r, sd_r)
    np.testing.assert_allclose(mia.ulira_log_ratio(t, u, r), expected, rtol=1e-12)


@pytest.mark.parametrize("n", [4, 16, 32])
def test_identical_populations_give_chance(n):
    rng = np.random.default_rng(n)
    m = 4000 // n
    mu, sd = rng.normal(0, 3, m), rng.uniform(0.5, 2, m)
    res = mia.ulira(rng.normal(mu, sd, (n, m)), rng.normal(mu, sd, (n, m)), fixed_variance=n < 8)
    # 2n * m = 8000 decisions; the test is fitted on the other models, so it is not biased above 0.5
    # by more than the noise of its fit. Wide bounds for small n, where the fitted Gaussians are noisy.
    assert abs(res.accuracy - 0.5) < 0.04
    assert abs(res.auc - 0.5) < 0.04


@pytest.mark.parametrize("shift, low", [(1.0, 0.6), (3.0, 0.9), (-3.0, 0.9)])
def test_separated_populations_are_detected(shift, low):
    rng = np.random.default_rng(1)
    n, m = 16, 300
    res = mia.ulira(rng.normal(shift, 1.0, (n, m)), rng.normal(0.0, 1.0, (n, m)))
    # the optimal test between N(shift, 1) and N(0, 1) is right with probability Phi(|shift| / 2)
    from scipy.stats import norm

    assert res.accuracy > low
    assert res.accuracy == pytest.approx(norm.cdf(abs(shift) / 2), abs=0.05)


def test_a_deterministic_method_is_always_detected():
    rng = np.random.default_rng(2)
    r = rng.normal(0.0, 1.0, (8, 50))
    u = np.repeat(rng.normal(0.0, 1.0, (1, 50)), 8, axis=0)  # N copies of one model
    res = mia.ulira(u, r)
    assert res.accuracy == 1.0
    assert (res.per_example_accuracy == 1.0).all()


def test_swapping_the_populations_flips_the_scores():
    rng = np.random.default_rng(3)
    u, r = rng.normal(0.5, 1.0, (6, 20)), rng.normal(0.0, 1.0, (6, 20))
    a, b = mia.ulira(u, r), mia.ulira(r, u)
    np.testing.assert_allclose(b.scores[:6], -a.scores[6:], atol=1e-12)
    np.testing.assert_allclose(b.scores[6:], -a.scores[:6], atol=1e-12)


@pytest.mark.parametrize("u, r, match", [
    (np.zeros((4, 3)), np.zeros((5, 3)), "as many"),
    (np.zeros((2, 3)), np.zeros((2, 3)), "at least 3"),
    (np.zeros((4, 3)), np.zeros((4, 2)), "examples"),
    (np.full((4, 3), np.nan), np.zeros((4, 3)), "NaN"),
    (np.zeros(4), np.zeros(4), r"\[models, examples\]"),
])
def test_bad_inputs_raise_clear_errors(u, r, match):
    with pytest.raises(ValueError, match=match):
        mia.ulira(u, r)


def test_log_ratio_checks_the_target():
    with pytest.raises(ValueError, match="target must have shape"):
        mia.ulira_log_ratio(np.zeros(3), np.zeros((2, 4)), np.zeros((2, 4)))
