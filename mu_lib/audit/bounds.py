"""Hypothesis-test bounds on ε: ε from error rates, Clopper–Pearson intervals, Monte-Carlo lower
bounds from two samples of scores, and the models a calibrated bound needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "eps_from_rates", "clopper_pearson", "EpsilonLowerBound", "epsilon_lower_bound", "THRESHOLD_CHOICES", "DELTA",
    "max_certifiable_epsilon", "models_needed"
]

def eps_from_rates(fpr: float | np.ndarray, fnr: float | np.ndarray, *, delta: float = 0.0) -> float | np.ndarray:
    """The ε that a test with these error rates certifies, clamped at 0 (vectorised).

    A zero denominator with a positive numerator gives ``inf`` (the worlds are perfectly
    distinguishable); a non-positive numerator contributes nothing.

    Args:
        fpr: false-positive rate(s) in [0, 1].
        fnr: false-negative rate(s) in [0, 1].
        delta: the δ of (ε, δ).

    Returns:
        ε ≥ 0, a float for scalar inputs, else an array.

    Example:
        >>> eps_from_rates(0.5, 0.5), eps_from_rates(0.0, 0.0)
        (0.0, inf)
    """
    fpr_a = np.asarray(fpr, dtype=np.float64)
    fnr_a = np.asarray(fnr, dtype=np.float64)
    for name, a in (("fpr", fpr_a), ("fnr", fnr_a)):
        if not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
            raise ValueError(f"{name} must lie in [0, 1], got {a if a.ndim == 0 else a[(a < 0) | (a > 1)][:5]}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")

    def one_side(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log(np.maximum(num, 1e-300) / np.maximum(den, 1e-300))
            out = np.where(num <= 0, 0.0, np.where(den <= 0, np.inf, ratio))
        return out

    eps = np.maximum(0.0, np.maximum(one_side(1 - delta - fpr_a, fnr_a), one_side(1 - delta - fnr_a, fpr_a)))
    return float(eps) if eps.ndim == 0 else eps


def clopper_pearson(k: int | np.ndarray, n: int | np.ndarray, *, alpha: float = 0.05
                    ) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Exact (Clopper–Pearson) two-sided ``1 - alpha`` confidence interval of a binomial proportion.

    ``alpha / 2`` goes in each tail, as ``statsmodels``' ``proportion_confint(method="beta")``.

    Args:
        k: successes (vectorised).
        n: trials.
        alpha: total error probability.

    Returns:
        ``(lower, upper)``; ``lower = 0`` when ``k = 0`` and ``upper = 1`` when ``k = n``.

    Example:
        >>> lo, hi = clopper_pearson(0, 500, alpha=0.01)
        >>> lo, round(hi, 6)
        (0.0, 0.010541)
    """
    from scipy.stats import beta

    k_a = np.asarray(k, dtype=np.float64)
    n_a = np.asarray(n, dtype=np.float64)
    if (n_a < 1).any() or (k_a < 0).any() or (k_a > n_a).any() or (k_a != np.round(k_a)).any():
        raise ValueError(f"need integers 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    with np.errstate(invalid="ignore"):
        lo = np.where(k_a == 0, 0.0, beta.ppf(alpha / 2, k_a, n_a - k_a + 1))
        hi = np.where(k_a == n_a, 1.0, beta.ppf(1 - alpha / 2, k_a + 1, n_a - k_a))
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


THRESHOLD_CHOICES = ("held_out", "simultaneous", "same_data")
"""How :func:`epsilon_lower_bound` chooses its threshold (see there)."""


@dataclass(frozen=True)
class EpsilonLowerBound:
    """Result of :func:`epsilon_lower_bound`.

    Attributes:
        epsilon: the lower bound on ε (≥ 0), at confidence ``1 - alpha``.
        threshold: the score threshold of the test "D1 iff score > threshold" that attains it.
        tpr_lower: Clopper–Pearson lower bound of the true-positive rate at that threshold.
        fpr_upper: Clopper–Pearson upper bound of the false-positive rate at that threshold.
        empirical_epsilon: the point estimate (no confidence interval) at that threshold, on the
            models the bound was computed on.
        threshold_choice: ``"held_out"``, ``"simultaneous"``, ``"same_data"`` or ``"fixed"``.
        num_models: models per world the rates were measured on (``(in, out)``).
    """

    epsilon: float
    threshold: float
    tpr_lower: float
    fpr_upper: float
    empirical_epsilon: float
    threshold_choice: str = "same_data"
    num_models: tuple[int, int] = (0, 0)


def _validate_scores(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
    s1 = np.asarray(scores_in, dtype=np.float64).ravel()
    s0 = np.asarray(scores_out, dtype=np.float64).ravel()
    for name, a in (("scores_in", s1), ("scores_out", s0)):
        if a.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf")
    return s1, s0


def _bounds_at(s1: np.ndarray, s0: np.ndarray, thresholds: np.ndarray, *, alpha: float, delta: float,
               group_size: int, ci_alpha: tuple[float, float] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bound of the test "D1 iff score > t" at each threshold t, and its ingredients.

    ``ci_alpha`` overrides the two-sided level of the Clopper–Pearson interval of each world's
    rate (default: ``alpha`` for both, i.e. ``alpha / 2`` per tail).
    """
    a1, a0 = ci_alpha if ci_alpha is not None else (alpha, alpha)
    k1 = s1.size - np.searchsorted(np.sort(s1), thresholds, side="right")
    k0 = s0.size - np.searchsorted(np.sort(s0), thresholds, side="right")
    p1, _ = clopper_pearson(k1, s1.size, alpha=a1)
    _, p0 = clopper_pearson(k0, s0.size, alpha=a0)
    p1, p0 = np.atleast_1d(p1), np.atleast_1d(p0)
    flip = p0 + p1 > 1
    p1, p0 = np.where(flip, 1 - p0, p1), np.where(flip, 1 - p1, p0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.maximum(p1 - delta, 1e-300) / np.maximum(p0, 1e-300))
        eps = np.where((p1 - delta > 0) & (p0 > 0), ratio, 0.0)
    return np.maximum(eps, 0.0) / group_size, k1, k0, p1, p0


def _middle_of_best(values: np.ndarray) -> int:
    """Index of the middle one among the entries equal to the maximum."""
    best = np.flatnonzero(values == values.max())
    return int(best[(best.size - 1) // 2])


def epsilon_lower_bound(scores_in: Any, scores_out: Any, *, alpha: float = 0.05, delta: float = 0.0,
                        group_size: int = 1, threshold: str | float = "held_out", seed: int = 0
                        ) -> EpsilonLowerBound:
    """Monte-Carlo lower bound on ε from scores of models trained in two worlds (Jagielski et al.).

    ``scores_in`` are one scalar per model trained *with* the target example (world D1) and
    ``scores_out`` one per model trained *without* it (D0); larger scores should indicate D1.
    A threshold ``t`` defines the test "D1 iff score > t", with counts ``k1 = #{D1 scores > t}``
    and ``k0 = #{D0 scores > t}``; the Clopper–Pearson lower bound ``p1`` of its TPR and upper
    bound ``p0`` of its FPR give ``ε ≥ ln((p1 − δ) / p0)``; when ``p0 + p1 > 1`` the complementary
    test is used. The bound is divided by ``group_size`` (group privacy for ``group_size`` copies
    of the target).

    For a *fixed* threshold this holds with probability ``1 − alpha``. Taking the best threshold
    on the same scores does not: under ε = 0 (identical distributions, 3,000 models per world,
    alpha = 0.05) that maximum is positive in about 9 % of audits. ``threshold`` chooses how the
    bound stays valid:

    * ``"held_out"`` (default): a seeded random half of each world's models chooses the threshold
      (the middle of the equally good ones, among midpoints between observed scores); the bound
      is computed on the other half at that single threshold (Jagielski et al.'s practice). Valid
      for any distributions; it uses half of the models for the bound.
    * ``"simultaneous"``: all models, maximised over all thresholds, with intervals that hold for
      every threshold at once: each world's rate bounds at every count use ``alpha / (2 n)`` per
      tail (a union bound over the n order statistics that the count can stop at), so the whole
      band holds with probability ``1 − alpha``. Valid; stronger than the held-out split when the
      best test has large rates, weaker (by about ``ln(n)``) when it has rates near 0.
    * ``"same_data"``: the old behaviour, maximised over the observed thresholds with pointwise
      intervals. Not a valid ``1 − alpha`` bound (it is biased upward by the choice); kept for
      comparison and for scores that hold one possible test (binary scores with a fixed side).
    * a number: that threshold, fixed before seeing these scores; all models, pointwise intervals.

    Args:
        scores_in: scores of models trained on D1.
        scores_out: scores of models trained on D0.
        alpha: the bound holds with probability ``1 - alpha``.
        delta: the δ of (ε, δ).
        group_size: copies of the target example inserted (k poisons).
        threshold: ``"held_out"``, ``"simultaneous"``, ``"same_data"`` or a fixed threshold.
        seed: seed of the split for ``"held_out"``.

    Returns:
        An :class:`EpsilonLowerBound`.

    Raises:
        ValueError: on empty or non-finite scores, ``group_size < 1``, an unknown ``threshold``,
            or ``"held_out"`` with fewer than 2 models in a world.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> s_in, s_out = rng.normal(3, 1, 1000), rng.normal(0, 1, 1000)
        >>> r = epsilon_lower_bound(s_in, s_out, alpha=0.05)
        >>> 1.5 < r.epsilon < r.empirical_epsilon, r.threshold_choice, r.num_models
        (True, 'held_out', (500, 500))
        >>> same = epsilon_lower_bound(s_in, s_out, threshold="same_data")
        >>> same.epsilon > r.epsilon  # more models, and the optimistic choice
        True
    """
    s1, s0 = _validate_scores(scores_in, scores_out)
    if int(group_size) != group_size or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    fixed = not isinstance(threshold, str)
    if fixed and not np.isfinite(threshold):
        raise ValueError(f"a fixed threshold must be a finite number, got {threshold!r}")
    if not fixed and threshold not in THRESHOLD_CHOICES:
        raise ValueError(f"threshold must be one of {THRESHOLD_CHOICES} or a number, got {threshold!r}")
    kw = dict(alpha=alpha, delta=delta, group_size=group_size)
    ci = None
    if threshold == "held_out":
        if min(s1.size, s0.size) < 2:
            raise ValueError(f"threshold='held_out' needs at least 2 models per world, got {s1.size} and {s0.size}")
        rng = np.random.default_rng(seed)
        p_in, p_out = rng.permutation(s1.size), rng.permutation(s0.size)
        sel1, s1 = s1[p_in[: s1.size // 2]], s1[p_in[s1.size // 2:]]
        sel0, s0 = s0[p_out[: s0.size // 2]], s0[p_out[s0.size // 2:]]
        observed = np.unique(np.r_[sel1, sel0])
        candidates = np.r_[observed[0] - 1.0, (observed[:-1] + observed[1:]) / 2, observed[-1] + 1.0]
        chosen = candidates[_middle_of_best(_bounds_at(sel1, sel0, candidates, **kw)[0])]
        thresholds = np.array([chosen])
    elif fixed:
        thresholds = np.array([float(threshold)])
    else:
        thresholds = np.unique(np.r_[s1, s0, min(s1.min(), s0.min()) - 1.0])
        if threshold == "simultaneous":
            ci = (alpha / s1.size, alpha / s0.size)
    eps, k1, k0, p1, p0 = _bounds_at(s1, s0, thresholds, ci_alpha=ci, **kw)
    best = int(np.argmax(eps))
    emp = eps_from_rates(k0[best] / s0.size, 1 - k1[best] / s1.size, delta=delta) / group_size
    return EpsilonLowerBound(epsilon=float(eps[best]), threshold=float(thresholds[best]), tpr_lower=float(p1[best]),
                             fpr_upper=float(p0[best]), empirical_epsilon=float(emp),
                             threshold_choice="fixed" if fixed else str(threshold),
                             num_models=(int(s1.size), int(s0.size)))


DELTA = 1e-5
"""δ of the competition's metric."""
def _bound_from_upper_rates(fpr_hi: np.ndarray, fnr_hi: np.ndarray, delta: float) -> np.ndarray:
    """``max(0, ln((1−δ−FPR⁺)/FNR⁺), ln((1−δ−FNR⁺)/FPR⁺))``: ε certified by upper rate bounds."""
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.where(1 - delta - fpr_hi > 0, np.log(np.maximum(1 - delta - fpr_hi, 1e-300) / fnr_hi), 0.0)
        two = np.where(1 - delta - fnr_hi > 0, np.log(np.maximum(1 - delta - fnr_hi, 1e-300) / fpr_hi), 0.0)
    return np.maximum(0.0, np.maximum(one, two))


def max_certifiable_epsilon(num_models: int, *, alpha: float = 0.05, delta: float = DELTA) -> float:
    """Largest ε that :func:`calibrated_epsilons` can report with N models per side.

    It is reached when the held-out ``n = N − N // 2`` models per side are perfectly separated:
    both Clopper–Pearson upper ends are u = 1 − (alpha/2)^(1/n), and ε = ln((1 − δ − u) / u).

    Args:
        num_models: N, models per side (≥ 4).
        alpha: error probability per example.
        delta: the δ of (ε, δ).

    Returns:
        The largest certifiable ε (0 if none can be certified).

    Example:
        >>> round(max_certifiable_epsilon(64), 3), round(max_certifiable_epsilon(512), 3)
        (2.102, 4.233)
    """
    if int(num_models) != num_models or num_models < 4:
        raise ValueError(f"num_models must be an integer >= 4, got {num_models!r}")
    _, u = clopper_pearson(0, num_models - num_models // 2, alpha=alpha)
    return float(_bound_from_upper_rates(np.asarray(u), np.asarray(u), delta))


def models_needed(epsilon: float, *, alpha: float = 0.05, delta: float = DELTA) -> int:
    """Fewest models per side for which :func:`calibrated_epsilons` can certify ``epsilon``.

    Args:
        epsilon: the ε to be certifiable (> 0).
        alpha: error probability per example.
        delta: the δ of (ε, δ).

    Returns:
        The smallest even N with ``max_certifiable_epsilon(N) >= epsilon``.

    Example:
        >>> models_needed(0.5), models_needed(2.0), models_needed(np.log(511))
        (16, 60, 3774)
    """
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    if not 0 < alpha < 1 or not 0 <= delta < 1:
        raise ValueError(f"need alpha in (0, 1) and delta in [0, 1), got {alpha!r}, {delta!r}")
    # u = 1 - (alpha/2)^(1/n) must be at most (1 - δ) / (1 + e^ε): solve for n, then check.
    u_max = (1 - delta) / (1 + np.exp(epsilon))
    n = max(2, int(np.ceil(np.log(alpha / 2) / np.log1p(-u_max))) - 1)
    while max_certifiable_epsilon(2 * n, alpha=alpha, delta=delta) < epsilon:
        n += 1
    return 2 * n
