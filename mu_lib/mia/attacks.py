"""Membership-inference attacks from per-example losses or scores: ROC metrics, the loss-threshold
attack, the starting kit's attack and indiscernibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AttackResult", "roc", "tpr_at_fpr", "attack_from_scores", "loss_threshold_attack", "simple_mia",
    "indiscernibility", "chance_gap"
]

def _as_scores(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf at positions {np.flatnonzero(~np.isfinite(arr))[:5].tolist()}")
    return arr


def roc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve and AUC of a membership score (larger = member), via scikit-learn.

    Args:
        member_scores: scores of the members ``[n1]``.
        nonmember_scores: scores of the non-members ``[n0]``.

    Returns:
        ``(fpr, tpr, auc)``; the curve includes every threshold (no intermediate points dropped),
        so that rates at low FPR are exact.

    Example:
        >>> fpr, tpr, auc = roc(np.array([2.0, 3.0]), np.array([0.0, 1.0]))
        >>> auc
        1.0
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    m = _as_scores("member_scores", member_scores)
    nm = _as_scores("nonmember_scores", nonmember_scores)
    labels = np.r_[np.ones(m.size), np.zeros(nm.size)]
    scores = np.r_[m, nm]
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, float(roc_auc_score(labels, scores))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target_fpr: float = 1e-3) -> float:
    """Largest TPR among thresholds whose FPR is at most ``target_fpr``.

    Args:
        fpr: false-positive rates of an ROC curve (non-decreasing).
        tpr: matching true-positive rates.
        target_fpr: the FPR budget, e.g. ``1e-3`` for "TPR at 0.1 % FPR".

    Example:
        >>> tpr_at_fpr(np.array([0.0, 0.001, 0.5, 1.0]), np.array([0.1, 0.3, 0.9, 1.0]), 1e-3)
        0.3
    """
    if not 0 <= target_fpr <= 1:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    ok = fpr <= target_fpr + 1e-15
    return float(tpr[ok].max()) if ok.any() else 0.0


@dataclass(frozen=True)
class AttackResult:
    """Outcome of a threshold attack.

    Attributes:
        auc: area under the ROC curve.
        accuracy: best balanced accuracy over thresholds, ``max(1 - (FPR + FNR) / 2)``.
        tpr_at_low_fpr: TPR at ``low_fpr``.
        low_fpr: the FPR budget of ``tpr_at_low_fpr``.
        fpr: the ROC curve's false-positive rates.
        tpr: the ROC curve's true-positive rates.
    """

    auc: float
    accuracy: float
    tpr_at_low_fpr: float
    low_fpr: float
    fpr: np.ndarray
    tpr: np.ndarray


def attack_from_scores(member_scores: np.ndarray, nonmember_scores: np.ndarray, *,
                       low_fpr: float = 1e-3) -> AttackResult:
    """Evaluate a membership score (larger = member) over every threshold.

    Example:
        >>> r = attack_from_scores(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.5]))
        >>> round(r.auc, 4), round(r.accuracy, 4)
        (0.8333, 0.8333)
    """
    fpr, tpr, auc = roc(member_scores, nonmember_scores)
    acc = float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0))
    return AttackResult(auc=auc, accuracy=acc, tpr_at_low_fpr=tpr_at_fpr(fpr, tpr, low_fpr), low_fpr=low_fpr,
                        fpr=fpr, tpr=tpr)


def loss_threshold_attack(member_losses: np.ndarray, nonmember_losses: np.ndarray, *,
                          low_fpr: float = 1e-3) -> AttackResult:
    """The loss-threshold attack (Yeom et al., 2018): predict "member" when the loss is low.

    Args:
        member_losses: per-example losses of training examples.
        nonmember_losses: per-example losses of held-out examples.
        low_fpr: FPR budget for :attr:`AttackResult.tpr_at_low_fpr`.

    Example:
        >>> loss_threshold_attack(np.array([0.1, 0.2]), np.array([1.0, 2.0])).accuracy
        1.0
    """
    m = _as_scores("member_losses", member_losses)
    nm = _as_scores("nonmember_losses", nonmember_losses)
    return attack_from_scores(-m, -nm, low_fpr=low_fpr)


def simple_mia(forget_losses: np.ndarray, test_losses: np.ndarray, *, n_splits: int = 10,
               seed: int = 0) -> float:
    """The starting kit's attack: cross-validated accuracy of a logistic regression on losses.

    As in the NeurIPS 2023 unlearning challenge's starting kit, the larger of the two sets is
    subsampled to the size of the smaller (seeded here; unseeded there), the forget set is
    labelled 1 and the test set 0, and the attack is
    ``LogisticRegression()`` scored with ``StratifiedShuffleSplit(n_splits, random_state=0)``.
    An accuracy near 0.5 means the forget set looks like data the model never saw.

    Args:
        forget_losses: per-example losses on the forget set.
        test_losses: per-example losses on unseen data.
        n_splits: cross-validation splits.
        seed: seed of the subsampling.

    Returns:
        The mean cross-validated accuracy.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(simple_mia(rng.normal(0, 1, 400), rng.normal(0, 1, 400)), 1)
        0.5
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    f = _as_scores("forget_losses", forget_losses)
    t = _as_scores("test_losses", test_losses)
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    k = min(f.size, t.size)
    if k < 5:
        raise ValueError(f"need at least 5 examples on each side, got {f.size} forget and {t.size} test")
    rng = np.random.default_rng(seed)
    f = f[rng.permutation(f.size)[:k]]
    t = t[rng.permutation(t.size)[:k]]
    feats = np.r_[f, t].reshape(-1, 1)
    labels = np.r_[np.ones(k), np.zeros(k)]
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=0)
    return float(cross_val_score(LogisticRegression(), feats, labels, cv=cv, scoring="accuracy").mean())


def indiscernibility(mia_accuracy: float | np.ndarray) -> float | np.ndarray:
    """Deep Unlearn's indiscernibility ``1 - |2 * MIA - 1|``: 1 at chance (0.5), 0 at 0 or 1.

    Example:
        >>> indiscernibility(0.5), indiscernibility(0.75)
        (1.0, 0.5)
    """
    a = np.asarray(mia_accuracy, dtype=np.float64)
    if ((a < 0) | (a > 1) | ~np.isfinite(a)).any():
        raise ValueError(f"MIA accuracy must be in [0, 1], got {mia_accuracy}")
    out = 1.0 - np.abs(2.0 * a - 1.0)
    return float(out) if out.ndim == 0 else out


def chance_gap(n: int) -> float:
    """The mean of ``1 - indiscernibility = |2 acc - 1|`` for an attack at chance on ``n`` examples.

    If the attack cannot tell its two balanced sets apart, its accuracy on ``n`` examples is
    binomial noise around 0.5, and the mean of ``|2 acc - 1|`` is ``sqrt(2 / (pi n))`` (normal
    approximation). :func:`simple_mia` averages cross-validation folds of a trained classifier,
    which adds noise, so this is a lower estimate of its chance level: a membership term of this
    size says nothing.

    Example:
        >>> round(chance_gap(800), 4)
        0.0282
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return float(np.sqrt(2.0 / (np.pi * n)))
