"""U-LiRA, the per-example likelihood-ratio test of Hayes et al. (SaTML 2025) between unlearned
and retrained models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mu_lib.mia._populations import check_pair
from mu_lib.mia.attacks import AttackResult, attack_from_scores

__all__ = ["ULiraResult", "ulira_log_ratio", "ulira"]

_SIGMA_FLOOR = 1e-30  # added to every standard deviation, as LiRA's reference code does


def ulira_log_ratio(target: np.ndarray, unlearned: np.ndarray, retrained: np.ndarray, *,
                    fixed_variance: bool = False) -> np.ndarray:
    """U-LiRA's statistic for one target model: ``ln N(t; mu_U, sigma_U^2) - ln N(t; mu_R, sigma_R^2)``.

    For every example, one Gaussian is fitted to the shadow models that *unlearned* it and one to
    the shadow models *retrained* without it (mean and standard deviation, the maximum-likelihood
    fit, plus 1e-30), and the target model's statistic ``t`` (e.g. the logit-scaled confidence) is
    scored by the log-likelihood ratio. **Larger means "this model looks unlearned"**; the
    Bayes decision with equal priors is ``> 0``.

    ``fixed_variance=True`` uses one standard deviation per side, the spread of every shadow
    statistic around its example's mean (the pooled variance LiRA recommends with few models).

    Args:
        target: the target model's statistics ``[m]``.
        unlearned: unlearned shadow models' statistics ``[K_u, m]``.
        retrained: retrained shadow models' statistics ``[K_r, m]``.
        fixed_variance: one pooled sigma per side instead of one per example.

    Returns:
        Log-likelihood ratios ``[m]``.

    Example:
        >>> u = np.array([[1.0, 0.0], [3.0, 2.0]])  # two unlearned shadows: means [2, 1], sd [1, 1]
        >>> r = np.array([[-1.0, 0.0], [1.0, 2.0]])  # two retrained shadows: means [0, 1], sd [1, 1]
        >>> ulira_log_ratio(np.array([2.0, 1.0]), u, r).round(3).tolist()  # 0 - (-2), and a tie
        [2.0, 0.0]
    """
    u, r = check_pair(unlearned, retrained, min_models=1, same_count=False)
    t = np.asarray(target, dtype=np.float64)
    if t.shape != (u.shape[1],):
        raise ValueError(f"target must have shape ({u.shape[1]},) like the shadow statistics, got {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError(f"target contains NaN or inf at examples {np.flatnonzero(~np.isfinite(t))[:5].tolist()}")
    return _log_ratio(t[None], u, r, fixed_variance)[0]


def _fit(stats: np.ndarray, fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over axis -2 (models) of ``[..., K, m]`` statistics."""
    mu = stats.mean(axis=-2)
    if fixed_variance:
        pooled = np.sqrt(((stats - mu[..., None, :]) ** 2).mean(axis=(-2, -1)))
        sd = np.broadcast_to(pooled[..., None], mu.shape)
    else:
        sd = stats.std(axis=-2)
    return mu, sd + _SIGMA_FLOOR


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)


def _log_ratio(t: np.ndarray, u: np.ndarray, r: np.ndarray, fixed_variance: bool) -> np.ndarray:
    """Log-likelihood ratios of targets ``[T, m]`` against shadows ``[(T,) K_u, m]`` and ``[(T,) K_r, m]``."""
    mu_u, sd_u = _fit(u, fixed_variance)
    mu_r, sd_r = _fit(r, fixed_variance)
    return _log_normal(t, mu_u, sd_u) - _log_normal(t, mu_r, sd_r)


@dataclass(frozen=True)
class ULiraResult:
    """U-LiRA against every unlearned and every retrained model in turn.

    Attributes:
        scores: ``[2N, m]`` log-likelihood ratios; rows ``0 .. N-1`` target the unlearned models,
            rows ``N .. 2N-1`` the retrained ones. Larger = "looks unlearned".
        is_unlearned: ``[2N]`` which rows target an unlearned model.
        accuracy: balanced accuracy of the Bayes decision ``score > 0`` over every (target,
            example) pair: the fraction of targets classified correctly, 0.5 = indistinguishable.
        per_example_accuracy: ``[m]`` that accuracy for each example alone (Hayes et al.'s point:
            it varies widely between examples).
        attack: ROC, AUC and best-threshold accuracy of the pooled scores
            (:class:`mu_lib.mia.AttackResult`; "members" are the unlearned targets).
        fixed_variance: whether one pooled sigma per side was used.
    """

    scores: np.ndarray
    is_unlearned: np.ndarray
    accuracy: float
    per_example_accuracy: np.ndarray
    attack: AttackResult
    fixed_variance: bool

    @property
    def auc(self) -> float:
        """Area under the ROC curve of the pooled scores (0.5 = indistinguishable)."""
        return self.attack.auc


def ulira(unlearned: np.ndarray, retrained: np.ndarray, *, fixed_variance: bool = False,
          low_fpr: float = 1e-3) -> ULiraResult:
    """U-LiRA (Hayes et al. 2025): can a per-example likelihood-ratio test tell unlearned from retrained models?

    Given the statistic (the logit-scaled confidence, as in LiRA) of ``N`` unlearned and ``N``
    retrained models on the same ``m`` forget examples, every model plays the target once. Model
    ``i`` of either side is scored by :func:`ulira_log_ratio` against Gaussians fitted to the
    *other* ``N - 1`` unlearned and ``N - 1`` retrained models (pair ``i`` is left out of both
    fits, so that both targets of a pair face the same shadows). The attack says "unlearned" when
    the ratio is above 0; a method whose models are indistinguishable from retraining gives an
    accuracy of about 0.5.

    This is the paper's protocol on the models a competition run already holds: its shadow
    models are the run's own models, one unlearned and one retrained population. **Deviation:**
    Hayes et al. train one original model per shadow model, so their unlearned population varies
    the training run too; here every unlearned model starts from the run's one original model
    (as in the competition's own score), which makes the test easier for a deterministic method.

    Args:
        unlearned: statistics of the unlearned models ``[N, m]``.
        retrained: statistics of the retrained models ``[N, m]``.
        fixed_variance: one pooled sigma per side (better with few models).
        low_fpr: FPR budget of ``attack.tpr_at_low_fpr``.

    Returns:
        A :class:`ULiraResult`.

    Raises:
        ValueError: for shapes that do not match, unequal N, fewer than 3 models per side (two
            shadows per side are needed to fit a spread), or NaN/inf.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = rng.normal(0.0, 1.0, (16, 200))
        >>> same = ulira(rng.normal(0.0, 1.0, (16, 200)), r)
        >>> moved = ulira(rng.normal(2.0, 1.0, (16, 200)), r)
        >>> abs(same.accuracy - 0.5) < 0.05, moved.accuracy > 0.75
        (True, True)
    """
    u, r = check_pair(unlearned, retrained, min_models=3)
    n = u.shape[0]
    scores = np.empty((2 * n, u.shape[1]))
    for i in range(n):  # one pair at a time: memory O(N m), not O(N^2 m)
        others = np.r_[0:i, i + 1:n]
        pair = _log_ratio(np.stack([u[i], r[i]]), u[others], r[others], fixed_variance)
        scores[i], scores[n + i] = pair
    is_u = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    correct = np.where(is_u[:, None], scores > 0, scores <= 0)  # equal numbers per side: plain = balanced
    attack = attack_from_scores(scores[is_u].ravel(), scores[~is_u].ravel(), low_fpr=low_fpr)
    return ULiraResult(scores=scores, is_unlearned=is_u, accuracy=float(correct.mean()),
                       per_example_accuracy=correct.mean(axis=0), attack=attack, fixed_variance=fixed_variance)
