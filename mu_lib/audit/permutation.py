"""A permutation test of "indistinguishable from retraining", per forget example, on the
competition's own ε statistic, with the p-values combined across examples.

The competition's per-example ε (:func:`mu_lib.audit.per_example_epsilons`) is biased upward, and
the calibrated lower bound (:func:`mu_lib.audit.calibrated_epsilons`) needs hundreds of models to
certify much. A permutation test asks a narrower question that few models can answer: is the
example's ε larger than it would be if the labels "unlearned" and "retrained" were meaningless?
Under that hypothesis (the two sides' confidences are identically distributed, the ideal of exact
unlearning, ε = δ = 0) the 2N models are exchangeable, so recomputing the statistic on random
relabellings of the pooled models gives an exact test (Phipson and Smyth 2010 for the ``+1`` in
the p-value, which keeps it valid with randomly drawn relabellings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mu_lib.audit._rules import _competition_scan, _validate_confidences
from mu_lib.audit.bounds import DELTA

__all__ = ["CORRECTIONS", "PermutationTest", "permutation_test", "adjust_p_values"]

CORRECTIONS = ("holm", "by")
"""Multiplicity corrections: Holm (1979), family-wise error; Benjamini and Yekutieli (2001), false
discovery rate under any dependence between the examples."""


def adjust_p_values(p_values: Any, *, correction: str = "holm") -> np.ndarray:
    """Adjusted p-values: reject example j at level alpha iff its adjusted p-value is ≤ alpha.

    ``"holm"``: step-down Holm, ``max_{k ≤ i} min(1, (m − k + 1) p_(k))`` for the i-th smallest,
    which controls the probability of any false rejection at alpha. ``"by"``: step-up
    Benjamini–Yekutieli, ``min_{k ≥ i} min(1, m c(m) p_(k) / k)`` with ``c(m) = Σ_{i ≤ m} 1/i``,
    which controls the expected fraction of false rejections at alpha under any dependence.

    Args:
        p_values: p-values in [0, 1] (any shape; adjusted jointly).
        correction: ``"holm"`` or ``"by"``.

    Returns:
        float64 array of adjusted p-values, the shape of ``p_values``.

    Example:
        >>> adjust_p_values([0.01, 0.04, 0.03], correction="holm").round(4).tolist()
        [0.03, 0.06, 0.06]
        >>> adjust_p_values([0.01, 0.02], correction="by").round(4).tolist()
        [0.03, 0.03]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0 or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p_values must be a non-empty array of numbers in [0, 1], got {p.ravel()[:5]}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    flat = p.ravel()
    m = flat.size
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    k = np.arange(1, m + 1)
    if correction == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - k + 1) * ranked))
    else:
        c_m = float(np.sum(1.0 / k))
        adjusted = np.minimum.accumulate(np.minimum(1.0, m * c_m * ranked / k)[::-1])[::-1]
    out = np.empty(m)
    out[order] = adjusted
    return out.reshape(p.shape)


@dataclass(frozen=True)
class PermutationTest:
    """Result of :func:`permutation_test`.

    Attributes:
        statistic: per example, the competition's ε on the real labels.
        p_values: per example, ``(1 + #{permuted ε ≥ observed ε}) / (1 + num_permutations)``.
        adjusted_p_values: the p-values after ``correction`` across examples.
        rejected: per example, whether "indistinguishable from retraining" is rejected at ``alpha``.
        num_distinguishable: how many examples are rejected.
        distinguishable: the combined decision: at least one example is rejected, a level-``alpha``
            test of "every example is indistinguishable" under either correction.
        alpha: the level.
        correction: ``"holm"`` or ``"by"``.
        num_permutations: relabellings drawn.
        min_p_value: the smallest p-value the draws can give, ``1 / (1 + num_permutations)``.
        num_models: N, models per side.
    """

    statistic: np.ndarray
    p_values: np.ndarray
    adjusted_p_values: np.ndarray
    rejected: np.ndarray
    num_distinguishable: int
    distinguishable: bool
    alpha: float
    correction: str
    num_permutations: int
    min_p_value: float
    num_models: int

    def __str__(self) -> str:
        """A reader-facing label of the combined decision."""
        verdict = "distinguishable" if self.distinguishable else "not distinguishable"
        return (f"{verdict} from retraining: {self.num_distinguishable} of {self.statistic.size} examples at "
                f"alpha = {self.alpha:g} ({self.correction}, N = {self.num_models}, "
                f"{self.num_permutations} permutations)")


def _needed_permutations(num_examples: int, alpha: float, correction: str) -> int:
    """Fewest permutations for which the correction rejects every example when all have the
    smallest p-value ``1 / (1 + P)`` (Holm: about m / alpha; BY: about c(m) / alpha; minus one),
    checked with the same arithmetic as :func:`adjust_p_values`."""
    factor = num_examples if correction == "holm" else float(np.sum(1.0 / np.arange(1, num_examples + 1)))
    needed = max(1, int(np.ceil(factor / alpha)) - 2)
    while adjust_p_values(np.full(num_examples, 1.0 / (1.0 + needed)), correction=correction).max() > alpha:
        needed += 1
    return needed


def permutation_test(unlearned: Any, retrained: Any, *, num_permutations: int | None = None, alpha: float = 0.05,
                     correction: str = "by", delta: float = DELTA, seed: int = 0, device: Any = None,
                     batch_columns: int = 4096) -> PermutationTest:
    """Per-example permutation test of "unlearned and retrained models are indistinguishable".

    For each forget example the statistic is the competition's ε
    (:func:`~mu_lib.audit.per_example_epsilons`) of the N unlearned against the N retrained
    confidences. Each of ``num_permutations`` seeded draws shuffles the 2N models (rows, the same
    shuffle for every example), calls the first N "unlearned" and the rest "retrained" and
    recomputes every example's ε. The p-value of an example is
    ``(1 + #{draws with ε ≥ observed}) / (1 + num_permutations)``, which is valid (never below its
    level) for any number of draws, because under the hypothesis the observed labelling is one more
    exchangeable draw. The per-example p-values are combined with ``correction`` (Holm's family-wise
    or Benjamini–Yekutieli's false-discovery control, both valid under any dependence between
    examples); ``num_distinguishable`` counts the rejected examples.

    What it tests: exchangeability of the 2N models for that example, i.e. ε = δ = 0 (the ideal of
    exact retraining); it uses all 2N models, so it has power at N = 32 where the calibrated lower
    bound certifies little. What it does not give: a size of the leakage (a rejection says "not
    identical", not "ε ≥ 1"); use :func:`~mu_lib.audit.calibrated_epsilons` for a bound. As every
    audit of the competition's setting, it is conditional on the one original model that all
    unlearned models start from.

    Args:
        unlearned: ``[num_models, num_examples]`` confidences of the unlearned models (N ≥ 2).
        retrained: the same for the retrained models.
        num_permutations: relabellings to draw. ``None``: the fewest for which the correction can
            reject every example at ``alpha`` (Holm: ``ceil(m / alpha) − 1``; BY:
            ``ceil(c(m) / alpha) − 1``), at least 199. Cost: ``num_permutations × num_examples``
            evaluations of the statistic.
        alpha: level of the test, in (0, 1).
        correction: ``"by"`` (default; the count of rejected examples has its false-discovery rate
            controlled at ``alpha``, and when no example differs any rejection is false, so the
            combined decision is a level-``alpha`` test) or ``"holm"`` (no false rejection with
            probability ``1 − alpha``; needs ``m / alpha`` permutations for m examples).
        delta: the δ of the statistic.
        seed: seed of the relabellings.
        device: torch device for the counting.
        batch_columns: permuted examples evaluated per call of the engine (bounds memory).

    Returns:
        A :class:`PermutationTest`.

    Raises:
        ValueError: on invalid confidences, ``alpha``, ``correction``, or a ``num_permutations``
            too small for the correction to reject anything (the message names the minimum).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = rng.normal(size=(16, 5))
        >>> test = permutation_test(r + 3.0, rng.normal(size=(16, 5)))  # forgets nothing
        >>> test.distinguishable, test.num_distinguishable, test.num_permutations
        (True, 5, 199)
        >>> permutation_test(rng.normal(size=(16, 5)), r).num_distinguishable
        0
    """
    u, r = _validate_confidences(unlearned, retrained, delta=delta, min_models=2)
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    num_models, num_examples = u.shape
    needed = _needed_permutations(num_examples, float(alpha), correction)
    if num_permutations is None:
        num_permutations = max(199, needed)
    if int(num_permutations) != num_permutations or num_permutations < 1:
        raise ValueError(f"num_permutations must be a positive integer, got {num_permutations!r}")
    if num_permutations < needed:
        raise ValueError(f"num_permutations={num_permutations} is too small: with {num_examples} examples, "
                         f"{correction!r} and alpha={alpha} no example can be rejected below {needed} "
                         f"permutations" + (" (or use correction='by', or fewer examples)" if correction == "holm"
                                            else " (or fewer examples)"))
    if int(batch_columns) != batch_columns or batch_columns < 1:
        raise ValueError(f"batch_columns must be a positive integer, got {batch_columns!r}")
    num_permutations = int(num_permutations)
    observed = _competition_scan(u, r, delta, device)[0]
    pooled = np.concatenate([u, r], axis=0)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(num_examples, dtype=np.int64)
    per_batch = max(1, int(batch_columns) // num_examples)
    done = 0
    while done < num_permutations:
        draws = min(per_batch, num_permutations - done)
        rows = np.stack([rng.permutation(2 * num_models) for _ in range(draws)])  # [draws, 2N]
        shuffled = pooled[rows]  # [draws, 2N, m]
        side_u = shuffled[:, :num_models].transpose(1, 0, 2).reshape(num_models, draws * num_examples)
        side_r = shuffled[:, num_models:].transpose(1, 0, 2).reshape(num_models, draws * num_examples)
        eps = _competition_scan(side_u, side_r, delta, device)[0].reshape(draws, num_examples)
        exceed += np.count_nonzero(eps >= observed, axis=0)
        done += draws
    p_values = (1.0 + exceed) / (1.0 + num_permutations)
    adjusted = adjust_p_values(p_values, correction=correction)
    rejected = adjusted <= alpha
    return PermutationTest(statistic=observed, p_values=p_values, adjusted_p_values=adjusted, rejected=rejected,
                           num_distinguishable=int(rejected.sum()), distinguishable=bool(rejected.any()),
                           alpha=float(alpha), correction=correction, num_permutations=num_permutations,
                           min_p_value=1.0 / (1.0 + num_permutations), num_models=num_models)
