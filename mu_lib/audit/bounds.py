"""Hypothesis-test bounds on ε: ε from error rates, Clopper–Pearson intervals, Monte-Carlo lower
bounds from two samples of scores, and the models a calibrated bound needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "eps_from_rates", "clopper_pearson", "EpsilonLowerBound", "epsilon_lower_bound", "DELTA",
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


@dataclass(frozen=True)
class EpsilonLowerBound:
    """Result of :func:`epsilon_lower_bound`.

    Attributes:
        epsilon: the lower bound on ε (≥ 0), at confidence ``1 - alpha``.
        threshold: the score threshold that attains it.
        tpr_lower: Clopper–Pearson lower bound of the true-positive rate at that threshold.
        fpr_upper: Clopper–Pearson upper bound of the false-positive rate at that threshold.
        empirical_epsilon: the point estimate (no confidence interval) at that threshold.
    """

    epsilon: float
    threshold: float
    tpr_lower: float
    fpr_upper: float
    empirical_epsilon: float


def epsilon_lower_bound(scores_in: np.ndarray, scores_out: np.ndarray, *, alpha: float = 0.05,
                        delta: float = 0.0, group_size: int = 1) -> EpsilonLowerBound:
    """Monte-Carlo lower bound on ε from scores of models trained in two worlds (Jagielski et al.).

    ``scores_in`` are one scalar per model trained *with* the target example (world D1) and
    ``scores_out`` one per model trained *without* it (D0); larger scores should indicate D1.
    For every threshold ``t`` among the observed scores, the test "D1 iff score > t" has counts
    ``k1 = #{D1 scores > t}`` and ``k0 = #{D0 scores > t}``; the Clopper–Pearson lower bound of
    the TPR and upper bound of the FPR give ``ε ≥ ln((p1 − δ) / p0)``; when ``p0 + p1 > 1`` the
    complementary test is used. The bound is divided by ``group_size`` (group privacy for
    ``group_size`` copies of the target) and maximised over thresholds.

    Choosing the best threshold on the same scores biases the bound upward; for a guarantee,
    choose the threshold on one half of the models and call this function on the other half.

    Args:
        scores_in: scores of models trained on D1.
        scores_out: scores of models trained on D0.
        alpha: the bound holds with probability ``1 - alpha`` for a fixed threshold.
        delta: the δ of (ε, δ).
        group_size: copies of the target example inserted (k poisons).

    Returns:
        An :class:`EpsilonLowerBound`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = epsilon_lower_bound(rng.normal(3, 1, 1000), rng.normal(0, 1, 1000), alpha=0.05)
        >>> 2.0 < r.epsilon < r.empirical_epsilon
        True
    """
    s1 = np.asarray(scores_in, dtype=np.float64).ravel()
    s0 = np.asarray(scores_out, dtype=np.float64).ravel()
    for name, a in (("scores_in", s1), ("scores_out", s0)):
        if a.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    thresholds = np.unique(np.r_[s1, s0, min(s1.min(), s0.min()) - 1.0])
    k1 = s1.size - np.searchsorted(np.sort(s1), thresholds, side="right")
    k0 = s0.size - np.searchsorted(np.sort(s0), thresholds, side="right")
    p1, _ = clopper_pearson(k1, s1.size, alpha=alpha)
    _, p0 = clopper_pearson(k0, s0.size, alpha=alpha)
    flip = p0 + p1 > 1
    p1, p0 = np.where(flip, 1 - p0, p1), np.where(flip, 1 - p1, p0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.maximum(p1 - delta, 1e-300) / np.maximum(p0, 1e-300))
        eps = np.where((p1 - delta > 0) & (p0 > 0), ratio, 0.0)
    eps = np.maximum(eps, 0.0) / group_size
    best = int(np.argmax(eps))
    emp = eps_from_rates(k0[best] / s0.size, 1 - k1[best] / s1.size, delta=delta) / group_size
    return EpsilonLowerBound(epsilon=float(eps[best]), threshold=float(thresholds[best]), tpr_lower=float(p1[best]),
                             fpr_upper=float(p0[best]), empirical_epsilon=float(emp))


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
