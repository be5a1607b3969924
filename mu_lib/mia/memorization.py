"""Memorization scores of Feldman and Zhang (NeurIPS 2020), estimated with subsampled shadow models,
and the hook that gives them to :func:`mu_lib.data.make_splits` (``forget="memorization"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from mu_lib.data import Dataset
    from mu_lib.runtime import Recipe

__all__ = ["subsample_masks", "memorization_from_correct", "MemorizationScores", "estimate_memorization",
           "memorization_hook"]


def subsample_masks(num_models: int, num_examples: int, *, fraction: float = 0.7, seed: int = 0) -> np.ndarray:
    """Which examples each shadow model trains on: every example is IN for the same number of models.

    Feldman and Zhang train each model on a random ``fraction`` of the data (70 % in their
    experiments). Drawn independently, an example can end up IN for every model (and its score
    undefined); here, as in LiRA's ``shadow_masks`` (:func:`mu_lib.mia.shadow_masks`), each column
    is a random permutation thresholded at ``k = round(fraction * num_models)``, so that every
    example is IN for exactly ``k`` models and OUT for the other ``num_models - k`` (both at least
    one). IN/OUT swaps between the fullest and the emptiest model then make the models' sizes
    differ by at most one, so that they train together with :func:`mu_lib.train.fit_many`.

    Args:
        num_models: number of shadow models (>= 2).
        num_examples: number of candidate examples (>= 1).
        fraction: fraction of the models that train on each example (the expected training-set
            fraction), in ``(0, 1)``.
        seed: seed of the draw.

    Returns:
        Boolean ``[num_models, num_examples]``.

    Example:
        >>> m = subsample_masks(10, 7, fraction=0.7, seed=0)
        >>> m.sum(axis=0).tolist(), sorted(set(m.sum(axis=1).tolist()))
        ([7, 7, 7, 7, 7, 7, 7], [4, 5])
    """
    if isinstance(num_models, bool) or int(num_models) != num_models or num_models < 2:
        raise ValueError(f"num_models must be an integer >= 2, got {num_models!r}")
    if isinstance(num_examples, bool) or int(num_examples) != num_examples or num_examples < 1:
        raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    m, n = int(num_models), int(num_examples)
    k = min(max(int(round(fraction * m)), 1), m - 1)
    rng = np.random.default_rng(seed)
    keep = rng.uniform(size=(m, n)).argsort(axis=0) < k
    while True:
        counts = keep.sum(axis=1)
        hi, lo = int(counts.argmax()), int(counts.argmin())
        gap = int(counts[hi] - counts[lo])
        if gap <= 1:
            return keep
        movable = np.flatnonzero(keep[hi] & ~keep[lo])
        moved = rng.choice(movable, size=gap // 2, replace=False)
        keep[hi, moved] = False
        keep[lo, moved] = True


def memorization_from_correct(correct: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feldman and Zhang's estimator: accuracy on an example when trained on it minus when not.

    ``mem(i) = mean_{k: i in S_k} [h_k(x_i) = y_i] - mean_{k: i not in S_k} [h_k(x_i) = y_i]``.

    Args:
        correct: boolean ``[M, n]``: did model ``k`` classify example ``i`` correctly?
        masks: boolean ``[M, n]``: did model ``k`` train on example ``i``?

    Returns:
        ``(scores, in_accuracy, out_accuracy)``, each ``[n]``.

    Raises:
        ValueError: for shapes that differ, or an example that is IN (or OUT) for every model.

    Example:
        >>> correct = np.array([[1, 1], [1, 0], [0, 0], [1, 0]], bool)
        >>> masks = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], bool)
        >>> memorization_from_correct(correct, masks)[0].tolist()  # 1 - 1/2 and 1/2 - 0
        [0.5, 0.5]
    """
    c, mk = np.asarray(correct), np.asarray(masks)
    if c.dtype != bool or mk.dtype != bool or c.ndim != 2 or c.shape != mk.shape:
        raise ValueError(f"correct and masks must be boolean arrays of one shape [M, n], got {c.dtype} {c.shape} "
                         f"and {mk.dtype} {mk.shape}")
    n_in, n_out = mk.sum(axis=0), (~mk).sum(axis=0)
    bad = np.flatnonzero((n_in == 0) | (n_out == 0))
    if bad.size:
        raise ValueError(f"example(s) {bad[:5].tolist()} are IN for every model or for none: their score is "
                         f"undefined (use subsample_masks)")
    acc_in = (c & mk).sum(axis=0) / n_in
    acc_out = (c & ~mk).sum(axis=0) / n_out
    return acc_in - acc_out, acc_in, acc_out


@dataclass(frozen=True)
class MemorizationScores:
    """Memorization scores of a set of examples of one dataset.

    Attributes:
        indices: the examples' indices in the dataset ``[n]``.
        scores: their memorization scores ``[n]``, in ``[-1, 1]``.
        in_accuracy: accuracy of the models that trained on each example ``[n]``.
        out_accuracy: accuracy of the models that did not ``[n]``.
        num_models: shadow models used.
        fraction: fraction of the models that trained on each example.
    """

    indices: np.ndarray
    scores: np.ndarray
    in_accuracy: np.ndarray
    out_accuracy: np.ndarray
    num_models: int
    fraction: float

    def full(self, num_examples: int) -> np.ndarray:
        """The scores as an array over the whole dataset (``NaN`` for examples not scored)."""
        if self.indices.size and self.indices.max() >= num_examples:
            raise ValueError(f"num_examples={num_examples} is smaller than the largest scored index "
                             f"{int(self.indices.max())}")
        out = np.full(int(num_examples), np.nan)
        out[self.indices] = self.scores
        return out


def estimate_memorization(factory: Callable[[int], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                          recipe: Recipe, num_models: int, fraction: float = 0.7, seed: int = 0,
                          indices: np.ndarray | None = None, augment: str | None = None, device=None,
                          progress: bool | None = None) -> MemorizationScores:
    """Estimate every example's memorization score with ``num_models`` subsampled shadow models.

    Each shadow model ``factory(seed')`` is trained with ``recipe`` on its rows of
    :func:`subsample_masks` (:func:`mu_lib.mia.train_shadow_models`: many at once when the model
    allows it), every model classifies every example, and :func:`memorization_from_correct` turns
    the predictions into scores. Feldman and Zhang use thousands of models on CIFAR-10; with a few
    dozen, each score is a difference of two proportions over about ``fraction * num_models`` and
    ``(1 - fraction) * num_models`` models, with a standard error of up to about
    ``0.5 / sqrt(min of the two)``.

    Args:
        factory: ``seed -> freshly initialised model``.
        x: the candidate examples' inputs ``[n, ...]`` (typically the training set).
        y: their labels ``[n]``.
        recipe: the training recipe (the original model's, so that the scores describe it).
        num_models: number of shadow models.
        fraction: fraction of the models that train on each example.
        seed: seed of the masks and of the models.
        indices: the examples' indices in their dataset (default ``0 .. n - 1``).
        augment: augmentation name when ``recipe.augment``.
        device: where to train.
        progress: show progress bars.

    Returns:
        :class:`MemorizationScores`.

    Example:
        >>> import torch
        >>> from mu_lib import models, train
        >>> make = lambda s: models.make_model("logreg", num_classes=2, in_channels=1, image_size=2, seed=s)
        >>> x, y = torch.randn(30, 1, 2, 2), torch.randint(0, 2, (30,))
        >>> mem = estimate_memorization(make, x, y, recipe=train.Recipe(epochs=2, batch_size=8, lr=0.1),
        ...                             num_models=4, fraction=0.5)
        >>> mem.scores.shape, bool(((mem.scores >= -1) & (mem.scores <= 1)).all())
        ((30,), True)
    """
    from mu_lib.mia.lira import train_shadow_models
    from mu_lib.train import check_xy, predict_logits

    check_xy(x, y)
    n = x.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices)
    if idx.shape != (n,):
        raise ValueError(f"indices must have one entry per example ({n}), got shape {idx.shape}")
    masks = subsample_masks(num_models, n, fraction=fraction, seed=seed)
    seeds = [int(s) for s in np.random.SeedSequence([int(seed), 7]).generate_state(num_models) >> 1]
    nets = train_shadow_models(factory, x, y, masks, recipe=recipe, seeds=seeds, augment=augment, device=device,
                               progress=progress)
    yy = y.cpu().numpy()
    correct = np.stack([predict_logits(net, x, device=device).argmax(1).numpy() == yy for net in nets])
    scores, acc_in, acc_out = memorization_from_correct(correct, masks)
    return MemorizationScores(indices=idx.copy(), scores=scores, in_accuracy=acc_in, out_accuracy=acc_out,
                              num_models=int(num_models), fraction=float(fraction))


def memorization_hook(*, model: str, recipe: Recipe, num_models: int, fraction: float = 0.7, seed: int = 0,
                      device=None, progress: bool | None = None,
                      store: dict | None = None) -> Callable[[Dataset, np.ndarray], np.ndarray]:
    """A ``memorization=`` hook for :func:`mu_lib.data.make_splits`: scores of the training examples.

    ``make_splits(ds, forget="memorization", level=..., memorization=hook)`` calls
    ``hook(dataset, train_indices)`` once it has drawn the training set; the hook trains shadow
    models of architecture ``model`` on those examples (:func:`estimate_memorization`) and returns
    their scores. Pass a dict as ``store`` to keep the :class:`MemorizationScores` (under the key
    ``"scores"``) and reuse them for other levels with ``memorization=store["scores"].full(len(ds))``.

    Example:
        >>> from mu_lib import data, train
        >>> store = {}
        >>> hook = memorization_hook(model="logreg", recipe=train.Recipe(epochs=1, batch_size=64, lr=0.1),
        ...                          num_models=4, store=store)
        >>> s = data.make_splits("digits", forget="memorization", level="high", forget_fraction=0.05,
        ...                      train_size=200, val_size=50, test_size=100, memorization=hook)
        >>> len(s.forget), store["scores"].scores.shape
        (10, (200,))
    """
    from mu_lib.models import make_model

    def hook(dataset: Dataset, train_indices: np.ndarray) -> np.ndarray:
        import torch

        def factory(s: int):
            return make_model(model, num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                              image_size=dataset.image_size, seed=s)

        rows = torch.from_numpy(np.asarray(train_indices, dtype=np.int64))
        mem = estimate_memorization(factory, dataset.x[rows], dataset.y[rows], recipe=recipe, num_models=num_models,
                                    fraction=fraction, seed=seed, indices=np.asarray(train_indices),
                                    augment=dataset.augment if recipe.augment else None, device=device,
                                    progress=progress)
        if store is not None:
            store["scores"] = mem
        return mem.scores

    return hook
