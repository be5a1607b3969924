"""Partial retraining of the last layers: CF-k and EU-k (Goel et al. 2022).

Both keep the first blocks of the network frozen and train only the last ``k`` blocks and the
classifier on the retain set:

* ``cf_k`` (catastrophic forgetting of the last k blocks) starts from the original weights, so the
  forget set is forgotten only as far as fine-tuning overwrites it;
* ``eu_k`` (exact unlearning of the last k blocks) re-initialises them first. If the frozen
  features carried no information about the forget set, this would be exact unlearning.

A *block* is a top-level child module with parameters, a normalisation layer counting with the
block before it (:func:`mu_lib.unlearn._layers.blocks`); the last block is the classifier. With
``k = 1``: ``small_cnn`` trains ``fc1`` and ``fc``; ``resnet18`` trains ``layer4`` and ``fc`` (Deep
Unlearn's choice of "the last residual stage and the classifier"). Frozen blocks are kept in eval
mode, so their batch-norm statistics do not move either.

Example:
    >>> from mu_lib.models import make_model
    >>> trainable_blocks(make_model("resnet18", num_classes=10, in_channels=3, image_size=32), k=1)
    [('layer4',), ('fc',)]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mu_lib.models import reinitialize
from mu_lib.unlearn import _layers, _loops
from mu_lib.unlearn._layers import blocks
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["blocks", "PartialConfig", "trainable_blocks", "reinit_blocks", "cf_k", "eu_k"]


def trainable_blocks(model: nn.Module, *, k: int) -> list[tuple[str, ...]]:
    """The last ``k`` blocks before the classifier, and the classifier."""
    bl = blocks(model)
    if not 0 <= k < len(bl):
        raise ValueError(f"k must be in [0, {len(bl) - 1}] for {type(model).__name__}, whose blocks are {bl}; "
                         f"got {k}")
    return bl[len(bl) - 1 - k:]


def reinit_blocks(model: nn.Module, *, k: int, seed: int) -> nn.Module:
    """Re-initialise :func:`trainable_blocks` in place, as a fresh model of the same kind seeded
    with ``seed`` would have them (:func:`mu_lib.models.reinitialize`), buffers included."""
    fresh = reinitialize(copy.deepcopy(model), seed=seed)
    with torch.no_grad():
        for block in trainable_blocks(model, k=k):
            for name in block:
                getattr(model, name).load_state_dict(getattr(fresh, name).state_dict())
    return model


MILESTONES = (0.5, 0.8, 0.9)
"""Deep Unlearn's learning-rate milestones of CF-k and EU-k, as fractions of the run."""


@dataclass(frozen=True)
class PartialConfig(SGDConfig):
    """Deep Unlearn's CF-k/EU-k defaults: ``k`` 1, SGD lr 0.01, 10 epochs, batch 256, the rate
    multiplied by 0.1 after 50 %, 80 % and 90 % of the epochs.

    Budget rule: an epoch passes over the retain set (weight 0.9). The milestones are fractions
    of the run applied step by step: at 10 epochs this is Deep Unlearn's per-epoch schedule
    exactly, and a three-epoch run still spends half of its steps at the full rate (per epoch,
    milestones ``floor(f * 3)`` would leave one epoch at the full rate and two decayed ones).

    Goel et al.'s method is plain fine-tuning of the last layers, so the SGD here has momentum 0.9
    and weight decay 5e-4 (Deep Unlearn's port has no momentum although it searches one, and adds
    a proximal term from SCRUB's code base).

    Attributes:
        k: blocks before the classifier that are trained (0: the classifier only).
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    k: int = 1
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 0.1
    batch_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, integer=("k",), nonnegative=("k", "lr_decay"))


def _train_last_blocks(model: nn.Module, splits: RestrictedSplits, cfg: PartialConfig, *, device, seed: int,
                       augment: bool, method: str) -> nn.Module:
    train_names = {n for b in trainable_blocks(model, k=cfg.k) for n in b}
    params = _layers.block_parameters(model, train_names)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in params:
        p.requires_grad_(True)
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, augment=augment,
                           device=device)
    opt = _loops.sgd([p for _, p in params], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = _loops.per_step(opt, lambda t: _loops.milestone_factor(t, milestones=MILESTONES, decay=cfg.lr_decay),
                            cfg.epochs * len(loader))

    def prepare(epoch: int) -> None:
        for name, child in model.named_children():
            if name not in train_names:
                child.eval()

    try:
        _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, method=method, before_epoch=prepare,
                         scheduler=sched, per_step_scheduler=True)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return model


@register("cf_k", config=PartialConfig, family="partial retraining", uses=("retain",),
          summary="fine-tune only the last k blocks and the classifier on the retain set",
          reference="Goel et al. 2022 (CF-k)")
def cf_k(model: nn.Module, splits: RestrictedSplits, cfg: PartialConfig, *, device, seed: int) -> nn.Module:
    """CF-k: train the last ``k`` blocks and the classifier on the retain set, the rest frozen."""
    return _train_last_blocks(model, splits, cfg, device=device, seed=seed, augment=False, method="cf_k")


@register("eu_k", config=PartialConfig, family="partial retraining", uses=("retain",),
          summary="re-initialise the last k blocks and the classifier, then train them on the retain set",
          reference="Goel et al. 2022 (EU-k)")
def eu_k(model: nn.Module, splits: RestrictedSplits, cfg: PartialConfig, *, device, seed: int) -> nn.Module:
    """EU-k: :func:`reinit_blocks`, then train them on the retain set with the dataset's training
    augmentation (if it has one), as Deep Unlearn does."""
    reinit_blocks(model, k=cfg.k, seed=seed)
    return _train_last_blocks(model, splits, cfg, device=device, seed=seed, augment=True, method="eu_k")
