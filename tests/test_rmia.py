"""Offline RMIA (Zarifzadeh et al. 2024) and its use on unlearned versus retrained models.

References: the paper's formula as a double Python loop over candidates and population examples,
scipy's softmax, and the known answers (identical populations: AUC about 0.5; separated: detected).
"""

import numpy as np
import pytest
from scipy.special import softmax

from mu_lib import mia


def _loop_rmia(tx, rx, tz, rz, a, gamma):
    """score(x) = fraction of z with (p(x|t) / Pr(x)) / (p(z|t) / Pr(z)) > gamma, Pr = (1+a)/2 mean_out + (1-a)/2."""
    k = len(rx)
    out = []
    for j in range(len(tx)):
        pr_x = (1 + a) / 2 * sum(rx[i][j] for i in range(k)) / k + (1 - a) / 2
        hits = 0
        for z in range(len(tz)):
            pr_z = (1 + a) / 2 * sum(rz[i][z] for i in range(k)) / k + (1 - a) / 2
            hits += (tx[j] / pr_x) / (tz[z] / pr_z) > gamma
        out.append(hits / len(tz))
    return np.array(out)


@pytest.mark.parametrize("a", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_rmia_offline_equals_the_paper_loop(a, gamma):
    rng = np.random.default_rng(int(10 * a + gamma))
    k, n, nz = 5, 12, 17
    rx, rz = rng.uniform(0.05, 1, (k, n)), rng.uniform(0.05, 1, (k, nz))
    tx, tz = rng.uniform(0.05, 1, n), rng.uniform(0.05, 1, nz)
    got = mia.rmia_offline(tx, rx, tz, rz, offline_a=a, gamma=gamma)
    np.testing.assert_allclose(got, _loop_rmia(tx, rx, tz, rz, a, gamma))


def test_true_class_probability_is_the_softmax_entry():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(0, 5, (3, 40, 10)), rng.integers(0, 10, (3, 40))
    p = softmax(logits, axis=-1)
    expected = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(mia.true_class_probability(logits, y), expected, rtol=1e-12)


def _loop_unlearning(ux, rx, uz, rz, a, gamma):
    n = len(ux)
    rows = np.zeros((2 * n, ux.shape[1]))
    for i in range(n):
        refs_x = [rx[k] for k in range(n) if k != i]
        refs_z = [rz[k] for k in range(n) if k != i]
        rows[i] = _loop_rmia(ux[i], refs_x, uz[i], refs_z, a, gamma)
        rows[n + i] = _loop_rmia(rx[i], refs_x, rz[i], refs_z, a, gamma)
    return rows


def test_rmia_unlearning_equals_the_loop_over_pairs():
    rng = np.random.default_rng(4)
    n, m, nz = 4, 6, 9
    ux, rx = rng.uniform(0.1, 1, (n, m)), rng.uniform(0.1, 1, (n, m))
    uz, rz = rng.uniform(0.1, 1, (n, nz)), rng.uniform(0.1, 1, (n, nz))
    res = mia.rmia_unlearning(ux, rx, uz, rz, offline_a=0.4, gamma=1.5)
    np.testing.assert_allclose(res.scores, _loop_unlearning(ux, rx, uz, rz, 0.4, 1.5))
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(n * m), np.zeros(n * m)]
    assert res.auc == pytest.approx(roc_auc_score(labels, np.r_[res.scores[:n].ravel(), res.scores[n:].ravel()]))
    assert res.advantage == pytest.approx(abs(res.auc - 0.5))


def _probabilities(rng, shift, n, m, per_example):
    return 1 / (1 + np.exp(-(per_example + rng.normal(shift, 1.0, (n, m)))))


@pytest.mark.parametrize("a", [0.0, 0.5, 1.0])
def test_identical_populations_give_chance_and_shifts_are_detected(a):
    rng = np.random.default_rng(5)
    n, m, nz = 16, 250, 100
    ex, ez = rng.normal(1, 2, m), rng.normal(1, 2, nz)
    rx, rz = _probabilities(rng, 0.0, n, m, ex), _probabilities(rng, 0.0, n, nz, ez)
    uz = _probabilities(rng, 0.0, n, nz, ez)
    same = mia.rmia_unlearning(_probabilities(rng, 0.0, n, m, ex), rx, uz, rz, offline_a=a)
    kept = mia.rmia_unlearning(_probabilities(rng, 1.5, n, m, ex), rx, uz, rz, offline_a=a)
    over = mia.rmia_unlearning(_probabilities(rng, -1.5, n, m, ex), rx, uz, rz, offline_a=a)
    assert abs(same.auc - 0.5) < 0.03
    assert kept.auc > 0.7  # still confident on the forget set: looks like a member
    assert over.auc < 0.3  # less confident than retrained models: over-forgetting, detectable too
    assert over.advantage > 0.2


def test_tune_offline_a_picks_the_grid_value_of_the_largest_auc():
    rng = np.random.default_rng(6)
    k, n, nz = 6, 60, 40
    rx, rz = rng.uniform(0.2, 0.9, (k, n)), rng.uniform(0.2, 0.9, (k, nz))
    member = np.arange(n) < 30
    tx = np.clip(rx.mean(0) + np.where(member, 0.2, 0.0) + rng.normal(0, 0.1, n), 0.01, 1.0)
    tz = rng.uniform(0.2, 0.9, nz)
    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    a, auc = mia.tune_offline_a(tx, rx, tz, rz, member, grid=grid)
    aucs = []
    for g in grid:
        s = mia.rmia_offline(tx, rx, tz, rz, offline_a=g)
        aucs.append(mia.attack_from_scores(s[member], s[~member]).auc)
    assert auc == pytest.approx(max(aucs))
    assert a == grid[int(np.argmax(aucs))]


@pytest.mark.parametrize("kwargs, match", [
    ({"offline_a": 1.5}, "offline_a"),
    ({"offline_a": 0.5, "gamma": 0.0}, "gamma"),
])
def test_bad_options_raise(kwargs, match):
    p = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match=match):
        mia.rmia_unlearning(p, p, p, p, **kwargs)


def test_probabilities_outside_the_unit_interval_are_rejected():
    p = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match="probabilities"):
        mia.rmia_unlearning(p + 1, p, p, p, offline_a=0.5)
    with pytest.raises(ValueError, match="same models"):
        mia.rmia_offline(p[0], p, p[0], np.full((2, 4), 0.5), offline_a=0.5)
    with pytest.raises(ValueError, match="members and non-members"):
        mia.tune_offline_a(p[0], p, p[0], p, np.ones(4, bool))
