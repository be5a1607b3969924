"""The competition's aggregation: points per forget example, the forget score F and the final
score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mu_lib.audit._rules import _competition_scan, _to_numpy, _validate_confidences
from mu_lib.audit.bounds import DELTA

__all__ = ["forget_points", "forget_score", "forget_score_from_epsilons", "final_score"]

def forget_points(epsilons: Any, *, num_models: int) -> np.ndarray:
    """Points H(s) of each example in the competition's forget score, as the released code counts.

    Buckets [0, 0.5), [0.5, 1), … worth 1, 1/2, 1/4, … are kept while their end is at most
    ``ceil(ln(N − 1))``; an example scores its bucket's points, or 0 if ε is at or beyond the last
    bucket's end (which includes the cap 50). Equivalently H = 2^(−floor(ε / 0.5)) if
    ε < ceil(ln(N − 1)), else 0. (The competition's write-up states 13 buckets up to 6.5 for
    N = 512; the code builds 14 up to 7, which gives the same points since ε ≤ 6.236 there.)

    Args:
        epsilons: per-example ε ≥ 0 (``inf`` allowed).
        num_models: N, the number of models per side (≥ 2).

    Returns:
        float64 array of points in {0} ∪ {2^-k}.

    Example:
        >>> forget_points([0.0, 0.49, 0.5, 4.9, 5.0, 50.0], num_models=64).tolist()
        [1.0, 1.0, 0.5, 0.001953125, 0.0, 0.0]
    """
    eps = _to_numpy(epsilons).ravel()
    if np.isnan(eps).any() or (eps < 0).any():
        raise ValueError(f"epsilons must be >= 0 and not NaN, got {eps[np.isnan(eps) | (eps < 0)][:5]}")
    if int(num_models) != num_models or num_models < 2:
        raise ValueError(f"num_models must be an integer >= 2, got {num_models!r}")
    num_buckets = int(2 * np.ceil(np.log(num_models - 1)))  # bucket ends 0.5, 1.0, ... <= max_epsilon
    bucket = np.floor(np.minimum(eps, 2.0 * num_buckets) * 2.0)  # first bucket whose end exceeds ε
    return np.where(bucket < num_buckets, np.exp2(-np.minimum(bucket, num_buckets)), 0.0)


def forget_score_from_epsilons(epsilons: Any, *, num_models: int) -> float:
    """The competition's forgetting quality F: the mean of :func:`forget_points`.

    Example:
        >>> forget_score_from_epsilons([0.6931071, 50.0, 50.0], num_models=8)  # golden tiny case
        0.16666666666666666
    """
    points = forget_points(epsilons, num_models=num_models)
    if points.size == 0:
        raise ValueError("epsilons is empty")
    return float(np.sum(points)) / points.size  # sums of powers of 2 are exact in any order


def forget_score(unlearned: Any, retrained: Any, *, delta: float = DELTA, device: Any = None) -> float:
    """The competition's forgetting quality F from confidences of N unlearned and N retrained models.

    ``forget_score_from_epsilons(per_example_epsilons(unlearned, retrained), num_models=N)``; the
    same value as the organisers' ``compute_forget_score_from_confs``.

    Args:
        unlearned: ``[num_models, num_examples]`` confidences of the unlearned models.
        retrained: the same for the retrained models.
        delta: the δ of (ε, δ).
        device: torch device for the counting.

    Returns:
        F in [0, 1].

    Example:
        >>> rng = np.random.default_rng(0)
        >>> f = forget_score(rng.normal(size=(64, 20)), rng.normal(size=(64, 20)))
        >>> 0.05 < f < 0.4  # identical distributions score far below 1
        True
    """
    u, r = _validate_confidences(unlearned, retrained, delta=delta)
    return forget_score_from_epsilons(_competition_scan(u, r, delta, device)[0], num_models=u.shape[0])


def final_score(forget_score: float, *, retain_acc_unlearned: Any, retain_acc_retrained: Any,
                test_acc_unlearned: Any, test_acc_retrained: Any) -> float:
    """The competition's final score ``F · (RA_U / RA_R) · (TA_U / TA_R)``, uncapped.

    Each accuracy argument is the per-model accuracies of one side (any unit, e.g. percent) or a
    scalar; their means over models enter the ratios, multiplied in the order of the released
    ``main.py``. A method more accurate than retraining scores above F.

    Args:
        forget_score: F, e.g. from :func:`forget_score`.
        retain_acc_unlearned: retain accuracies of the unlearned models.
        retain_acc_retrained: retain accuracies of the retrained models.
        test_acc_unlearned: test accuracies of the unlearned models.
        test_acc_retrained: test accuracies of the retrained models.

    Returns:
        The final score.

    Example:
        >>> final_score(1 / 6, retain_acc_unlearned=[97.0] * 8, retain_acc_retrained=[100.0] * 8,
        ...             test_acc_unlearned=[90.0] * 8, test_acc_retrained=[95.0] * 8)
        0.15315789473684208
    """
    if not (np.isfinite(forget_score) and 0 <= forget_score <= 1):
        raise ValueError(f"forget_score must lie in [0, 1], got {forget_score!r}")
    means = {}
    for name, acc in (("retain_acc_unlearned", retain_acc_unlearned), ("retain_acc_retrained", retain_acc_retrained),
                      ("test_acc_unlearned", test_acc_unlearned), ("test_acc_retrained", test_acc_retrained)):
        a = _to_numpy(acc)
        if a.size == 0 or not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"{name} must be non-empty, finite and >= 0, got {a.ravel()[:5]}")
        means[name] = np.mean(a)
    for name in ("retain_acc_retrained", "test_acc_retrained"):
        if means[name] <= 0:
            raise ValueError(f"{name} must have a positive mean, got {means[name]}")
    return float(forget_score * (means["retain_acc_unlearned"] / means["retain_acc_retrained"])
                 * (means["test_acc_unlearned"] / means["test_acc_retrained"]))
