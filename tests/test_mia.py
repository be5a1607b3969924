import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

from mu_lib import mia


def _brute_force_rates(members, nonmembers):
    """TPR/FPR of 'member iff score >= t' for every observed threshold, by a Python loop."""
    out = []
    for t in sorted(set(members) | set(nonmembers)) + [np.inf]:
        tpr = sum(s >= t for s in members) / len(members)
        fpr = sum(s >= t for s in nonmembers) / len(nonmembers)
        out.append((fpr, tpr))
    return out


def test_roc_auc_tpr_and_accuracy_match_brute_force():
    rng = np.random.default_rng(0)
    members = np.round(rng.normal(1.0, 1.0, 300), 1)  # rounding creates ties
    nonmembers = np.round(rng.normal(0.0, 1.0, 400), 1)
    res = mia.attack_from_scores(members, nonmembers, low_fpr=0.01)
    rates = _brute_force_rates(members, nonmembers)
    # AUC = P(member > nonmember) + 0.5 P(tie), by a double loop
    auc = np.mean([(m > n) + 0.5 * (m == n) for m in members for n in nonmembers])
    assert res.auc == pytest.approx(auc, abs=1e-12)
    assert res.accuracy == pytest.approx(max(1 - (f + 1 - t) / 2 for f, t in rates), abs=1e-12)
    assert res.tpr_at_low_fpr == pytest.approx(max(t for f, t in rates if f <= 0.01), abs=1e-12)


def test_loss_attack_orientation():
    res = mia.loss_threshold_attack(np.array([0.01, 0.02, 0.05]), np.array([1.0, 2.0, 3.0]))
    assert res.auc == 1.0 and res.accuracy == 1.0
    flipped = mia.loss_threshold_attack(np.array([1.0, 2.0, 3.0]), np.array([0.01, 0.02, 0.05]))
    assert flipped.auc == 0.0


def test_simple_mia_equals_starting_kit_pipeline():
    rng = np.random.default_rng(1)
    forget, test = rng.exponential(0.3, 150), rng.exponential(1.0, 200)
    ours = mia.simple_mia(forget, test, seed=3)
    sub = np.random.default_rng(3)
    f = forget[sub.permutation(150)[:150]]
    t = test[sub.permutation(200)[:150]]
    x = np.r_[f, t].reshape(-1, 1)
    lab = np.r_[np.ones(150), np.zeros(150)]
    ref = cross_val_score(LogisticRegression(), x, lab, cv=StratifiedShuffleSplit(n_splits=10, random_state=0),
                          scoring="accuracy").mean()
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours > 0.6


def test_indiscernibility_and_errors():
    assert mia.indiscernibility(0.5) == 1.0
    np.testing.assert_allclose(mia.indiscernibility(np.array([0.0, 0.25, 1.0])), [0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        mia.indiscernibility(1.5)
    with pytest.raises(ValueError, match="NaN"):
        mia.loss_threshold_attack(np.array([np.nan, 1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="empty"):
        mia.roc(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="at least 5"):
        mia.simple_mia(np.ones(3), np.ones(10))
    with pytest.raises(ValueError, match="target_fpr"):
        mia.tpr_at_fpr(np.array([0.0]), np.array([0.0]), 2.0)


@pytest.mark.parametrize("n", [10, 100, 800, 9000])
def test_chance_gap_matches_a_simulated_attack_at_chance(n):
    """The mean of |2 acc - 1| over many coin-flip attacks on n examples, against the formula."""
    acc = np.random.default_rng(n).binomial(n, 0.5, size=200_000) / n
    simulated = np.abs(2 * acc - 1).mean()
    assert mia.chance_gap(n) == pytest.approx(simulated, rel=0.1 if n < 50 else 0.02)
    with pytest.raises(ValueError, match="n must be"):
        mia.chance_gap(0)
