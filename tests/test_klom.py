"""KLoM (Georgiev et al. 2024, as EasyDUB computes it): margins, the binned KL divergence, per-example KLoM.

References: a slow loop with ``np.histogram`` and the KL sum written out term by term, scipy's
log-sum-exp, LiRA's statistic, and the known answers (identical populations: about 0; separated:
large).
"""

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from mu_lib import mia


def _loop_kl(p, q, bins=20, eps=1e-5, clip=100.0):
    p, q = np.clip(p, -clip, clip), np.clip(q, -clip, clip)
    lo, hi = min(p.min(), q.min()), max(p.max(), q.max())
    if lo >= hi:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    pc, _ = np.histogram(p, bins=edges)
    qc, _ = np.histogram(q, bins=edges)
    total = 0.0
    for b in range(bins):
        pb, qb = pc[b] / len(p), qc[b] / len(q)
        if pb > 0:
            total += pb * math.log(pb / max(qb, eps))
    return total


@pytest.mark.parametrize("bins", [1, 5, 20])
@pytest.mark.parametrize("np_, nq", [(8, 8), (30, 12), (100, 100)])
def test_binned_kl_equals_the_histogram_loop(bins, np_, nq):
    rng = np.random.default_rng(bins * 1000 + np_ + nq)
    p, q = rng.normal(0.5, 1.5, np_), rng.normal(0, 1, nq)
    assert mia.binned_kl(p, q, bins=bins) == pytest.approx(_loop_kl(p, q, bins=bins), rel=1e-12, abs=1e-12)


def test_binned_kl_clips_and_handles_equal_values():
    assert mia.binned_kl(np.full(5, 3.0), np.full(7, 3.0)) == 0.0
    p, q = np.array([500.0, -500.0, 0.0]), np.array([100.0, -100.0, 0.0])
    assert mia.binned_kl(p, q) == pytest.approx(0.0)  # clipped to [-100, 100]: the same sample
    assert mia.binned_kl(p, q, clip=1000.0) > 1.0


def test_klom_is_binned_kl_column_by_column():
    rng = np.random.default_rng(1)
    u, r = rng.normal(0, 1, (12, 30)) * rng.uniform(0.1, 3, 30), rng.normal(0.3, 1, (9, 30))
    u[:, 3] = 7.0  # a deterministic example: one value
    got = mia.klom(u, r)
    expected = [_loop_kl(u[:, j], r[:, j]) for j in range(30)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [500, 4000])
def test_identical_populations_give_about_zero_and_shrink_with_n(n):
    rng = np.random.default_rng(n)
    mu, sd = rng.normal(0, 5, 20), rng.uniform(0.5, 3, 20)
    values = mia.klom(rng.normal(mu, sd, (n, 20)), rng.normal(mu, sd, (n, 20)))
    # plug-in KL of two samples of one distribution: of order (occupied bins) / n, plus the eps floor's
    # p ln(p / eps) for tail bins that only one sample reaches
    assert values.max() < 100 / n
    assert values.mean() < 40 / n


def test_few_models_give_a_positive_floor():
    rng = np.random.default_rng(2)
    small = mia.klom(rng.normal(0, 1, (16, 400)), rng.normal(0, 1, (16, 400)))
    large = mia.klom(rng.normal(0, 1, (1024, 400)), rng.normal(0, 1, (1024, 400)))
    assert np.median(small) > 10 * np.median(large)


@pytest.mark.parametrize("shift", [3.0, -3.0, 20.0])
def test_separated_populations_give_a_large_divergence(shift):
    rng = np.random.default_rng(3)
    values = mia.klom(rng.normal(shift, 1, (64, 50)), rng.normal(0, 1, (64, 50)))
    assert values.min() > 1.0
    if abs(shift) >= 20:  # disjoint samples: every unlearned bin has Q = eps, KL = ln(1 / eps) - H(P)
        assert (values <= -math.log(1e-5) + 1e-12).all()
        assert (values >= -math.log(1e-5) - math.log(20)).all()


def test_margins_are_the_logit_scaled_confidence():
    rng = np.random.default_rng(4)
    z, y = rng.normal(0, 3, (50, 7)), rng.integers(0, 7, 50)
    z[np.arange(50), y] += rng.uniform(-60, 60, 50)
    others = np.where(np.arange(7) == y[:, None], -np.inf, z)
    expected = z[np.arange(50), y] - logsumexp(others, axis=1)
    np.testing.assert_allclose(mia.margins(z, y), expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(mia.margins(z, y), mia.logit_scaled_confidence(z, y), atol=1e-7)


def test_quantiles_and_errors():
    v = np.linspace(0, 1, 11)
    assert mia.klom_quantiles(v, quantiles=(0.0, 0.5, 1.0)) == {0.0: 0.0, 0.5: 0.5, 1.0: 1.0}
    with pytest.raises(ValueError, match="quantiles"):
        mia.klom_quantiles(v, quantiles=(1.5,))
    with pytest.raises(ValueError, match="bins"):
        mia.klom(np.zeros((2, 3)), np.zeros((2, 3)), bins=0)
    with pytest.raises(ValueError, match="NaN"):
        mia.klom(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="examples"):
        mia.klom(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="targets"):
        mia.margins(np.zeros((3, 4)), np.array([0, 1, 4]))
