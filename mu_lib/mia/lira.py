"""LiRA, the likelihood-ratio attack of Carlini et al. (2022): shadow models, the logit-scaled
confidence and the online and offline Gaussian tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mu_lib.runtime import Recipe
from mu_lib.mia._populations import check_logits
from mu_lib.mia.attacks import AttackResult, attack_from_scores

__all__ = [
    "logit_scaled_confidence", "LIRA_ATTACKS", "shadow_masks", "train_shadow_models", "lira_statistics",
    "lira_online", "lira_offline", "LiraScores", "lira_scores"
]

# --------------------------------------------------------------------------------------------
# LiRA: the likelihood-ratio attack (Carlini, Chien, Nasr, Song, Terzis, Tramèr 2022)
# --------------------------------------------------------------------------------------------

LIRA_ATTACKS = ("online", "offline", "offline_two_sided", "global")
_SIGMA_FLOOR = 1e-30  # added to every standard deviation, as the reference code does


def shadow_masks(num_models: int, num_examples: int, *, seed: int = 0, balance_models: bool = True) -> np.ndarray:
    """Which examples each shadow model trains on: every example is IN for exactly half of the models.

    This is the "argsort trick" of the LiRA reference code (``train.py``): draw a uniform
    ``[num_models, num_examples]`` matrix, argsort each column, and keep example ``j`` in model
    ``i`` iff ``order[i, j] < num_models / 2``. Each column is a permutation, so every example is
    IN for exactly ``num_models / 2`` models and OUT for the others, which balances the IN and OUT
    Gaussians of every example.

    The reference leaves the number of examples per model free (about ``num_examples / 2``, give
    or take a few). With ``balance_models=True`` (the default here), IN/OUT swaps between the
    fullest and the emptiest model (which keep every column's count) then make the models' sizes
    differ by at most one, so that :func:`mu_lib.train.fit_many` can train them together in at
    most two groups of equal size. ``balance_models=False`` returns the reference's masks.

    Args:
        num_models: number of shadow models (even, at least 2).
        num_examples: number of candidate examples.
        seed: seed of the random draw.
        balance_models: equalise the models' training-set sizes (see above).

    Returns:
        Boolean array ``[num_models, num_examples]``: ``mask[i, j]`` is true iff model ``i``
        trains on example ``j``.

    Example:
        >>> m = shadow_masks(4, 6, seed=0)
        >>> m.sum(axis=0).tolist(), m.sum(axis=1).tolist()
        ([2, 2, 2, 2, 2, 2], [3, 3, 3, 3])
    """
    if isinstance(num_models, bool) or int(num_models) != num_models or num_models < 2 or num_models % 2:
        raise ValueError(f"num_models must be an even integer >= 2 (each example IN for exactly half), "
                         f"got {num_models!r}")
    if isinstance(num_examples, bool) or int(num_examples) != num_examples or num_examples < 1:
        raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}")
    num_models, num_examples = int(num_models), int(num_examples)
    rng = np.random.default_rng(seed)
    order = rng.uniform(size=(num_models, num_examples)).argsort(axis=0)
    keep = order < num_models // 2
    while balance_models:
        counts = keep.sum(axis=1)
        hi, lo = int(counts.argmax()), int(counts.argmin())
        gap = int(counts[hi] - counts[lo])
        if gap <= 1:
            break
        movable = np.flatnonzero(keep[hi] & ~keep[lo])  # at least `gap` columns qualify
        moved = rng.choice(movable, size=gap // 2, replace=False)
        keep[hi, moved] = False
        keep[lo, moved] = True
    return keep


def train_shadow_models(factory: Callable[[int], nn.Module], x: torch.Tensor, y: torch.Tensor,
                        masks: np.ndarray, *, recipe: Recipe, seeds: Sequence[int] | None = None,
                        augment: str | None = None, chunk_size: int = 64, device=None,
                        progress: bool | None = None) -> list[nn.Module]:
    """Train one shadow model per row of ``masks`` on its IN examples, many at once.

    Model ``i`` is ``factory(seeds[i])`` trained with ``recipe`` on the rows
    ``np.flatnonzero(masks[i])`` of ``(x, y)``. Models with the same number of IN examples are
    trained together by :func:`mu_lib.train.fit_many` (with ``indices=``), which equals a loop of
    :func:`mu_lib.train.fit`; models with batch norm, or a recipe with augmentation (which
    ``fit_many`` does not do), are trained by such a loop.

    Args:
        factory: ``seed -> freshly initialised model``.
        x: candidate inputs ``[N, ...]``.
        y: their labels ``[N]``.
        masks: boolean ``[M, N]`` from :func:`shadow_masks`.
        recipe: the training recipe (:class:`mu_lib.train.Recipe`).
        seeds: one seed per model (initialisation and data order); default ``0 .. M - 1``.
        augment: the augmentation name (e.g. ``dataset.augment``) used when ``recipe.augment``.
        chunk_size: models vectorised together.
        device: where to train.
        progress: show progress bars.

    Returns:
        ``M`` trained models in eval mode, in the order of the rows of ``masks``.

    Example:
        >>> import torch
        >>> from mu_lib import models, train
        >>> make = lambda s: models.make_model("logreg", num_classes=2, in_channels=1, image_size=2, seed=s)
        >>> x, y = torch.randn(20, 1, 2, 2), torch.randint(0, 2, (20,))
        >>> recipe = train.Recipe(epochs=1, batch_size=5, lr=0.1)
        >>> nets = train_shadow_models(make, x, y, shadow_masks(4, 20), recipe=recipe)
        >>> len(nets)
        4
    """
    from mu_lib import train
    from mu_lib.models import has_batchnorm

    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 2:
        raise ValueError(f"masks must be a boolean [M, N] array, got dtype {masks.dtype} and shape {masks.shape}")
    m, n = masks.shape
    if n != x.shape[0]:
        raise ValueError(f"masks has {n} columns but x has {x.shape[0]} rows")
    empty = np.flatnonzero(masks.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"shadow model(s) {empty[:5].tolist()} have no IN examples")
    seeds = list(range(m)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != m:
        raise ValueError(f"need one seed per model: {m} masks but {len(seeds)} seeds")
    if recipe.augment and augment is None:
        raise ValueError("recipe.augment is true: pass the augmentation name, e.g. augment=dataset.augment")
    kw = dict(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
              weight_decay=recipe.weight_decay, schedule=recipe.schedule, device=device, progress=progress)
    rows = [np.flatnonzero(r) for r in masks]
    if recipe.augment or has_batchnorm(factory(seeds[0])):
        return [train.fit(factory(s), x[r], y[r], seed=s, augment=augment if recipe.augment else None,
                          desc=f"shadow {i + 1}/{m}", **kw) for i, (s, r) in enumerate(zip(seeds, rows))]
    out: list = [None] * m
    counts = masks.sum(axis=1)
    for c in np.unique(counts):
        group = np.flatnonzero(counts == c)
        nets = train.fit_many(factory, x, y, seeds=[seeds[i] for i in group],
                              indices=np.stack([rows[i] for i in group]), chunk_size=chunk_size,
                              desc=f"shadows ({c} examples each)", **kw)
        for i, net in zip(group, nets):
            out[i] = net
    return out


__all__ = ["logit_scaled_confidence"]

def logit_scaled_confidence(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """LiRA's statistic: the logit of the true-class probability, ``ln p_y - ln sum_{j != y} p_j``.

    Computed as the NeurIPS 2023 competition's released code does (so that its golden vectors
    are reproduced): the row maximum is subtracted and ``exp`` taken in the input's dtype, the
    probabilities are normalised in float64, ``p_wrong`` is the direct sum over the other classes
    (not ``1 - p_y``) and 1e-45 guards both logarithms. Unlike that code, the input is never
    modified in place.

    Args:
        logits: ``[..., K]`` scores (numpy array or torch tensor).
        targets: integer labels of shape ``logits.shape[:-1]``.

    Returns:
        float64 array of shape ``logits.shape[:-1]``.

    Example:
        >>> round(float(logit_scaled_confidence(np.array([[60.0, 0.0, 0.0]]), np.array([0]))[0]), 6)
        59.306853
    """
    z, t = check_logits(logits, targets)
    k = z.shape[-1]
    z = z - z.max(axis=-1, keepdims=True)
    probs = np.exp(z).astype(np.float64)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    onehot = np.arange(k) == t[..., None]
    p_true = np.where(onehot, probs, 0.0).sum(axis=-1)
    p_wrong = np.where(onehot, 0.0, probs).sum(axis=-1)
    return np.log(p_true + 1e-45) - np.log(p_wrong + 1e-45)


def lira_statistics(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, *, device=None,
                    batch_size: int = 1024) -> np.ndarray:
    """LiRA's statistic of every model on every example: ``[M, N]`` logit-scaled confidences.

    ``phi = ln p_y - ln sum_{j != y} p_j`` (:func:`mu_lib.audit.logit_scaled_confidence`), which
    makes the model-to-model spread of an example's confidence close to Gaussian. The reference
    code also averages over queries of mirrored and shifted copies of each image; to do that,
    stack the statistics of each augmented copy on a last axis ``[M, N, A]``: every LiRA
    function here accepts it and averages the per-augmentation scores, as the reference does.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> lira_statistics([net, net], torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])).shape
        (2, 5)
    """
    from mu_lib.train import check_xy, predict_logits

    check_xy(x, y)
    if len(models) == 0:
        raise ValueError("models is empty")
    yy = y.cpu().numpy()
    return np.stack([logit_scaled_confidence(predict_logits(net, x, batch_size=batch_size, device=device).numpy(), yy)
                     for net in models])


def _check_lira_inputs(target_stats: np.ndarray, **shadow: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    t = np.asarray(target_stats, dtype=np.float64)
    if t.ndim not in (1, 2) or t.shape[0] == 0:
        raise ValueError(f"target_stats must have shape [N] or [N, augmentations] with N >= 1, got {t.shape}")
    if not np.isfinite(t).all():
        bad = np.flatnonzero(~np.isfinite(t).reshape(t.shape[0], -1).all(1))[:5].tolist()
        raise ValueError(f"target_stats contains NaN or inf at examples {bad}")
    out = {}
    for name, a in shadow.items():
        s = np.asarray(a, dtype=np.float64)
        if s.ndim != t.ndim + 1 or s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[1:]:
            want = "[N, K]" if t.ndim == 1 else "[N, K, augmentations]"
            raise ValueError(f"{name} must have shape {want} matching target_stats {t.shape}, got {s.shape}")
        if np.isinf(s).any():
            raise ValueError(f"{name} contains inf (NaN marks a missing shadow model; inf is not allowed)")
        count = (~np.isnan(s)).reshape(s.shape[0], s.shape[1], -1).all(axis=2).sum(axis=1)
        if (count == 0).any():
            raise ValueError(f"{name}: example(s) {np.flatnonzero(count == 0)[:5].tolist()} have no shadow "
                             f"statistics (every entry NaN)")
        out[name] = s
    return t, out


def _fit_gaussians(stats: np.ndarray, fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-example median and standard deviation along axis 1 (NaN = missing model)."""
    mu = np.nanmedian(stats, axis=1)
    if fixed_variance:
        sigma = np.full_like(mu, np.nanstd(stats - np.expand_dims(mu, 1)))
    else:
        sigma = np.nanstd(stats, axis=1)
    return mu, sigma + _SIGMA_FLOOR


def _mean_over_augmentations(scores: np.ndarray) -> np.ndarray:
    return scores.mean(axis=1) if scores.ndim == 2 else scores


def lira_online(target_stats: np.ndarray, in_stats: np.ndarray, out_stats: np.ndarray, *,
                fixed_variance: bool = False) -> np.ndarray:
    """Online LiRA: the log-likelihood ratio of the target's statistic under the IN and OUT Gaussians.

    For every example, a Gaussian is fitted to the statistics of the shadow models that trained on
    it (IN) and another to those that did not (OUT), and

        score = ln N(phi_target; mu_in, sigma_in^2) - ln N(phi_target; mu_out, sigma_out^2),

    as in the reference code (``plot.py::generate_ours``) and TF-Privacy's
    ``compute_score_lira(option="both")``: mu is the **median** over shadow models, sigma their
    standard deviation plus 1e-30. **Larger means member** (TF-Privacy returns the negative).
    With a trailing augmentation axis the scores of the augmentations are averaged.

    ``fixed_variance=True`` uses one global sigma per side, the standard deviation of every shadow
    statistic around its example's median (TF-Privacy's pooling); it is better with few shadow
    models. (The reference ``plot.py`` instead takes the plain standard deviation of all IN
    statistics, example-to-example spread included, and uses it for both sides.) Unlike the
    reference, which truncates every example to the smallest number of shadow models available,
    examples here may have different numbers of shadows: mark missing ones with NaN.

    Args:
        target_stats: the target model's statistics ``[N]`` (or ``[N, A]``).
        in_stats: IN shadow statistics ``[N, K_in]`` (or ``[N, K_in, A]``), NaN = missing.
        out_stats: OUT shadow statistics ``[N, K_out]`` (or ``[N, K_out, A]``), NaN = missing.
        fixed_variance: one global sigma per side instead of one per example.

    Returns:
        Scores ``[N]``, larger = more likely a member.

    Example:
        >>> ins, outs = np.array([[1.0, 3.0], [1.0, 3.0]]), np.array([[-1.0, 1.0], [-1.0, 1.0]])
        >>> s = lira_online(np.array([2.0, 0.0]), ins, outs)
        >>> bool(s[0] > 0 > s[1])
        True
    """
    from scipy.stats import norm

    t, sh = _check_lira_inputs(target_stats, in_stats=in_stats, out_stats=out_stats)
    mu_in, sd_in = _fit_gaussians(sh["in_stats"], fixed_variance)
    mu_out, sd_out = _fit_gaussians(sh["out_stats"], fixed_variance)
    return _mean_over_augmentations(norm.logpdf(t, mu_in, sd_in) - norm.logpdf(t, mu_out, sd_out))


def lira_offline(target_stats: np.ndarray, out_stats: np.ndarray, *, fixed_variance: bool = False,
                 test: str = "one_sided") -> np.ndarray:
    """Offline LiRA: how far the target's statistic lies from the OUT Gaussian (no IN models needed).

    Two tests, both oriented **larger = member**:

    * ``test="one_sided"`` (the paper): members have *higher* confidence than the OUT models
      predict, so the score is ``Lambda = 1 - P[Z > phi_target]`` with
      ``Z ~ N(mu_out, sigma_out^2)``. It is returned as ``-ln P[Z > phi_target]``
      (``-scipy.stats.norm.logsf``), an increasing function of ``Lambda`` and hence the same test,
      which does not saturate at ``Lambda = 1``.
    * ``test="two_sided"`` (the reference code's ``generate_ours_offline`` and TF-Privacy's
      ``option="out"``): the score is the negative log density ``-ln N(phi_target; mu_out,
      sigma_out^2)``, so that a statistic far *below* the OUT models also counts as a member.

    mu is the median, sigma the standard deviation plus 1e-30, ``fixed_variance`` as in
    :func:`lira_online`.

    Args:
        target_stats: the target model's statistics ``[N]`` (or ``[N, A]``).
        out_stats: OUT shadow statistics ``[N, K]`` (or ``[N, K, A]``), NaN = missing.
        fixed_variance: one global sigma instead of one per example.
        test: ``"one_sided"`` or ``"two_sided"``.

    Returns:
        Scores ``[N]``, larger = more likely a member.

    Example:
        >>> out = np.array([[-1.0, 1.0], [-1.0, 1.0]])
        >>> one = lira_offline(np.array([3.0, -3.0]), out)
        >>> two = lira_offline(np.array([3.0, -3.0]), out, test="two_sided")
        >>> bool(one[0] > one[1]), bool(two[0] == two[1])
        (True, True)
    """
    from scipy.stats import norm

    if test not in ("one_sided", "two_sided"):
        raise ValueError(f"unknown test {test!r}; use 'one_sided' (the paper) or 'two_sided' (the reference code)")
    t, sh = _check_lira_inputs(target_stats, out_stats=out_stats)
    mu, sd = _fit_gaussians(sh["out_stats"], fixed_variance)
    raw = -norm.logsf(t, mu, sd) if test == "one_sided" else -norm.logpdf(t, mu, sd)
    return _mean_over_augmentations(raw)


@dataclass(frozen=True)
class LiraScores:
    """Membership scores of :func:`lira_scores`, one row per target model.

    Attributes:
        scores: ``[T, N]`` scores, larger = member.
        is_member: ``[T, N]`` ground truth: did target model ``targets[t]`` train on example ``n``?
        targets: the models that played the target.
        attack: the attack's name (one of :data:`LIRA_ATTACKS`).
        fixed_variance: whether one global sigma was used.
    """

    scores: np.ndarray
    is_member: np.ndarray
    targets: tuple[int, ...]
    attack: str
    fixed_variance: bool

    def evaluate(self, *, low_fpr: float = 1e-3) -> AttackResult:
        """ROC, AUC, balanced accuracy and TPR at ``low_fpr``, pooling every (target, example) pair.

        The lowest FPR that can be resolved is ``1 / #non-members``: with fewer non-members
        than ``1 / low_fpr``, the TPR at ``low_fpr`` is the TPR at zero false positives.
        """
        if self.is_member.all() or not self.is_member.any():
            raise ValueError("need both members and non-members to evaluate an attack")
        return attack_from_scores(self.scores[self.is_member], self.scores[~self.is_member], low_fpr=low_fpr)


def lira_scores(stats: np.ndarray, in_mask: np.ndarray, *, attack: str = "online", fixed_variance: bool = False,
                targets: Sequence[int] | None = None) -> LiraScores:
    """LiRA against each of several target models, the remaining models serving as its shadows.

    Model ``t`` in ``targets`` is the target; the other ``M - 1`` models are the shadows, split
    per example into IN (``in_mask``) and OUT. This is the reference ``plot.py`` protocol
    (``do_plot(..., ntest=1)``: the last model is the target, the others its shadows), repeated
    for every target so that every example is scored several times.

    Args:
        stats: ``[M, N]`` (or ``[M, N, A]``) statistics, e.g. from :func:`lira_statistics`.
        in_mask: boolean ``[M, N]``: model ``m`` trained on example ``n``.
        attack: ``"online"`` (:func:`lira_online`), ``"offline"`` (:func:`lira_offline`, the
            paper's one-sided test), ``"offline_two_sided"`` (the reference code's offline test)
            or ``"global"`` (the statistic itself: one threshold for all examples, the
            reference's baseline).
        fixed_variance: one global sigma (see :func:`lira_online`).
        targets: which models play the target (default: all of them, in turn).

    Returns:
        A :class:`LiraScores`; ``.evaluate()`` gives the ROC.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> mask = shadow_masks(8, 200, seed=0)
        >>> stats = rng.normal(0, 1, (8, 200)) + 2.0 * mask  # members are 2 sigma more confident
        >>> res = lira_scores(stats, mask, fixed_variance=True).evaluate()  # 8 models: pool the variance
        >>> 0.85 < res.auc < 0.95  # the optimal test reaches Phi(2 / sqrt(2)) = 0.92
        True
    """
    if attack not in LIRA_ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; valid attacks are {list(LIRA_ATTACKS)}")
    s = np.asarray(stats, dtype=np.float64)
    mask = np.asarray(in_mask)
    if mask.dtype != bool or mask.ndim != 2:
        raise ValueError(f"in_mask must be a boolean [M, N] array, got dtype {mask.dtype} and shape {mask.shape}")
    if s.ndim not in (2, 3) or s.shape[:2] != mask.shape:
        raise ValueError(f"stats must have shape {mask.shape} (or {mask.shape} + (augmentations,)), got {s.shape}")
    m = mask.shape[0]
    if m < 2:
        raise ValueError(f"need at least 2 models (a target and a shadow), got {m}")
    targets = tuple(range(m)) if targets is None else tuple(int(t) for t in targets)
    bad = [t for t in targets if not 0 <= t < m]
    if bad or not targets:
        raise ValueError(f"targets must be non-empty model indices in [0, {m}), got {list(targets)}")
    rows = []
    for t in targets:
        others = np.r_[0:t, t + 1:m]
        shadow = np.moveaxis(s[others], 0, 1)  # [N, M-1, (A)]
        inn = mask[others].T  # [N, M-1]
        if s.ndim == 3:
            inn = inn[..., None]
        if attack == "global":
            rows.append(_mean_over_augmentations(s[t]))
            continue
        out_stats = np.where(inn, np.nan, shadow)
        if attack == "online":
            rows.append(lira_online(s[t], np.where(inn, shadow, np.nan), out_stats, fixed_variance=fixed_variance))
        else:
            rows.append(lira_offline(s[t], out_stats, fixed_variance=fixed_variance,
                                     test="one_sided" if attack == "offline" else "two_sided"))
    return LiraScores(scores=np.stack(rows), is_member=mask[list(targets)].copy(), targets=targets, attack=attack,
                      fixed_variance=fixed_variance)
