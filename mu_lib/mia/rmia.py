"""RMIA, the relative membership-inference attack of Zarifzadeh, Liu and Shokri (ICML 2024), offline
variant, and its use to compare unlearned with retrained models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mu_lib.mia._populations import check_logits, check_pair, check_population
from mu_lib.mia.attacks import AttackResult, attack_from_scores

__all__ = ["true_class_probability", "rmia_offline", "tune_offline_a", "URmiaResult", "rmia_unlearning"]

OFFLINE_A_GRID = tuple(np.round(np.arange(0.0, 1.01, 0.1), 1))


def true_class_probability(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """RMIA's signal: the softmax probability of the true class, ``[..., K] -> [...]`` (float64).

    Example:
        >>> true_class_probability(np.array([[0.0, 0.0], [np.log(3.0), 0.0]]), np.array([0, 0])).tolist()
        [0.5, 0.75]
    """
    from scipy.special import log_softmax

    z, t = check_logits(logits, targets)
    z = z.astype(np.float64)
    return np.exp(np.take_along_axis(log_softmax(z, axis=-1), t[..., None], axis=-1)[..., 0])


def _marginal(reference: np.ndarray, offline_a: float) -> np.ndarray:
    """Pr(x) from OUT references only: ``(1 + a) / 2 * mean_out + (1 - a) / 2`` (the paper's linear fit)."""
    return (1 + offline_a) / 2 * reference.mean(axis=-2) + (1 - offline_a) / 2


def _scores(tx: np.ndarray, rx: np.ndarray, tz: np.ndarray, rz: np.ndarray, offline_a: float,
            gamma: float) -> np.ndarray:
    """Scores of targets ``[T, n]`` (references ``[(T,) K, n]``) against population ``[T, n_z]``."""
    ratio_x = tx / _marginal(rx, offline_a)  # [T, n]
    ratio_z = tz / _marginal(rz, offline_a)  # [T, n_z]
    # Pr_z[ratio_x / ratio_z > gamma], with the comparison done as ratio_x > gamma * ratio_z (no division by 0).
    sorted_z = np.sort(gamma * ratio_z, axis=-1)
    below = np.stack([np.searchsorted(s, x, side="left") for s, x in zip(sorted_z, ratio_x)])
    return below / ratio_z.shape[-1]


def _check_offline(offline_a: float, gamma: float) -> None:
    if not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"offline_a must be in [0, 1], got {offline_a}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")


def rmia_offline(target_x: np.ndarray, reference_x: np.ndarray, target_z: np.ndarray, reference_z: np.ndarray, *,
                 offline_a: float, gamma: float = 1.0) -> np.ndarray:
    """Offline RMIA: how often the target's likelihood ratio on ``x`` beats that on population examples ``z``.

    With ``p(x | theta)`` the target model's probability of the true label and ``Pr(x)`` its
    average over reference models, RMIA compares the ratio ``p(x | theta) / Pr(x)`` with the same
    ratio of population examples ``z`` that no model trained on:

        score(x) = Pr_z[ (p(x | theta) / Pr(x)) / (p(z | theta) / Pr(z)) > gamma ].

    Offline, every reference model is OUT for ``x``; the paper then approximates the mean over
    IN and OUT models by the linear fit ``Pr(x) = (1 + a) / 2 * mean_out(x) + (1 - a) / 2``
    (``Pr_in`` taken as ``a * Pr_out + 1 - a``), which corrects the few-references estimate; the
    same formula is applied to ``Pr(z)``. This is ``run_rmia`` of the reference code
    (``ml_privacy_meter``), whose default threshold is ``gamma = 1``. **Larger means member.**

    Args:
        target_x: the target model's true-class probabilities on the candidates ``[n]``.
        reference_x: OUT reference models' probabilities on them ``[K, n]``.
        target_z: the target's probabilities on the population ``[n_z]``.
        reference_z: the references' probabilities on the population ``[K, n_z]``.
        offline_a: the coefficient ``a`` in ``[0, 1]`` (:func:`tune_offline_a` picks it).
        gamma: the threshold on the ratio of ratios (>= 1 in the paper).

    Returns:
        Scores in ``[0, 1]``, shape ``[n]``.

    Example:
        >>> ref_x, ref_z = np.full((4, 3), 0.5), np.full((4, 5), 0.5)
        >>> z = np.linspace(0.3, 0.7, 5)
        >>> rmia_offline(np.array([0.9, 0.5, 0.1]), ref_x, z, ref_z, offline_a=1.0).tolist()
        [1.0, 0.4, 0.0]
    """
    _check_offline(offline_a, gamma)
    rx = check_population("reference_x", reference_x)
    rz = check_population("reference_z", reference_z)
    if rz.shape[0] != rx.shape[0]:
        raise ValueError(f"reference_x and reference_z must come from the same models, got {rx.shape[0]} and "
                         f"{rz.shape[0]} rows")
    tx = check_population("target_x", np.asarray(target_x)[None], num_examples=rx.shape[1])
    tz = check_population("target_z", np.asarray(target_z)[None], num_examples=rz.shape[1])
    for name, arr in (("target_x", tx), ("reference_x", rx), ("target_z", tz), ("reference_z", rz)):
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{name} must hold probabilities in [0, 1], got range [{arr.min()}, {arr.max()}]")
    return _scores(tx, rx, tz, rz, offline_a, gamma)[0]


def tune_offline_a(target_x: np.ndarray, reference_x: np.ndarray, target_z: np.ndarray, reference_z: np.ndarray,
                   is_member: np.ndarray, *, grid: Sequence[float] = OFFLINE_A_GRID, gamma: float = 1.0
                   ) -> tuple[float, float]:
    """The ``a`` of the grid under which :func:`rmia_offline` best attacks a model of known membership.

    The reference code (``tune_offline_a``) attacks one more model whose members are known, with
    the same OUT references, and keeps the ``a`` of the largest AUC (the first one on ties).

    Args:
        target_x, reference_x, target_z, reference_z: as in :func:`rmia_offline`, for the model
            of known membership.
        is_member: boolean ``[n]``: did that model train on candidate ``x``?
        grid: the values of ``a`` to try (each in ``[0, 1]``).
        gamma: the threshold of :func:`rmia_offline`.

    Returns:
        ``(a, auc)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ref = rng.uniform(0.2, 0.8, (8, 40))
        >>> member = np.arange(40) < 20
        >>> tx = np.where(member, np.minimum(ref.mean(0) + 0.15, 1.0), ref.mean(0))
        >>> a, auc = tune_offline_a(tx, ref, rng.uniform(0.2, 0.8, 30), rng.uniform(0.2, 0.8, (8, 30)), member)
        >>> 0.0 <= a <= 1.0, auc > 0.6
        (True, True)
    """
    mask = np.asarray(is_member)
    if mask.dtype != bool or mask.shape != (np.asarray(target_x).shape[0],):
        raise ValueError(f"is_member must be a boolean array of shape ({np.asarray(target_x).shape[0]},), "
                         f"got dtype {mask.dtype} and shape {mask.shape}")
    if mask.all() or not mask.any():
        raise ValueError("is_member needs both members and non-members to measure an AUC")
    values = [float(a) for a in grid]
    if not values:
        raise ValueError("grid is empty")
    best_a, best_auc = values[0], -1.0
    for a in values:
        s = rmia_offline(target_x, reference_x, target_z, reference_z, offline_a=a, gamma=gamma)
        auc = attack_from_scores(s[mask], s[~mask]).auc
        if auc > best_auc:
            best_a, best_auc = a, auc
    return best_a, best_auc


@dataclass(frozen=True)
class URmiaResult:
    """RMIA against every unlearned and every retrained model in turn (:func:`rmia_unlearning`).

    Attributes:
        scores: ``[2N, m]`` RMIA scores of the forget examples; rows ``0 .. N-1`` target the
            unlearned models, rows ``N .. 2N-1`` the retrained ones. Larger = "member".
        is_unlearned: ``[2N]`` which rows target an unlearned model.
        attack: ROC and AUC pooled over (target, example) pairs, the unlearned targets as
            "members". 0.5 = indistinguishable; **below** 0.5 the unlearned models look *less*
            like members than retrained ones do (over-forgetting), which is detectable too.
        offline_a: the coefficient used.
        gamma: the threshold used.
    """

    scores: np.ndarray
    is_unlearned: np.ndarray
    attack: AttackResult
    offline_a: float
    gamma: float

    @property
    def auc(self) -> float:
        """Pooled AUC (0.5 = indistinguishable)."""
        return self.attack.auc

    @property
    def advantage(self) -> float:
        """``|AUC - 0.5|``: distance from chance in either direction."""
        return abs(self.attack.auc - 0.5)


def rmia_unlearning(unlearned_x: np.ndarray, retrained_x: np.ndarray, unlearned_z: np.ndarray,
                    retrained_z: np.ndarray, *, offline_a: float, gamma: float = 1.0,
                    low_fpr: float = 1e-3) -> URmiaResult:
    """Offline RMIA on the forget set: do unlearned models still treat it as training data?

    The retrained models never saw the forget set nor the population examples ``z`` (e.g. the
    validation split), so they are exactly RMIA's OUT reference models. Every model plays the
    target once: model ``i`` of either side is attacked with the other ``N - 1`` retrained models
    as references (pair ``i`` left out, as the reference code leaves out the target's paired
    model). Forget examples are the candidates; the "members" are the (unlearned target,
    example) pairs, the "non-members" the (retrained target, example) pairs.

    Args:
        unlearned_x: true-class probabilities of the unlearned models on the forget set ``[N, m]``.
        retrained_x: those of the retrained models ``[N, m]``.
        unlearned_z: the unlearned models' probabilities on the population ``[N, n_z]``.
        retrained_z: the retrained models' ``[N, n_z]``.
        offline_a: RMIA's ``a`` (:func:`tune_offline_a`).
        gamma: RMIA's threshold.
        low_fpr: FPR budget of ``attack.tpr_at_low_fpr``.

    Returns:
        A :class:`URmiaResult`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> p = lambda shift, n: 1 / (1 + np.exp(-rng.normal(shift, 1.0, (12, n))))
        >>> z_u, z_r = p(0.0, 50), p(0.0, 50)
        >>> same = rmia_unlearning(p(0.0, 100), p(0.0, 100), z_u, z_r, offline_a=0.5)
        >>> kept = rmia_unlearning(p(2.0, 100), p(0.0, 100), z_u, z_r, offline_a=0.5)
        >>> abs(same.auc - 0.5) < 0.05, kept.auc > 0.8
        (True, True)
    """
    _check_offline(offline_a, gamma)
    ux, rx = check_pair(unlearned_x, retrained_x, min_models=2)
    uz, rz = check_pair(unlearned_z, retrained_z, min_models=2)
    if uz.shape[0] != ux.shape[0]:
        raise ValueError(f"the population statistics come from {uz.shape[0]} models per side, the forget-set "
                         f"statistics from {ux.shape[0]}")
    for name, arr in (("unlearned_x", ux), ("retrained_x", rx), ("unlearned_z", uz), ("retrained_z", rz)):
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{name} must hold probabilities in [0, 1], got range [{arr.min()}, {arr.max()}]")
    n = ux.shape[0]
    scores = np.empty((2 * n, ux.shape[1]))
    for i in range(n):
        others = np.r_[0:i, i + 1:n]
        pair = _scores(np.stack([ux[i], rx[i]]), rx[others], np.stack([uz[i], rz[i]]), rz[others], offline_a, gamma)
        scores[i], scores[n + i] = pair
    is_u = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    attack = attack_from_scores(scores[is_u].ravel(), scores[~is_u].ravel(), low_fpr=low_fpr)
    return URmiaResult(scores=scores, is_unlearned=is_u, attack=attack, offline_a=float(offline_a),
                       gamma=float(gamma))
