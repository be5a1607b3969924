"""The competition's per-example ε (Triantafillou et al. 2024), its decision rules, and the
calibrated per-example ε with a statistical guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mu_lib.audit._rules import _calibrated_values, _competition_scan, _orient, _resolve, _scan, _validate_confidences
from mu_lib.audit.bounds import DELTA, _bound_from_upper_rates, clopper_pearson, max_certifiable_epsilon
from mu_lib.audit.score import forget_score_from_epsilons

__all__ = ["per_example_epsilons", "DecisionRule", "best_decision_rules", "CalibratedEpsilons", "calibrated_epsilons"]

def per_example_epsilons(unlearned: Any, retrained: Any, *, delta: float = DELTA, device: Any = None) -> np.ndarray:
    """The competition's per-example ε, exactly as the organisers' released metric computes it.

    For each forget example s, the N unlearned and N retrained confidences (e.g.
    :func:`logit_scaled_confidence`) are compared by every decision rule of two families, and ε_s
    is the largest ε that the rule's *empirical* error rates certify (Kairouz et al. 2015):

    1. the side with the larger median is "positive" (a tie: the unlearned side);
    2. if the smaller of the two ranges (max − min) is below 1 % of the larger, ε_s = 50;
    3. single thresholds: ``torch.linspace(min, max, ceil(100·(max − min)))`` over all 2N values
       in float32; predict positive iff c ≥ t;
    4. intervals: P is the side with the narrower range w (a tie: the negative side); about 400
       right edges r spanning [P.max − 2, P.max + 2] and, for each, 400 left edges l spanning
       [r − w − 2, r − w + 2] (float64); predict P iff l ≤ c ≤ r;
    5. rates are float32 means over the models; a rule with FPR = FNR = 0 gives +inf, a rule with
       exactly one zero rate is discarded, the others give ``max(0, ln(1 − δ − FPR) − ln FNR,
       ln(1 − δ − FNR) − ln FPR)`` in float32; ε_s is the maximum, clipped to [0, 50].

    The largest finite value is ln(N(1 − δ) − 1) (6.236 for N = 512). Both sides are merged and
    sorted once per example, and the ~160,000 interval rules are counted exactly with binary
    searches (for N ≤ 96 by the gaps between the 2N values instead, which is cheaper), so N = 512
    and 1,000 examples take about a second on a CPU instead of the released code's hours; memory
    is linear in N (10,000 + 10,000 models run). The golden vectors of the released code are
    reproduced bit for bit.

    The ε is conditional on the one original model that every unlearned model starts from (the
    competition's protocol): another original model, trained with another seed, may give other
    values; nothing here averages over it.

    Deviation: where no rule survives (both sides the same constant), the released code raises
    (``nanmax`` of an empty array); this returns 0.

    Args:
        unlearned: ``[num_models, num_examples]`` confidences of the unlearned models (numpy array
            or torch tensor).
        retrained: the same for the retrained models (same shape).
        delta: the δ of (ε, δ), in [0, 1).
        device: torch device for the counting (``None``: CPU). CPU and CUDA give the same values:
            the thresholds are built on the CPU and counting is exact. On the CPU the examples
            are split across ``torch.get_num_threads()`` worker threads, each running
            single-threaded torch kernels on one example at a time (torch's thread count is
            restored afterwards); ``torch.set_num_threads(1)`` makes it single-threaded. Memory
            grows with the ~160,000 rules per example, with 100 × the range of the confidences
            (single thresholds) and linearly with N.

    Returns:
        float64 array ``[num_examples]`` holding float32 values in [0, 50].

    Raises:
        ValueError: on arrays that are not 2-D, of different shapes, with NaN/inf or fewer than
            2 models, or a δ outside [0, 1).

    Example:
        >>> b = np.arange(8.0)[:, None]
        >>> per_example_epsilons(b * 0.5 + 0.25, b * 0.5).round(6)  # ln(2 - 8δ)
        array([0.693107])
        >>> per_example_epsilons(b + 10, b)  # perfectly separated: capped
        array([50.])
    """
    u, r = _validate_confidences(unlearned, retrained, delta=delta)
    return _competition_scan(u, r, delta, device)[0]


@dataclass(frozen=True)
class DecisionRule:
    """The rule that attains an example's ε in :func:`per_example_epsilons` (for explanation).

    The rule predicts ``side`` for a confidence c iff ``lower <= c <= upper``.

    Attributes:
        epsilon: the example's ε (as returned by :func:`per_example_epsilons`).
        family: ``"single"`` (upper = +inf), ``"interval"``, ``"range_guard"`` (ε = 50 from the
            peakiness test; no rule) or ``"none"`` (no rule survived, ε = 0).
        side: ``"unlearned"`` or ``"retrained"``: the side the rule predicts (``""`` for
            ``"range_guard"``).
        lower: left edge (a single threshold t for ``"single"``).
        upper: right edge.
        false_positive_rate: fraction of the other side's models predicted as ``side``.
        false_negative_rate: fraction of ``side``'s models not predicted as ``side``.
    """

    epsilon: float
    family: str
    side: str
    lower: float
    upper: float
    false_positive_rate: float
    false_negative_rate: float


def best_decision_rules(unlearned: Any, retrained: Any, *, delta: float = DELTA, device: Any = None
                        ) -> list[DecisionRule]:
    """For each example, the rule of the competition's estimator that attains its ε.

    Among rules of equal ε the first in the released code's order is returned (intervals before
    single thresholds; right edges, then left edges, in increasing order).

    Args:
        unlearned: ``[num_models, num_examples]`` confidences of the unlearned models.
        retrained: the same for the retrained models.
        delta: the δ of (ε, δ).
        device: torch device for the counting.

    Returns:
        One :class:`DecisionRule` per example.

    Example:
        >>> b = np.arange(8.0)[:, None]
        >>> rule = best_decision_rules(b * 0.5 + 0.25, b * 0.5)[0]
        >>> rule.family, rule.side, rule.false_positive_rate, rule.false_negative_rate
        ('interval', 'retrained', 0.75, 0.125)
    """
    u, r = _validate_confidences(unlearned, retrained, delta=delta)
    eps, guard, retrained_pos, scan, todo = _competition_scan(u, r, delta, device)
    rules = []
    where = {int(j): i for i, j in enumerate(todo)}
    n = u.shape[0]
    for j in range(u.shape[1]):
        if guard[j]:
            rules.append(DecisionRule(float(eps[j]), "range_guard", "", np.nan, np.nan, np.nan, np.nan))
            continue
        i = where[j]
        predicts_pos = (not scan.is_interval[i]) or bool(scan.narrow_is_pos[i])
        predicts_retrained = predicts_pos == bool(retrained_pos[j])
        mine, other = (r[:, j], u[:, j]) if predicts_retrained else (u[:, j], r[:, j])
        lo, hi = scan.lower[i], scan.upper[i]
        fp = int(np.count_nonzero((other >= lo) & (other <= hi)))
        fn = n - int(np.count_nonzero((mine >= lo) & (mine <= hi)))
        family = "none" if scan.value[i] == -np.inf else ("interval" if scan.is_interval[i] else "single")
        rules.append(DecisionRule(float(eps[j]), family, "retrained" if predicts_retrained else "unlearned",
                                  float(lo), float(hi), fp / n, fn / n))
    return rules


# ---------------------------------------------------------------------------------------------
# Calibrated variant: choose the rule on half of the models, measure it on the other half.


@dataclass(frozen=True)
class CalibratedEpsilons:
    """Result of :func:`calibrated_epsilons`.

    Attributes:
        epsilons: per-example lower confidence bounds on ε (float64, ≥ 0).
        forget_score: F of these ε with the competition's buckets (``num_models`` = N).
        false_positives: per example, the held-out models of the other side that the chosen
            rule predicted as its side.
        false_negatives: per example, the held-out models of the rule's side that it missed.
        fpr_upper: Clopper–Pearson upper bounds of the false-positive rates.
        fnr_upper: Clopper–Pearson upper bounds of the false-negative rates.
        num_select: models per side used to choose the rules.
        num_eval: models per side used to measure them.
        alpha: each ε holds with probability at least ``1 − alpha`` (per example).
        max_epsilon: the largest ε these ``num_eval`` models can certify.
    """

    epsilons: np.ndarray
    forget_score: float
    false_positives: np.ndarray
    false_negatives: np.ndarray
    fpr_upper: np.ndarray
    fnr_upper: np.ndarray
    num_select: int
    num_eval: int
    alpha: float
    max_epsilon: float


def calibrated_epsilons(unlearned: Any, retrained: Any, *, delta: float = DELTA, alpha: float = 0.05,
                        seed: int = 0, device: Any = None) -> CalibratedEpsilons:
    """Per-example ε with a statistical guarantee: rules chosen on half the models, rates measured
    with Clopper–Pearson bounds on the other half.

    Choosing the test on held-out models and bounding its rates with Clopper–Pearson intervals is
    the practice of Jagielski et al. (2020) for auditing DP training; this applies it to every
    forget example and to the competition's two families of rules.

    The competition's estimator takes the best of ~160,000 rules and plugs in their empirical
    rates, so it is biased upward: identical distributions score F ≈ 0.16 (N = 64) to 0.22
    (N = 512) instead of 1. Here, per side, a seeded random half of the models (``N // 2``)
    *selects* one rule per example among the same two families (single thresholds and intervals,
    with the grids built from the selection half alone, no range guard and no discarding), namely
    the rule whose Clopper–Pearson bound on the selection half is largest; among equally good
    rules the middle one of its family, and a single threshold over an interval (a rule at the
    edge of a run of equally good ones, the released code's choice, tends to lose held-out
    models that a rule in the middle keeps). The other half
    (``n = N − N // 2`` models per side) *evaluates* it: with k_FP false positives and k_FN false
    negatives, the two-sided ``1 − alpha`` Clopper–Pearson upper ends FPR⁺, FNR⁺ give
    ``ε = max(0, ln((1 − δ − FPR⁺) / FNR⁺), ln((1 − δ − FNR⁺) / FPR⁺))`` (Jagielski et al. 2020).

    Guarantee (per example): models are independent, so given the selected rule its held-out
    counts are binomial; each upper end fails with probability ≤ alpha/2, hence with probability
    ≥ 1 − alpha the reported ε is at most the ε that the rule's *true* rates certify, which is at
    most the example's true ε (the largest over all rules). So ε > 0 is reported for
    indistinguishable distributions with probability ≤ alpha. What does not hold: there is no
    correction for multiplicity across examples (about ``alpha`` of the examples may be
    overstated; pass ``alpha / num_examples`` for a family-wise guarantee); it is a lower bound,
    not an unbiased estimate, so it understates real leakage, most with few models; the ε of
    the competition's families only, not of every possible attack. Like the competition's ε it is
    conditional on the one original model that every unlearned model starts from: it says how
    distinguishable the unlearning runs from *that* model are, not the average over originals.

    Cost in models: even a perfect separation on the held-out half certifies only
    :func:`max_certifiable_epsilon` (N) = ln((1 − δ − u) / u), u = 1 − (alpha/2)^(1/n): about 2.1
    at N = 64, 3.5 at N = 256, 4.2 at N = 512 (alpha = 0.05), below the organisers' ln(N − 1);
    :func:`models_needed` inverts it.

    Args:
        unlearned: ``[num_models, num_examples]`` confidences of the unlearned models (N ≥ 4).
        retrained: the same for the retrained models.
        delta: the δ of (ε, δ).
        alpha: error probability per example, in (0, 1).
        seed: seed of the random split of each side's models into halves.
        device: torch device for the counting.

    Returns:
        A :class:`CalibratedEpsilons`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> same = calibrated_epsilons(rng.normal(size=(64, 8)), rng.normal(size=(64, 8)))
        >>> same.forget_score, same.num_eval, round(same.max_epsilon, 3)
        (1.0, 32, 2.102)
    """
    u, r = _validate_confidences(unlearned, retrained, delta=delta, min_models=4)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    num_models = u.shape[0]
    rng = np.random.default_rng(seed)
    perm_u, perm_r = rng.permutation(num_models), rng.permutation(num_models)
    n_sel = num_models // 2
    n_eval = num_models - n_sel
    u_sel, u_eval = u[perm_u[:n_sel]], u[perm_u[n_sel:]]
    r_sel, r_eval = r[perm_r[:n_sel]], r[perm_r[n_sel:]]
    pos, neg, retrained_pos = _orient(u_sel, r_sel)
    scan = _scan(pos, neg, _calibrated_values(n_sel, float(alpha), float(delta)), device=_resolve(device),
                 mode="median")
    predicts_retrained = np.where(scan.is_interval, scan.narrow_is_pos, True) == retrained_pos
    mine = np.where(predicts_retrained, r_eval, u_eval)
    other = np.where(predicts_retrained, u_eval, r_eval)
    lo, hi = scan.lower, scan.upper
    fp = np.count_nonzero((other >= lo) & (other <= hi), axis=0)
    fn = n_eval - np.count_nonzero((mine >= lo) & (mine <= hi), axis=0)
    _, fpr_hi = clopper_pearson(fp, n_eval, alpha=alpha)
    _, fnr_hi = clopper_pearson(fn, n_eval, alpha=alpha)
    eps = _bound_from_upper_rates(np.asarray(fpr_hi), np.asarray(fnr_hi), delta)
    return CalibratedEpsilons(epsilons=eps, forget_score=forget_score_from_epsilons(eps, num_models=num_models),
                              false_positives=fp, false_negatives=fn, fpr_upper=np.asarray(fpr_hi),
                              fnr_upper=np.asarray(fnr_hi), num_select=n_sel, num_eval=n_eval, alpha=float(alpha),
                              max_epsilon=max_certifiable_epsilon(num_models, alpha=alpha, delta=delta))
