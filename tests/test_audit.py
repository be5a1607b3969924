"""Tests of the competition's per-example ε, its scores and the calibrated variant (``mu_lib.audit``).

References: the organisers' golden vectors (``../shared/reference/golden-metric-vectors.json``,
computed with their released ``metric.py``), a slow line-by-line transcription of the scoring
specification (below), and closed forms (Clopper–Pearson, the Laplace mechanism's ε).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mu_lib import audit

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "golden-metric-vectors.json"


# ---------------------------------------------------------------------------------------------
# Slow, obviously-correct reference: the scoring specification transcribed one example and one
# family at a time, every rate a float32 mean of 0/1 indicators over the models.

def _reference_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 1e-5) -> np.ndarray:
    num_examples = unlearned.shape[1]
    out = []
    for s in range(num_examples):
        u, r = unlearned[:, s], retrained[:, s]
        # Step 1: the side with the larger median is positive (a tie: unlearned).
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        # Step 2: the range guard (0 / 0 is NaN and does not trigger it).
        pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
        largest, smallest = (pos_diff, neg_diff) if pos_diff > neg_diff else (neg_diff, pos_diff)
        with np.errstate(divide="ignore", invalid="ignore"):
            peaky = np.float64(smallest) / np.float64(largest) < 0.01
        if peaky:
            out.append(50.0)
            continue
        tpr, fnr, fpr, tnr = [], [], [], []

        def add(pred_pos: np.ndarray, pred_neg: np.ndarray) -> None:  # [models, rules] booleans
            tpr.append(np.mean(pred_pos.astype(np.float32), axis=0))
            fnr.append(np.mean((~pred_pos).astype(np.float32), axis=0))
            fpr.append(np.mean(pred_neg.astype(np.float32), axis=0))
            tnr.append(np.mean((~pred_neg).astype(np.float32), axis=0))

        # Step 3b: intervals; P is the narrower side (a tie: the negative side), predicted iff l <= c <= r.
        p, q = (neg, pos) if pos_diff >= neg_diff else (pos, neg)
        width = p.max() - p.min()
        lo, hi = p.min() + width - 2.0, p.max() + 2.0
        for right in np.linspace(lo, hi, int(np.ceil((hi - lo) * 100))):
            left = np.linspace(right - width - 2.0, right - width + 2.0, 400)
            add((left <= p[:, None]) & (p[:, None] <= right), (left <= q[:, None]) & (q[:, None] <= right))
        # Step 3a: single thresholds, torch.linspace in float32; predict positive iff c >= t.
        both = np.concatenate([pos, neg])
        t = torch.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100))).numpy()
        add(pos[:, None] >= t, neg[:, None] >= t)
        tpr, fnr, fpr, tnr = (np.concatenate(x) for x in (tpr, fnr, fpr, tnr))
        # Step 4: inf for perfect separation, NaN (discarded) for exactly one zero rate, else the bound.
        eps = np.zeros_like(tpr)
        eps[(fpr + fnr == 0) & (tpr + tnr == 2)] = np.inf
        eps[(eps == 0) & (fpr * fnr == 0)] = np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = np.clip(np.nanmax([np.log(1 - delta - fpr) - np.log(fnr),
                                       np.log(1 - delta - fnr) - np.log(fpr)], axis=0), 0, None)
        eps = np.where(eps == 0, bound, eps)
        # Step 5: the largest surviving value (empty: the released code fails here too).
        out.append(np.max(eps[~np.isnan(eps)]))
    return np.clip(np.array(out, dtype=np.float64), 0, 50)


def _executed_bucket_points(eps: float, num_models: int) -> float:
    """The released code's bucket loop, verbatim in structure."""
    max_epsilon = np.ceil(np.log(num_models - 1))
    start, size, points, buckets = 0, 0.5, 1, {}
    while start + size <= max_epsilon:
        buckets[start] = points
        points /= 2
        start += size
    for start, points in buckets.items():
        if eps < start + size:
            return points
    return 0.0


# ---------------------------------------------------------------------------------------------
# Golden vectors of the organisers' code.

def _case_names() -> list[str]:
    if not GOLDEN.is_file():
        return ["<golden file absent>"]
    return [c["name"] for c in json.loads(GOLDEN.read_text())["cases"]]


@pytest.fixture(scope="module")
def golden() -> dict:
    if not GOLDEN.is_file():
        pytest.skip(f"golden vectors {GOLDEN} are absent (they lie beside the repository in CI)")
    return {c["name"]: c for c in json.loads(GOLDEN.read_text())["cases"]}


def _confidences(case: dict) -> tuple[np.ndarray, np.ndarray]:
    inp = case["inputs"]
    if case["kind"] == "forget_and_final_score_from_confs":
        return np.array(inp["unlearned_confs"]), np.array(inp["retrained_confs"])
    assert case["kind"] == "logits_to_confidence_to_forget_score", f"unknown case kind {case['kind']}"
    targets = np.array(inp["targets"])
    confs = []
    for side in ("unlearned", "retrained"):
        logits = np.array(inp[f"{side}_logits"], dtype=np.float32)
        confs.append(audit.logit_scaled_confidence(logits, np.broadcast_to(targets, logits.shape[:2])))
        np.testing.assert_allclose(confs[-1], case["outputs"][f"{side}_confs"], rtol=0, atol=1e-12)
    return confs[0], confs[1]


@pytest.mark.parametrize("name", _case_names())
def test_golden_vectors(golden, name):
    case, out = golden[name], golden[name]["outputs"]
    u, r = _confidences(case)
    eps = audit.per_example_epsilons(u, r)
    assert eps.dtype == np.float64
    np.testing.assert_allclose(eps, out["per_example_epsilons"], rtol=0, atol=1e-12)
    assert np.array_equal(eps.astype(np.float32).astype(np.float64), eps)  # float32 values
    assert audit.forget_score(u, r) == out["forget_score"]
    points = audit.forget_points(eps, num_models=u.shape[0])
    assert points.tolist() == case["derived_restatement_not_official"]["per_example_points_H"]
    if "final_score" in out:
        inp = case["inputs"]
        final = audit.final_score(out["forget_score"], retain_acc_unlearned=inp["unlearned_retain_accs"],
                                  retain_acc_retrained=inp["retrain_retain_accs"],
                                  test_acc_unlearned=inp["unlearned_test_accs"],
                                  test_acc_retrained=inp["retrain_test_accs"])
        assert final == out["final_score"]


def test_slow_reference_reproduces_the_hand_checkable_golden_case(golden):
    case = golden["tiny_hand_checkable"]
    u, r = _confidences(case)
    np.testing.assert_array_equal(_reference_epsilons(u, r), case["outputs"]["per_example_epsilons"])


# ---------------------------------------------------------------------------------------------
# Against the slow reference on tiny cases that exercise every branch.

def _tricky_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    cases = []
    for n in (2, 5, 7, 8):  # 5 and 7: rates k/N are rounded in float32
        u = np.round(rng.normal(0.5, 1.0, (n, 4)) * 4) / 4  # quarter grid: ties within and across sides
        r = np.round(rng.normal(0.0, 1.0, (n, 4)) * 4) / 4
        cases.append((u, r))
    # equal medians (orientation tie: unlearned positive) and equal ranges (P = negative side)
    u = np.array([0, 0.5, 2, 3, 3.5, 5.0])[:, None]
    r = np.array([0, 1.5, 2, 3, 4.75, 5.0])[:, None]
    cases.append((u, r))
    # a narrow side, a peaky side just above and just below the guard, a perfectly separated one
    base = rng.normal(0, 1, (6, 1))
    spread = np.ptp(base)
    cases.append((np.c_[0.3 * base, base * 0.02 / spread * 1.0, base * 0.009 / spread, base + 30],
                  np.c_[base, base, base, base]))
    return cases


@pytest.mark.parametrize("case", range(len(_tricky_cases())))
def test_matches_slow_reference(case):
    u, r = _tricky_cases()[case]
    np.testing.assert_array_equal(audit.per_example_epsilons(u, r), _reference_epsilons(u, r))


def test_matches_slow_reference_on_gaussians():
    rng = np.random.default_rng(11)
    u = rng.normal(0.4, 1.0, (24, 3)) + np.array([0.0, 1.0, -3.0])
    r = rng.normal(0.0, 1.3, (24, 3)) + np.array([0.0, 1.0, -3.0])
    np.testing.assert_array_equal(audit.per_example_epsilons(u, r), _reference_epsilons(u, r))


def test_no_surviving_rule_gives_zero_where_the_released_code_fails():
    same = np.full((6, 1), 2.5)
    with pytest.raises(ValueError):
        _reference_epsilons(same, same)
    assert audit.per_example_epsilons(same, same).tolist() == [0.0]
    assert audit.best_decision_rules(same, same)[0].family == "none"


# ---------------------------------------------------------------------------------------------
# Properties.

def _mixed(num_models: int, num_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-1.0, 3.0, num_examples)
    scale = rng.uniform(0.3, 2.0, num_examples)
    r = rng.normal(0.0, 1.0, (num_models, num_examples)) + rng.uniform(-2, 6, num_examples)
    u = r.mean(0) + shift + scale * rng.normal(0.0, 1.0, (num_models, num_examples))
    return u, r


def test_symmetric_in_the_two_sides():
    u, r = _mixed(64, 40, seed=1)
    np.testing.assert_array_equal(audit.per_example_epsilons(u, r), audit.per_example_epsilons(r, u))


def test_shared_shift_invariance_and_why_other_monotone_maps_are_not():
    """The grids are anchored at the data (min, max, P.max) with a fixed spacing of 0.01, so a
    shared shift moves every rule with the data: ε is unchanged, except that the float32 single
    thresholds round differently at another magnitude, which can move an occasional count by
    one. A monotone map that changes the spacing of the data (scaling, exp) changes which rules
    the 0.01 grid contains, so ε is not invariant to it."""
    u, r = _mixed(64, 100, seed=2)
    eps = audit.per_example_epsilons(u, r)
    for shift in (3.7, -11.3):
        shifted = audit.per_example_epsilons(u + shift, r + shift)
        assert np.mean(shifted == eps) >= 0.97
        assert abs(audit.forget_score_from_epsilons(shifted, num_models=64)
                   - audit.forget_score_from_epsilons(eps, num_models=64)) <= 0.01
    scaled = audit.per_example_epsilons(2 * u, 2 * r)
    assert np.mean(scaled != eps) >= 0.02


def test_far_apart_distributions_score_zero_points():
    u, r = _mixed(32, 10, seed=3)
    eps = audit.per_example_epsilons(r + 100.0, r)
    assert eps.tolist() == [50.0] * 10
    assert audit.forget_score(r + 100.0, r) == 0.0
    assert audit.final_score(0.0, retain_acc_unlearned=[99.0], retain_acc_retrained=[98.0],
                             test_acc_unlearned=[90.0], test_acc_retrained=[91.0]) == 0.0


@pytest.mark.parametrize("unlearned_is_narrow", [True, False])
def test_range_guard(unlearned_is_narrow):
    rng = np.random.default_rng(4)
    wide = rng.normal(0.0, 1.0, (64, 1))
    base = rng.uniform(0.0, 1.0, (64, 1))
    base = (base - base.min()) / np.ptp(base) * np.ptp(wide)
    for ratio, capped in ((0.009, True), (0.011, False)):
        narrow = base * ratio
        u, r = (narrow, wide) if unlearned_is_narrow else (wide, narrow)
        eps = float(audit.per_example_epsilons(u, r)[0])
        assert (eps == 50.0) == capped
        assert (audit.best_decision_rules(u, r)[0].family == "range_guard") == capped


def test_best_rule_attains_the_epsilon():
    u, r = _mixed(48, 12, seed=5)
    eps = audit.per_example_epsilons(u, r)
    for j, rule in enumerate(audit.best_decision_rules(u, r)):
        assert rule.epsilon == eps[j]
        mine, other = (r[:, j], u[:, j]) if rule.side == "retrained" else (u[:, j], r[:, j])
        fpr = np.count_nonzero((other >= rule.lower) & (other <= rule.upper)) / 48
        fnr = np.count_nonzero((mine < rule.lower) | (mine > rule.upper)) / 48
        assert (rule.false_positive_rate, rule.false_negative_rate) == (fpr, fnr)
        if 0 < eps[j] < 50:
            f32 = np.float32
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = np.fmax(np.log(f32(1 - 1e-5) - f32(fpr)) - np.log(f32(fnr)),
                                np.log(f32(1 - 1e-5) - f32(fnr)) - np.log(f32(fpr)))
            assert float(bound) == eps[j]


def test_identical_distributions_are_biased_far_below_one():
    rng = np.random.default_rng(6)
    u, r = rng.normal(size=(64, 100)), rng.normal(size=(64, 100))
    eps = audit.per_example_epsilons(u, r)
    assert eps.min() > 0.5  # no example reaches the first bucket
    assert 0.08 < audit.forget_score_from_epsilons(eps, num_models=64) < 0.3


def test_largest_finite_epsilon():
    n = 16
    u = np.arange(n, dtype=float)[:, None]
    r = u + n - 1.5  # one model of each side inside the other's range
    eps = float(audit.per_example_epsilons(u, r)[0])
    assert eps == pytest.approx(math.log(n * (1 - 1e-5) - 1), abs=1e-6)


def test_torch_input_and_device_argument():
    u, r = _mixed(16, 5, seed=8)
    expected = audit.per_example_epsilons(u, r)
    got = audit.per_example_epsilons(torch.from_numpy(u), torch.from_numpy(r), device="cpu")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("num_models", [2, 3, 8, 64, 512, 1000])
def test_forget_points_follow_the_executed_bucket_loop(num_models):
    rng = np.random.default_rng(num_models)
    eps = np.r_[rng.uniform(0, 8, 300), np.arange(0, 8.5, 0.5), 50.0, np.inf]
    expected = [_executed_bucket_points(e, num_models) for e in eps]
    assert audit.forget_points(eps, num_models=num_models).tolist() == expected
    assert audit.forget_score_from_epsilons(eps, num_models=num_models) == sum(expected) / len(expected)


def test_forget_points_at_512_models():
    points = audit.forget_points([0.0, 0.5, 6.236, 6.5, 6.99, 7.0, 50.0], num_models=512)
    assert points.tolist() == [1.0, 0.5, 2.0 ** -12, 2.0 ** -13, 2.0 ** -13, 0.0, 0.0]


def test_final_score_is_uncapped_and_uses_means():
    f = audit.final_score(0.5, retain_acc_unlearned=[99.0, 101.0], retain_acc_retrained=[90.0, 110.0],
                          test_acc_unlearned=np.array([92.0]), test_acc_retrained=90.0)
    assert f == 0.5 * (100.0 / 100.0) * (92.0 / 90.0)
    assert f > 0.5


# ---------------------------------------------------------------------------------------------
# The calibrated estimator.

def test_calibrated_removes_the_bias_on_identical_distributions():
    rng = np.random.default_rng(9)
    u, r = rng.normal(size=(128, 100)), rng.normal(size=(128, 100))
    cal = audit.calibrated_epsilons(u, r, alpha=0.05, seed=0)
    assert cal.num_select == 64 and cal.num_eval == 64
    assert np.mean(cal.epsilons > 0) <= 0.08
    assert cal.forget_score >= 0.9
    assert audit.forget_score(u, r) < 0.35  # the organisers' estimator on the same models


def test_calibrated_covers_the_true_epsilon_of_the_laplace_mechanism():
    """Laplace(0, 1) against Laplace(1, 1) is exactly 1-DP: no test certifies more than ε = 1."""
    rng = np.random.default_rng(10)
    u = rng.laplace(1.0, 1.0, (128, 100))
    r = rng.laplace(0.0, 1.0, (128, 100))
    cal = audit.calibrated_epsilons(u, r, alpha=0.05)
    assert np.mean(cal.epsilons > 1.0) <= 0.08
    assert np.mean(cal.epsilons > 0) >= 0.3  # and it still sees the difference
    assert np.mean(audit.per_example_epsilons(u, r) > 1.0) >= 0.5  # the plug-in estimate overshoots


def test_calibrated_detects_separated_distributions():
    rng = np.random.default_rng(12)
    r = rng.normal(size=(64, 30))
    cal = audit.calibrated_epsilons(r[::-1] + 4.0, r)
    assert (cal.epsilons > 1.0).all()
    assert cal.epsilons.max() <= cal.max_epsilon + 1e-12
    assert cal.forget_score <= 0.25


def test_calibrated_bounds_are_clopper_pearson_on_the_held_out_counts():
    u, r = _mixed(40, 8, seed=13)
    cal = audit.calibrated_epsilons(u, r, alpha=0.1, seed=3)
    _, fpr_hi = audit.clopper_pearson(cal.false_positives, cal.num_eval, alpha=0.1)
    _, fnr_hi = audit.clopper_pearson(cal.false_negatives, cal.num_eval, alpha=0.1)
    np.testing.assert_array_equal(cal.fpr_upper, fpr_hi)
    for j in range(8):
        expected = max(0.0, *(math.log((1 - 1e-5 - a) / b) for a, b in ((fpr_hi[j], fnr_hi[j]), (fnr_hi[j], fpr_hi[j]))
                              if 1 - 1e-5 - a > 0))
        assert cal.epsilons[j] == pytest.approx(expected, abs=1e-12)
    again = audit.calibrated_epsilons(u, r, alpha=0.1, seed=3)
    np.testing.assert_array_equal(again.epsilons, cal.epsilons)


def test_cost_in_models():
    assert audit.max_certifiable_epsilon(4) == 0.0  # 2 held-out models per side certify nothing
    for n in (4, 10, 64, 512):
        n_eval = n - n // 2
        u = 1 - (0.05 / 2) ** (1 / n_eval)
        assert audit.max_certifiable_epsilon(n) == pytest.approx(max(0.0, math.log((1 - 1e-5 - u) / u)), rel=1e-9)
    for eps in (0.5, 1.0, 2.0, math.log(511)):
        n = audit.models_needed(eps)
        assert audit.max_certifiable_epsilon(n) >= eps > audit.max_certifiable_epsilon(n - 2)
    assert audit.max_certifiable_epsilon(512) < math.log(511)  # below the organisers' largest finite ε


# ---------------------------------------------------------------------------------------------
# Validation.

@pytest.mark.parametrize("bad, match", [
    (dict(unlearned=np.zeros(5)), "shape"),
    (dict(unlearned=np.zeros((4, 3, 1))), "shape"),
    (dict(unlearned=np.zeros((5, 3))), "same shape"),
    (dict(unlearned=np.zeros((1, 3)), retrained=np.zeros((1, 3))), "needs at least"),
    (dict(unlearned=np.zeros((4, 0)), retrained=np.zeros((4, 0))), "no examples"),
    (dict(unlearned=np.array([[0.0, np.nan]] * 4)), "NaN"),
    (dict(retrained=np.array([[0.0, np.inf]] * 4)), "NaN or inf"),
    (dict(delta=1.0), "delta"),
    (dict(delta=-1e-5), "delta"),
])
def test_validation(bad, match):
    args = dict(unlearned=np.zeros((4, 2)), retrained=np.ones((4, 2)), delta=1e-5) | bad
    for fn in (audit.per_example_epsilons, audit.forget_score, audit.calibrated_epsilons):
        with pytest.raises(ValueError, match=match):
            fn(args["unlearned"], args["retrained"], delta=args["delta"])


def test_validation_of_scores_and_calibration_options():
    with pytest.raises(ValueError, match="num_models"):
        audit.forget_points([0.1], num_models=1)
    with pytest.raises(ValueError, match="epsilons"):
        audit.forget_points([np.nan], num_models=8)
    with pytest.raises(ValueError, match="forget_score"):
        audit.final_score(1.5, retain_acc_unlearned=1, retain_acc_retrained=1, test_acc_unlearned=1,
                          test_acc_retrained=1)
    with pytest.raises(ValueError, match="test_acc_retrained"):
        audit.final_score(0.5, retain_acc_unlearned=1, retain_acc_retrained=1, test_acc_unlearned=1,
                          test_acc_retrained=0)
    with pytest.raises(ValueError, match="at least 4 models"):
        audit.calibrated_epsilons(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="alpha"):
        audit.calibrated_epsilons(np.zeros((8, 2)), np.ones((8, 2)), alpha=1.0)
    with pytest.raises(ValueError, match="epsilon"):
        audit.models_needed(0.0)
