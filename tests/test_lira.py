"""LiRA (Carlini et al. 2022): the statistic, the shadow design, the Gaussian tests and their sign.

References: closed forms (Gaussian log densities, Phi(dmu / (sigma sqrt 2)) for the optimal AUC),
per-example Python loops over the shadow models, and a loop of `train.fit` for the shadow models.
"""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from mu_lib import audit, mia, models, train

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- the statistic

def test_phi_is_finite_and_equals_logit_margin_for_extreme_logits():
    # [60, 0, 0]: p_y / (1 - p_y) = e^60 / 2, so phi = 60 - ln 2 (float64 logits).
    phi = audit.logit_scaled_confidence(np.array([[60.0, 0.0, 0.0]]), np.array([0]))
    assert phi[0] == pytest.approx(60.0 - np.log(2.0), abs=1e-9)
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (200, 10))
    y = rng.integers(0, 10, 200)
    z[np.arange(200), y] += rng.uniform(-70, 70, 200)  # margins far beyond float32's softmax range
    phi = audit.logit_scaled_confidence(z, y)
    others = np.where(np.arange(10) == y[:, None], -np.inf, z)
    ref = z[np.arange(200), y] - logsumexp(others, axis=1)
    assert np.isfinite(phi).all()
    np.testing.assert_allclose(phi, ref, atol=1e-7)


def test_lira_statistics_of_models_is_the_logit_scaled_confidence():
    net = models.make_model("mlp", num_classes=4, in_channels=1, image_size=3, seed=0)
    x, y = torch.randn(30, 1, 3, 3), torch.randint(0, 4, (30,))
    stats = mia.lira_statistics([net, net], x, y)
    logits = net(x).detach().double().numpy()
    ref = logits[np.arange(30), y.numpy()] - logsumexp(
        np.where(np.arange(4) == y.numpy()[:, None], -np.inf, logits), axis=1)
    assert stats.shape == (2, 30)
    np.testing.assert_allclose(stats[0], ref, atol=1e-5)
    np.testing.assert_array_equal(stats[0], stats[1])


# ---------------------------------------------------------------- the Gaussian tests

def _log_normal(t, mu, sd):
    return -0.5 * ((t - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def test_online_score_is_the_exact_log_likelihood_ratio_for_known_gaussians():
    rng = np.random.default_rng(1)
    n = 50
    mu_in, mu_out = rng.normal(2, 1, n), rng.normal(0, 1, n)
    sd_in, sd_out = rng.uniform(0.5, 2, n), rng.uniform(0.5, 2, n)
    # Two shadow values mu -/+ sd per side: their median is mu and their (population) std is sd exactly.
    in_stats = np.stack([mu_in - sd_in, mu_in + sd_in], axis=1)
    out_stats = np.stack([mu_out - sd_out, mu_out + sd_out], axis=1)
    t = rng.normal(1, 2, n)
    expected = _log_normal(t, mu_in, sd_in) - _log_normal(t, mu_out, sd_out)
    np.testing.assert_allclose(mia.lira_online(t, in_stats, out_stats), expected, rtol=1e-12, atol=1e-10)
    # Offline: two-sided = negative log density, one-sided = -ln P[Z > t] (the paper's 1 - Lambda).
    np.testing.assert_allclose(mia.lira_offline(t, out_stats, test="two_sided"), -_log_normal(t, mu_out, sd_out),
                               rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(mia.lira_offline(t, out_stats), -np.log(norm.sf((t - mu_out) / sd_out)), rtol=1e-9)


def test_median_not_mean_and_the_sigma_floor():
    in_stats = np.array([[0.0, 0.0, 9.0]])  # median 0, mean 3
    out_stats = np.array([[5.0, 5.0, 5.0]])  # zero spread: sigma = 1e-30
    s = mia.lira_online(np.array([0.0]), in_stats, out_stats)
    sd_in = np.std(in_stats) + 1e-30
    expected = _log_normal(0.0, 0.0, sd_in) - _log_normal(0.0, 5.0, 1e-30)
    assert np.isfinite(s).all() and s[0] == pytest.approx(expected, rel=1e-12)


def test_fixed_variance_pools_deviations_from_each_median():
    rng = np.random.default_rng(2)
    in_stats, out_stats = rng.normal(1, 1, (20, 6)), rng.normal(0, 2, (20, 7))
    t = rng.normal(0, 1, 20)
    pooled_in = np.std(np.concatenate([row - np.median(row) for row in in_stats]))
    pooled_out = np.std(np.concatenate([row - np.median(row) for row in out_stats]))
    expected = [_log_normal(t[i], np.median(in_stats[i]), pooled_in + 1e-30)
                - _log_normal(t[i], np.median(out_stats[i]), pooled_out + 1e-30) for i in range(20)]
    np.testing.assert_allclose(mia.lira_online(t, in_stats, out_stats, fixed_variance=True), expected, rtol=1e-10)


def test_missing_shadows_as_nan_and_augmentation_axis():
    rng = np.random.default_rng(3)
    in_stats, out_stats = rng.normal(1, 1, (10, 5, 2)), rng.normal(0, 1, (10, 5, 2))
    in_stats[0, 3:] = np.nan  # example 0 has only 3 IN models
    t = rng.normal(0, 1, (10, 2))
    scores = mia.lira_online(t, in_stats, out_stats)
    for i in range(10):
        per_aug = []
        for a in range(2):
            ins = in_stats[i, :, a][~np.isnan(in_stats[i, :, a])]
            outs = out_stats[i, :, a]
            per_aug.append(_log_normal(t[i, a], np.median(ins), np.std(ins) + 1e-30)
                           - _log_normal(t[i, a], np.median(outs), np.std(outs) + 1e-30))
        assert scores[i] == pytest.approx(np.mean(per_aug), rel=1e-10)


@pytest.mark.parametrize("attack, tol", [("online", 0.01), ("offline", 0.01)])
def test_synthetic_auc_matches_the_optimal_test(attack, tol):
    # mu_in = 2, mu_out = 0, sigma = 1: the likelihood-ratio test has AUC Phi(2 / (1 * sqrt 2)).
    rng = np.random.default_rng(4)
    n, k = 4000, 64
    member = np.arange(n) < n // 2
    target = np.where(member, 2.0, 0.0) + rng.normal(0, 1, n)
    in_stats, out_stats = 2.0 + rng.normal(0, 1, (n, k)), rng.normal(0, 1, (n, k))
    if attack == "online":
        scores = mia.lira_online(target, in_stats, out_stats)
    else:
        scores = mia.lira_offline(target, out_stats)
    auc = mia.attack_from_scores(scores[member], scores[~member]).auc
    assert auc == pytest.approx(norm.cdf(2.0 / np.sqrt(2.0)), abs=tol)


def test_sign_convention_larger_means_member():
    in_stats = np.array([[1.0, 3.0]] * 2)  # IN Gaussian N(2, 1)
    out_stats = np.array([[-1.0, 1.0]] * 2)  # OUT Gaussian N(0, 1)
    at_in, at_out = mia.lira_online(np.array([2.0, 0.0]), in_stats, out_stats)
    assert at_in > 0 > at_out  # looks like an IN model: positive; like an OUT model: negative
    assert at_in == pytest.approx(2.0) and at_out == pytest.approx(-2.0)  # (dmu)^2 / (2 sigma^2)
    hi, lo = mia.lira_offline(np.array([3.0, -3.0]), out_stats)
    assert hi > lo  # one-sided: only *higher* confidence than OUT signals membership
    hi2, lo2 = mia.lira_offline(np.array([3.0, -3.0]), out_stats, test="two_sided")
    assert hi2 == pytest.approx(lo2)  # two-sided: symmetric distance from the OUT Gaussian
    # End to end: members are more confident, so every attack's AUC exceeds one half.
    rng = np.random.default_rng(5)
    mask = mia.shadow_masks(16, 300, seed=1)
    stats = rng.normal(0, 1, (16, 300)) + 1.5 * mask
    for attack in mia.LIRA_ATTACKS:
        assert mia.lira_scores(stats, mask, attack=attack).evaluate().auc > 0.6, attack


# ---------------------------------------------------------------- shadow design and leave-one-out

@pytest.mark.parametrize("m, n", [(2, 1), (4, 7), (16, 101), (64, 500)])
def test_argsort_masks_have_each_example_in_exactly_half_the_models(m, n):
    masks = mia.shadow_masks(m, n, seed=7)
    assert masks.shape == (m, n) and masks.dtype == bool
    assert (masks.sum(axis=0) == m // 2).all()
    sizes = masks.sum(axis=1)
    assert sizes.max() - sizes.min() <= 1  # balanced models (fit_many trains equal-size groups)
    raw = mia.shadow_masks(m, n, seed=7, balance_models=False)
    assert (raw.sum(axis=0) == m // 2).all()
    # balance_models=False is the reference's argsort trick, transcribed directly
    reference = np.random.default_rng(7).uniform(size=(m, n)).argsort(0) < m // 2
    np.testing.assert_array_equal(raw, reference)


def test_mask_validation():
    with pytest.raises(ValueError, match="even"):
        mia.shadow_masks(5, 10)
    with pytest.raises(ValueError, match="num_examples"):
        mia.shadow_masks(4, 0)


def test_lira_scores_leave_one_model_out_equals_a_loop():
    rng = np.random.default_rng(8)
    m, n = 6, 40
    mask = mia.shadow_masks(m, n, seed=3)
    stats = rng.normal(0, 1, (m, n)) + mask
    res = mia.lira_scores(stats, mask, targets=[5, 0])
    for row, t in enumerate((5, 0)):
        for j in range(n):
            shadows = [k for k in range(m) if k != t]
            ins = np.array([stats[k, j] for k in shadows if mask[k, j]])
            outs = np.array([stats[k, j] for k in shadows if not mask[k, j]])
            expected = (_log_normal(stats[t, j], np.median(ins), np.std(ins) + 1e-30)
                        - _log_normal(stats[t, j], np.median(outs), np.std(outs) + 1e-30))
            assert res.scores[row, j] == pytest.approx(expected, rel=1e-10, abs=1e-10)
    np.testing.assert_array_equal(res.is_member, mask[[5, 0]])
    glob = mia.lira_scores(stats, mask, attack="global", targets=[2])
    np.testing.assert_array_equal(glob.scores[0], stats[2])


def test_lira_validation_errors():
    with pytest.raises(ValueError, match="unknown attack"):
        mia.lira_scores(np.zeros((4, 3)), np.ones((4, 3), bool), attack="bayes")
    with pytest.raises(ValueError, match="stats must have shape"):
        mia.lira_scores(np.zeros((4, 2)), mia.shadow_masks(4, 3))
    with pytest.raises(ValueError, match="in_stats must have shape"):
        mia.lira_online(np.zeros(3), np.zeros((4, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"example\(s\) \[1\] have no shadow"):
        mia.lira_online(np.zeros(2), np.array([[1.0, 2.0], [np.nan, np.nan]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown test"):
        mia.lira_offline(np.zeros(2), np.zeros((2, 2)), test="left")
    with pytest.raises(ValueError, match="NaN or inf"):
        mia.lira_online(np.array([np.nan]), np.zeros((1, 2)), np.zeros((1, 2)))


# ---------------------------------------------------------------- shadow training

def test_shadow_training_with_fit_many_equals_a_loop_of_fit():
    torch.manual_seed(0)
    x, y = torch.randn(25, 1, 3, 3), torch.randint(0, 3, (25,))
    make = lambda s: models.make_model("mlp", num_classes=3, in_channels=1, image_size=3, seed=s)  # noqa: E731
    masks = mia.shadow_masks(4, 25, seed=0)  # 25 is odd: models of 12 and 13 examples, two fit_many groups
    assert sorted(set(masks.sum(1).tolist())) == [12, 13]
    recipe = train.Recipe(epochs=3, batch_size=5, lr=0.1, momentum=0.9, weight_decay=1e-3)
    nets = mia.train_shadow_models(make, x, y, masks, recipe=recipe, seeds=[10, 11, 12, 13])
    for i, net in enumerate(nets):
        rows = np.flatnonzero(masks[i])
        ref = train.fit(make(10 + i), x[rows], y[rows], epochs=3, batch_size=5, lr=0.1, momentum=0.9,
                        weight_decay=1e-3, seed=10 + i)
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5, msg=f"model {i}, {name}")


def test_train_shadow_models_validation():
    make = lambda s: models.make_model("logreg", num_classes=2, in_channels=1, image_size=2, seed=s)  # noqa: E731
    x, y = torch.randn(6, 1, 2, 2), torch.randint(0, 2, (6,))
    recipe = train.Recipe(epochs=1, batch_size=2, lr=0.1)
    with pytest.raises(ValueError, match="columns"):
        mia.train_shadow_models(make, x, y, mia.shadow_masks(2, 5), recipe=recipe)
    with pytest.raises(ValueError, match="one seed per model"):
        mia.train_shadow_models(make, x, y, mia.shadow_masks(2, 6), recipe=recipe, seeds=[1])
    with pytest.raises(ValueError, match="augment"):
        mia.train_shadow_models(make, x, y, mia.shadow_masks(2, 6),
                                recipe=train.Recipe(epochs=1, batch_size=2, lr=0.1, augment=True))
