"""Sparsity-aware unlearning: fine-tuning on the retain set with a decaying l1 penalty.

``l1_sparse`` (Jia et al. 2023, "Model sparsity can simplify machine unlearning") minimises

.. math:: \\mathrm{CE}_r(\\theta) + \\gamma_t \\lVert\\theta\\rVert_1 ,
          \\qquad \\gamma_t = \\alpha\\,\\Bigl(1 - \\frac{t}{E - E_0}\\Bigr) \\text{ for } t < E - E_0,
          \\text{ else } 0,

over all parameters, where ``t`` is the 0-based epoch, ``E`` the number of epochs and ``E_0``
(``no_l1_epochs``) the final epochs without penalty (``gamma_t = alpha`` throughout if
``E = E_0``). The penalty pushes weights towards zero early, when the model must move away from
the forget set, and fades so that the last epochs recover accuracy.

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
from mu_lib.unlearn.base import RestrictedSplits, SGDConfig, register

__all__ = ["L1SparseConfig", "l1_weight", "l1_sparse"]


def l1_weight(epoch: int, *, epochs: int, alpha: float, no_l1_epochs: int = 0) -> float:
    """The l1 weight ``gamma_t`` of 0-based ``epoch`` (Unlearn-Sparse's ``FT_iter``)."""
    active = epochs - no_l1_epochs
    if active == 0:
        return alpha
    if epoch < active:
        return alpha * (1.0 - epoch / active)
    return 0.0


@dataclass(frozen=True)
class L1SparseConfig(SGDConfig):
    """Unlearn-Sparse's CIFAR-10 command: 10 epochs of SGD at lr 0.01 with its framework's momentum
    0.9, wd 5e-4 and batch 256; no epochs without the penalty.

    The repository leaves ``alpha`` to the user (its argument default, 0.2, is shared with other
    methods and wipes out a network: the penalty's gradient ``alpha * sign(theta)`` dwarfs the
    cross-entropy's). ``alpha = 1e-4`` is the value reruns of the official scripts use on CIFAR-10.

    Attributes:
        alpha: initial weight of the l1 penalty.
        no_l1_epochs: final epochs without the penalty (at most ``epochs``).
    """

    epochs: int = 10
    alpha: float = 1e-4
    no_l1_epochs: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, nonnegative=("alpha", "no_l1_epochs"))
        if self.no_l1_epochs > self.epochs:
            raise ValueError(f"L1SparseConfig.no_l1_epochs={self.no_l1_epochs} exceeds epochs={self.epochs}")


@register("l1_sparse", config=L1SparseConfig, family="sparsity", uses=("retain",),
          summary="fine-tune on the retain set with a linearly decaying l1 penalty",
          reference="Jia et al. 2023 (l1-sparse unlearning)")
def l1_sparse(model: nn.Module, splits: RestrictedSplits, cfg: L1SparseConfig, *, device, seed: int) -> nn.Module:
    """Fine-tune on the retain set (train mode, constant learning rate) minimising
    ``CE + gamma_t * ||theta||_1`` with :func:`l1_weight`."""
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gamma = 0.0

    def set_gamma(epoch: int) -> None:
        nonlocal gamma
        gamma = l1_weight(epoch, epochs=cfg.epochs, alpha=cfg.alpha, no_l1_epochs=cfg.no_l1_epochs)

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(model(xb), yb)
        if gamma > 0:
            loss = loss + gamma * sum(p.abs().sum() for p in model.parameters())
        return loss

    return _loops.run_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, loss_fn=loss_fn, method="l1_sparse",
                             before_epoch=set_gamma)
