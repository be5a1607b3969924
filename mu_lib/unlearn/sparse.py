"""Sparsity-aware unlearning: fine-tuning on the retain set with a decaying l1 penalty.

``l1_sparse`` (Jia et al. 2023, "Model sparsity can simplify machine unlearning") minimises

.. math:: \\mathrm{CE}_r(\\theta) + \\gamma_t \\lVert\\theta\\rVert_1 ,
          \\qquad \\gamma_t = \\alpha\\,\\Bigl(1 - \\frac{t}{E - E_0}\\Bigr) \\text{ for } t < E - E_0,
          \\text{ else } 0,

over all parameters, where ``t`` is the time in epochs since the start (fractional: the weight is
updated at every step), ``E`` the number of epochs and ``E_0`` (``no_l1_epochs``) the final epochs
without penalty (``gamma_t = alpha`` throughout if ``E = E_0``). The penalty pushes weights towards
zero early, when the model must move away from the forget set, and fades so that the last epochs
recover accuracy.

Example:
    >>> [round(l1_weight(t, epochs=4, alpha=1.0), 2) for t in range(4)]
    [1.0, 0.75, 0.5, 0.25]
    >>> [l1_weight(t, epochs=4, alpha=1.0, no_l1_epochs=2) for t in range(4)]
    [1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn._framework import SalUnFrameworkConfig
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, register

__all__ = ["L1SparseConfig", "l1_weight", "l1_sparse"]


def l1_weight(epoch: float, *, epochs: int, alpha: float, no_l1_epochs: int = 0) -> float:
    """The l1 weight ``gamma_t`` at time ``epoch`` (0-based, in epochs; Unlearn-Sparse's ``FT_iter``
    evaluates it at whole epochs, the library at every step)."""
    active = epochs - no_l1_epochs
    if active == 0:
        return alpha
    if epoch < active:
        return alpha * (1.0 - epoch / active)
    return 0.0


@dataclass(frozen=True)
class L1SparseConfig(SalUnFrameworkConfig):
    """Unlearn-Sparse's CIFAR-10 command: 10 epochs of SGD at lr 0.01 with its framework's momentum
    0.9, wd 5e-4 and batch 256; no epochs without the penalty.

    The repository leaves ``alpha`` to the user (its argument default, 0.2, is shared with other
    methods and wipes out a network: the penalty's gradient ``alpha * sign(theta)`` dwarfs the
    cross-entropy's). ``alpha = 1e-4`` is the value of the rerun scripts of Scissorhands (Wu and
    Harandi 2024), which call Unlearn-Sparse's ``FT_prune`` with ``--alpha 1e-4 --unlearn_lr 0.01
    --unlearn_epochs 10`` on SVHN and CelebA-HQ.

    Budget rule: an epoch passes over the retain set (weight 0.9); ``no_l1_epochs`` scales with
    ``epochs``, and the penalty's weight follows the time in epochs step by step, so that the
    linear decay keeps its shape in a shorter run.

    Attributes:
        alpha: initial weight of the l1 penalty.
        no_l1_epochs: final epochs without the penalty (at most ``epochs``).
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    scaled_fields = ("no_l1_epochs",)
    alpha: float = 1e-4
    no_l1_epochs: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, integer=("no_l1_epochs",), nonnegative=("alpha", "no_l1_epochs"))
        if self.no_l1_epochs > self.epochs:
            raise ValueError(f"L1SparseConfig.no_l1_epochs={self.no_l1_epochs} exceeds epochs={self.epochs}")


@register("l1_sparse", config=L1SparseConfig, family="sparsity", uses=("retain",),
          summary="fine-tune on the retain set with a linearly decaying l1 penalty",
          reference="Jia et al. 2023 (l1-sparse unlearning)")
def l1_sparse(model: nn.Module, splits: RestrictedSplits, cfg: L1SparseConfig, *, device, seed: int) -> nn.Module:
    """Fine-tune on the retain set (train mode, constant learning rate) minimising
    ``CE + gamma_t * ||theta||_1`` with :func:`l1_weight`, evaluated at every step."""
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, augment=cfg.augment,
                           device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = 0

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        nonlocal steps
        gamma = l1_weight(steps / len(loader), epochs=cfg.epochs, alpha=cfg.alpha, no_l1_epochs=cfg.no_l1_epochs)
        steps += 1
        loss = F.cross_entropy(model(xb), yb)
        if gamma > 0:
            loss = loss + gamma * sum(p.abs().sum() for p in model.parameters())
        return loss

    return _loops.run_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, loss_fn=loss_fn, method="l1_sparse")
