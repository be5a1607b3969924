"""Checks of the exercises of the evaluation chapters: LiRA's statistic, the calibrated ε, the forget score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mu_lib import audit, mia
from mu_lib.exercises.feedback import Case, Feedback, run_cases

__all__ = ['check_logit_scaled_confidence', 'check_calibrated_epsilon', 'check_forget_score',
           'check_indiscernibility']


# --------------------------------------------------------------------------------------------
# membership-inference


def check_logit_scaled_confidence(fn: Callable[..., Any]) -> Feedback:
    """Membership inference: LiRA's statistic ``ln p_y − ln Σ_{j≠y} p_j`` from logits.

    ``fn(logits, labels)`` gets ``[B, K]`` logits and ``[B]`` integer labels and returns ``[B]``
    values. The reference is :func:`mu_lib.mia.logit_scaled_confidence`.

    Example:
        >>> def phi(logits, labels):
        ...     z = logits - logits.max(axis=1, keepdims=True)
        ...     p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        ...     p_y = p[np.arange(len(labels)), labels]
        ...     return np.log(p_y) - np.log(p.sum(axis=1) - p_y)
        >>> check_logit_scaled_confidence(phi).passed
        True
    """
    spec = [
        ("uniform logits: p_y = 1/K, so φ = ln(1/(K − 1))", [[0.0, 0.0, 0.0]], [0],
         "φ = ln p_y − ln(sum of the *other* probabilities)"),
        ("the label selects the class", [[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]], [0, 2],
         "index the probabilities with each row's own label"),
        ("two classes: φ is the difference of the logits", [[1.5, -0.5]], [0],
         "with K = 2, ln(p_0 / p_1) = z_0 − z_1"),
        ("large logits must not overflow", [[800.0, 790.0, 795.0], [-5.0, 1000.0, 996.0]], [0, 2],
         "subtract each row's maximum before exp (softmax is unchanged by a shift)"),
    ]
    cases = [Case(p, {"logits": np.array(z), "labels": np.array(y)},
                  mia.logit_scaled_confidence(np.array(z), np.array(y)), h) for p, z, y, h in spec]
    return run_cases("logit_scaled_confidence", fn, cases, rtol=1e-6, atol=1e-6,
                     success="your statistic matches mia.logit_scaled_confidence, large logits included.")


# --------------------------------------------------------------------------------------------
# epsilon-audit


def check_calibrated_epsilon(fn: Callable[..., Any]) -> Feedback:
    """The ε audit: the calibrated ε of one rule from its held-out error counts.

    ``fn(false_positives, false_negatives, n, alpha, delta)`` takes the counts of a rule on ``n``
    held-out models per side, bounds both rates from above with two-sided ``1 − alpha``
    Clopper–Pearson intervals and returns ``max(0, ln((1 − δ − FPR⁺)/FNR⁺), ln((1 − δ − FNR⁺)/FPR⁺))``,
    as :func:`mu_lib.audit.calibrated_epsilons` does per example. The reference combines
    :func:`mu_lib.audit.clopper_pearson` and :func:`mu_lib.audit.eps_from_rates`.

    Example:
        >>> from scipy.stats import beta
        >>> def calibrated(false_positives, false_negatives, n, alpha, delta):
        ...     up = [1.0 if k == n else beta.ppf(1 - alpha / 2, k + 1, n - k)
        ...           for k in (false_positives, false_negatives)]
        ...     return max(0.0, np.log((1 - delta - up[0]) / up[1]), np.log((1 - delta - up[1]) / up[0]))
        >>> check_calibrated_epsilon(calibrated).passed
        True
    """
    def ref(kfp: int, kfn: int, n: int, alpha: float, delta: float) -> float:
        _, fpr_hi = audit.clopper_pearson(kfp, n, alpha=alpha)
        _, fnr_hi = audit.clopper_pearson(kfn, n, alpha=alpha)
        return float(audit.eps_from_rates(fpr_hi, fnr_hi, delta=delta))

    spec = [
        ("a perfect separation on 32 models per side is capped, not infinite", 0, 0, 32, 0.05, 1e-5,
         "use the *upper* ends of the Clopper–Pearson intervals; with k = 0 the upper end is 1 − (α/2)^(1/n) > 0"),
        ("α is split over the two tails (two-sided interval)", 0, 0, 32, 0.05, 0.0,
         "the upper end is the 1 − α/2 quantile of Beta(k + 1, n − k), not the 1 − α quantile"),
        ("counts are bounded separately and both sides of the max are kept", 1, 12, 32, 0.05, 1e-5,
         "bound FPR and FNR each with its own interval, then take the larger of the two logarithms"),
        ("a rule no better than chance certifies ε = 0", 16, 16, 32, 0.05, 1e-5, "clamp the result at 0"),
        ("a smaller α gives a smaller (more cautious) ε", 2, 5, 100, 0.01, 1e-5, "use the alpha you are given"),
    ]
    slips = lambda kfp, kfn, n, a, d: (  # noqa: E731
        (float(audit.eps_from_rates(kfp / n, kfn / n, delta=d)),
         "that is the plug-in ε of the empirical rates k/n; bound each rate by the upper end of its "
         "Clopper–Pearson interval instead"),
        (ref(kfp, kfn, n, 2 * a, d), "α must be split over the two tails: the upper end is the 1 − α/2 quantile "
         "of Beta(k + 1, n − k), not the 1 − α quantile"),
    )
    cases = [Case(p, {"false_positives": kfp, "false_negatives": kfn, "n": n, "alpha": a, "delta": d},
                  ref(kfp, kfn, n, a, d), h, slips=slips(kfp, kfn, n, a, d)) for p, kfp, kfn, n, a, d, h in spec]
    return run_cases("calibrated_epsilon", fn, cases, rtol=1e-6,
                     success="your calibrated ε matches the library's Clopper–Pearson bound on every case.")


# --------------------------------------------------------------------------------------------
# competition-scoring


def check_forget_score(fn: Callable[..., Any]) -> Feedback:
    """Competition scoring: the forget score F from per-example ε, ``fn(epsilons, num_models)``.

    Each example earns ``2^(−floor(ε / 0.5))`` points while ε is below ``ceil(ln(N − 1))``, else 0;
    F is the mean. The reference is :func:`mu_lib.audit.forget_score_from_epsilons`.

    Example:
        >>> def f_score(epsilons, num_models):
        ...     eps = np.asarray(epsilons, dtype=float)
        ...     pts = np.where(eps < np.ceil(np.log(num_models - 1)), 2.0 ** -np.floor(eps / 0.5), 0.0)
        ...     return pts.mean()
        >>> check_forget_score(f_score).passed
        True
    """
    spec = [
        ("ε = 0 earns the full point", [0.0, 0.0], 64, "an example with ε in [0, 0.5) earns 1"),
        ("each half unit of ε halves the points", [0.49, 0.5, 1.2], 64,
         "points are 2^(−floor(ε / 0.5)): 1 for [0, 0.5), 1/2 for [0.5, 1), 1/4 for [1, 1.5), ..."),
        ("the cap ε = 50 (perfectly separated) earns nothing", [50.0, 0.2], 64,
         "ε at or beyond the last bucket's end ceil(ln(N − 1)) earns 0 points"),
        ("the last bucket depends on N", [4.9, 5.0], 64,
         "for N = 64, ceil(ln 63) = 5: ε = 5.0 earns 0, ε = 4.9 earns 2^-9"),
        ("the last bucket depends on N", [2.9, 3.0], 16, "for N = 16, ceil(ln 15) = 3: ε = 3.0 earns 0"),
        ("F is the mean over examples", [0.0, 0.7, 50.0, 1.0], 32, "average the points, do not sum them"),
    ]
    cases = [Case(p, {"epsilons": np.array(e), "num_models": n},
                  audit.forget_score_from_epsilons(np.array(e), num_models=n), h) for p, e, n, h in spec]
    return run_cases("forget_score", fn, cases, rtol=1e-12,
                     success="your F agrees with audit.forget_score_from_epsilons, buckets and cap included.")


# --------------------------------------------------------------------------------------------
# beyond-the-competition


def check_indiscernibility(fn: Callable[..., Any]) -> Feedback:
    """Beyond the competition: indiscernibility ``1 − |2 · acc − 1|`` of a membership attack.

    ``fn(mia_accuracy)`` maps the accuracy of an attack on a balanced set of forget and test
    examples (a number or an array) to 1 when the attack is at chance and 0 when it is always
    right or always wrong. The reference is :func:`mu_lib.mia.indiscernibility`.

    Example:
        >>> check_indiscernibility(lambda mia_accuracy: 1 - np.abs(2 * np.asarray(mia_accuracy) - 1)).passed
        True
    """
    spec = [
        ("an attack at chance (accuracy 0.5) leaves the forget set indiscernible: 1", 0.5,
         "1 − |2 · 0.5 − 1| = 1"),
        ("an attack that is always right gives 0", 1.0, "1 − |2 · 1 − 1| = 0"),
        ("an attack that is always *wrong* also gives 0: flip its answers and it is always right", 0.0,
         "use the absolute value |2 · acc − 1|, so that accuracies below 0.5 count as much as above"),
        ("the scale is linear and symmetric around 0.5", 0.3, "0.3 and 0.7 are equally far from chance: both give 0.6"),
        ("it works elementwise on an array of accuracies", np.array([0.5, 0.62, 0.38, 0.9]),
         "use numpy operations (np.abs), not Python's abs on a list"),
    ]
    cases = [Case(p, {"mia_accuracy": a}, mia.indiscernibility(a), h) for p, a, h in spec]
    return run_cases("indiscernibility", fn, cases, rtol=1e-12, atol=1e-12,
                     success="your indiscernibility matches mia.indiscernibility, below-chance attacks included.")
