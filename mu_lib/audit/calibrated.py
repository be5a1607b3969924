"""The calibrated forget score with its status: a number only when the test could have told.

The split-half calibrated ε (:func:`mu_lib.audit.calibrated_epsilons`) is a per-example lower
bound that holds with probability ``1 − alpha``, but with few models it cannot certify much: with
N models per side it certifies at most :func:`mu_lib.audit.max_certifiable_epsilon` (N), which is
0 at N ≤ 12 and about 0.54 at N = 16. A method that forgets nothing then still earns a
calibrated score near 1, because every example stays in the first bucket [0, 0.5) of the
competition's points. :func:`calibrated_forget_score` therefore returns the score together with
whether the test was *conclusive* (it could certify the first bucket edge, 0.5) and reports
``score = NaN`` when it was not, so that no report prints a bare number from a test that could
not have failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mu_lib.audit._rules import _validate_confidences
from mu_lib.audit.bounds import DELTA, max_certifiable_epsilon
from mu_lib.audit.epsilons import calibrated_epsilons
from mu_lib.audit.score import forget_points

__all__ = ["FIRST_BUCKET_EDGE", "CalibratedForgetScore", "calibrated_forget_score"]

FIRST_BUCKET_EDGE = 0.5
"""The end of the competition's first bucket [0, 0.5): an example with ε below it earns 1 point."""


@dataclass(frozen=True)
class CalibratedForgetScore:
    """Result of :func:`calibrated_forget_score`.

    Attributes:
        score: the calibrated forget score F (mean points of the calibrated per-example ε), or
            ``NaN`` when the test is inconclusive.
        conclusive: whether the largest ε the test can certify at this N reaches the first bucket
            edge (0.5), i.e. whether a method that forgets nothing could have scored below 1.
        max_certifiable_epsilon: the largest ε the calibrated test can certify with these N
            models per side (0 when N < 4).
        floor: the lowest score the test can give at this N: the score of a method whose models
            are perfectly separated from the retrained ones (``NaN`` when inconclusive). A score
            near the floor means "as distinguishable as this N can show".
        epsilons: the calibrated per-example ε (all ``NaN`` when N < 4).
        num_models: N, models per side.
        alpha: each per-example ε holds with probability at least ``1 − alpha``.
        delta: the δ of (ε, δ).
    """

    score: float
    conclusive: bool
    max_certifiable_epsilon: float
    floor: float
    epsilons: np.ndarray
    num_models: int
    alpha: float
    delta: float

    def __str__(self) -> str:
        """A reader-facing label: the score with its status, or why there is none."""
        if not self.conclusive:
            return (f"inconclusive (N = {self.num_models} certifies ε ≤ {self.max_certifiable_epsilon:.2f} "
                    f"< {FIRST_BUCKET_EDGE})")
        return (f"{self.score:.3f} (N = {self.num_models}: certifies ε ≤ {self.max_certifiable_epsilon:.2f}, "
                f"floor {self.floor:.3f})")


def calibrated_forget_score(unlearned: Any, retrained: Any, *, alpha: float = 0.05, delta: float = DELTA,
                            seed: int = 0, device: Any = None) -> CalibratedForgetScore:
    """The calibrated forget score of :func:`mu_lib.audit.calibrated_epsilons`, with its status.

    The per-example ε are the split-half Clopper–Pearson lower bounds of
    :func:`~mu_lib.audit.calibrated_epsilons` (each valid with probability ``1 − alpha``), scored
    with the competition's buckets. The test is *conclusive* when
    :func:`~mu_lib.audit.max_certifiable_epsilon` (N) reaches the first bucket edge 0.5; otherwise
    every method, including one that forgets nothing, scores 1, so the score is ``NaN``. Even when
    conclusive, a small N keeps the score from going low: ``floor`` is what a perfectly separated
    method scores (0.5 at N = 16, 0.25 at N = 32 with the default ``alpha``). For a test of
    "indistinguishable from retraining" that is powerful at small N, see
    :func:`mu_lib.audit.permutation_test`.

    Args:
        unlearned: ``[num_models, num_examples]`` confidences of the unlearned models (N ≥ 2).
        retrained: the same for the retrained models.
        alpha: error probability per example, in (0, 1).
        delta: the δ of (ε, δ).
        seed: seed of the split of each side's models into halves.
        device: torch device for the counting.

    Returns:
        A :class:`CalibratedForgetScore`; ``str()`` of it is a label for reports.

    Raises:
        ValueError: on invalid confidences (see :func:`~mu_lib.audit.per_example_epsilons`), an
            ``alpha`` outside (0, 1) or a ``delta`` outside [0, 1).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = rng.normal(size=(8, 20))
        >>> small = calibrated_forget_score(r + 10, r)  # forgets nothing, but N = 8
        >>> small.conclusive, small.score, small.max_certifiable_epsilon
        (False, nan, 0.0)
        >>> r = rng.normal(size=(64, 20))
        >>> big = calibrated_forget_score(r + 10, r)
        >>> big.conclusive, big.score == big.floor, round(big.max_certifiable_epsilon, 3)
        (True, True, 2.102)
        >>> print(big)
        0.062 (N = 64: certifies ε ≤ 2.10, floor 0.062)
    """
    u, r = _validate_confidences(unlearned, retrained, delta=delta, min_models=2)
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    num_models = u.shape[0]
    if num_models < 4:  # two held-out models per side or fewer certify nothing
        return CalibratedForgetScore(score=math.nan, conclusive=False, max_certifiable_epsilon=0.0, floor=math.nan,
                                     epsilons=np.full(u.shape[1], np.nan), num_models=num_models,
                                     alpha=float(alpha), delta=float(delta))
    cal = calibrated_epsilons(u, r, delta=delta, alpha=alpha, seed=seed, device=device)
    top = max_certifiable_epsilon(num_models, alpha=alpha, delta=delta)
    conclusive = bool(top >= FIRST_BUCKET_EDGE)
    floor = float(forget_points([top], num_models=num_models)[0]) if conclusive else math.nan
    return CalibratedForgetScore(score=float(cal.forget_score) if conclusive else math.nan, conclusive=conclusive,
                                 max_certifiable_epsilon=float(top), floor=floor, epsilons=cal.epsilons,
                                 num_models=num_models, alpha=float(alpha), delta=float(delta))
