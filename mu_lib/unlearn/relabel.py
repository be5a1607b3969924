"""Relabelling: random labels (RL) and saliency unlearning (SalUn).

* ``random_labels`` (Graves et al. 2021's amnesiac relabelling, as SalUn's ``RL``): every epoch
  first passes over the forget set with fresh uniformly random labels, then over the retain set
  with its true labels (the sequential order of SalUn's CIFAR-10 code, which its authors confirm).
* ``salun`` (Fan et al. 2024): the same updates, restricted to the weights most salient for the
  forget set: the mask keeps the top ``threshold`` fraction of ``|grad of -CE_forget|`` over *all*
  parameters (one global ranking); the other weights never move.

Boundary shrink, the third relabelling method of SalUn's framework, lives with boundary expanding
in :mod:`mu_lib.unlearn.boundary` (one paper, one file).

Both methods follow SalUn's framework, whose loaders draw the forget and retain examples from the
training set *with its training augmentation* (random crops and flips on CIFAR-10): ``augment=True``
does the same with the dataset's augmentation (none on the book's grayscale data).

Example:
    >>> import torch
    >>> from mu_lib import data, models
    >>> s = data.make_splits("digits", val_size=50, test_size=300, seed=0)
    >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    >>> mask = saliency_mask(net, s.loader("forget", batch_size=64), threshold=0.25)
    >>> total = sum(m.numel() for m in mask.values())
    >>> sum(int(m.sum()) for m in mask.values()) == round(0.25 * total)
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn._framework import SalUnFrameworkConfig
from mu_lib.unlearn.base import RestrictedSplits, register

__all__ = ["RandomLabelsConfig", "SalUnConfig", "RandomLabelEpochs", "saliency_mask", "random_labels", "salun"]


class RandomLabelEpochs:
    """An iterable over one relabelled epoch: forget batches with random labels, then retain batches.

    Every pass draws fresh uniform labels in ``0 .. num_classes - 1`` for the forget batches (the
    true class may be drawn, as in SalUn's code) from ``generator``; retain batches keep their
    labels. It can be handed to any loop that iterates over ``(x, y)`` batches once per epoch.

    Args:
        forget: loader over the forget set.
        retain: loader over the retain set.
        num_classes: number of classes.
        generator: a seeded CPU generator for the labels.

    Example:
        >>> x, y = torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long)
        >>> epochs = RandomLabelEpochs(TensorLoader(x[:2], y[:2], batch_size=2), TensorLoader(x, y, batch_size=3),
        ...                            num_classes=5, generator=torch.Generator().manual_seed(0))
        >>> [tuple(yb.shape) for _, yb in epochs]
        [(2,), (3,), (3,)]
    """

    def __init__(self, forget: TensorLoader, retain: TensorLoader, *, num_classes: int,
                 generator: torch.Generator) -> None:
        if num_classes < 2:
            raise ValueError(f"random relabelling needs at least 2 classes, got {num_classes}")
        self.forget, self.retain = forget, retain
        self.num_classes = num_classes
        self.generator = generator

    def __len__(self) -> int:
        return len(self.forget) + len(self.retain)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in self.forget:
            yield xb, torch.randint(0, self.num_classes, yb.shape, generator=self.generator).to(yb.device)
        yield from self.retain


def _relabel_loaders(splits: RestrictedSplits, batch_size: int, *, device, seed: int, augment: bool = False
                     ) -> RandomLabelEpochs:
    forget = splits.loader("forget", batch_size=batch_size, shuffle=True, seed=seed + 1, augment=augment,
                           device=device)
    retain = splits.loader("retain", batch_size=batch_size, shuffle=True, seed=seed, augment=augment, device=device)
    return RandomLabelEpochs(forget, retain, num_classes=splits.data.num_classes,
                             generator=torch.Generator().manual_seed(int(seed) + 2))


@dataclass(frozen=True)
class RandomLabelsConfig(SalUnFrameworkConfig):
    """SalUn's CIFAR-10 command (``--unlearn_epochs 10 --unlearn_lr 0.013``) with its framework's
    SGD (momentum 0.9, wd 5e-4, batch 256); its ``MultiStepLR(91, 136)`` is inert for 10 epochs,
    so the rate is constant.

    Budget rule: an epoch passes over the forget and the retain set (weight 1); the rate is
    constant.
    """

    epoch_weights = (1.0,)
    lr: float = 0.013


@register("random_labels", config=RandomLabelsConfig, family="relabelling", uses=("retain", "forget"),
          summary="train on the forget set with random labels, then on the retain set",
          reference="Graves et al. 2021 (amnesiac); Fan et al. 2024 (SalUn's RL)")
def random_labels(model: nn.Module, splits: RestrictedSplits, cfg: RandomLabelsConfig, *, device,
                  seed: int) -> nn.Module:
    epochs = _relabel_loaders(splits, cfg.batch_size, device=device, seed=seed, augment=cfg.augment)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return _loops.ce_epochs(model, epochs, epochs=cfg.epochs, optimizer=opt, method="random_labels")


def saliency_mask(model: nn.Module, forget: TensorLoader, *, threshold: float) -> dict[str, torch.Tensor]:
    """SalUn's weight-saliency mask: the top ``threshold`` fraction of ``|g|`` over all parameters.

    ``g`` is the sum over forget batches of the gradient of ``-CE`` (batch mean), computed in eval
    mode; parameters are ranked together (one global ranking, batch-norm and classifier included)
    and exactly ``round(threshold * total)`` entries are kept.

    Args:
        model: the original model (not modified).
        forget: loader over the forget set.
        threshold: fraction of weights to keep trainable, in [0, 1].

    Returns:
        ``{parameter name: bool tensor}`` (True = may change).
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    was_training = model.training
    model.eval()
    named = [(n, p) for n, p in model.named_parameters()]
    grads = [torch.zeros_like(p) for _, p in named]
    for xb, yb in forget:
        loss = -F.cross_entropy(model(xb), yb)
        for g, gi in zip(grads, torch.autograd.grad(loss, [p for _, p in named])):
            g.add_(gi)
    model.train(was_training)
    scores = torch.cat([g.abs().flatten() for g in grads])
    keep = int(round(threshold * scores.numel()))
    flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if keep:
        flat[torch.topk(scores, keep, sorted=False).indices] = True
    out, start = {}, 0
    for (n, p) in named:
        out[n] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    return out


class _MaskedUpdates:
    """Hooks that confine SGD to a mask: gradients are masked before the step, and afterwards
    masked-out weights are put back to their starting values and their momentum zeroed (SalUn's
    fix #33, without which weight decay and momentum still moved them)."""

    def __init__(self, model: nn.Module, mask: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        self.params = [(p, mask[n], p.detach().clone()) for n, p in model.named_parameters() if not bool(mask[n].all())]
        self.optimizer = optimizer

    def before_step(self) -> None:
        for p, m, _ in self.params:
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def after_step(self) -> None:
        for p, m, p0 in self.params:
            p.copy_(torch.where(m, p, p0))
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(m)


@dataclass(frozen=True)
class SalUnConfig(RandomLabelsConfig):
    """SalUn's CIFAR-10 command: mask ``with_0.5`` (threshold 0.5) on top of the random-labels
    settings it shares (10 epochs at lr 0.013, SGD momentum 0.9, wd 5e-4, batch 256, and the
    ``augment`` switch). The budget rule is random labels'.

    Attributes:
        threshold: fraction of all weights, ranked by forget-gradient magnitude, that may change.
    """

    threshold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, fraction=("threshold",))


@register("salun", config=SalUnConfig, family="relabelling", uses=("retain", "forget"),
          summary="random labels, updating only the weights most salient for the forget set",
          reference="Fan et al. 2024 (SalUn)")
def salun(model: nn.Module, splits: RestrictedSplits, cfg: SalUnConfig, *, device, seed: int) -> nn.Module:
    """SalUn: :func:`saliency_mask`, then :func:`random_labels`'s updates confined to the mask.

    Masked-out weights are restored after each step (SalUn's 2026 fix; Deep Unlearn's port mixes
    forget and retain in one loader, here the updates are sequential as the authors specify).
    """
    mask = saliency_mask(model, splits.loader("forget", batch_size=cfg.batch_size, device=device),
                         threshold=cfg.threshold)
    epochs = _relabel_loaders(splits, cfg.batch_size, device=device, seed=seed, augment=cfg.augment)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    hooks = _MaskedUpdates(model, mask, opt)
    return _loops.ce_epochs(model, epochs, epochs=cfg.epochs, optimizer=opt, method="salun",
                            before_step=hooks.before_step, after_step=hooks.after_step)
