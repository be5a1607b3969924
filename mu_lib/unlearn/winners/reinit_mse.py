"""Winner #8, Ahn, Lee, Bae, Yim and Jung (``reinit_mse``): cycles of random layer re-initialisation and
MSE matching of the original outputs on noisy retain images; never reads the forget set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn._layers import (
    _randn,
    classifier,
    is_projection_shortcut,
    reset_layer_,
    weight_layers,
)
from mu_lib.unlearn.base import RestrictedSplits, UnlearnConfig, register

__all__ = ["ReinitMSEConfig", "reinit_candidates", "reinit_random_layers_", "reinit_mse"]

# --------------------------------------------------------------------------------------------
# Winner #8: Ahn, Lee, Bae, Yim, Jung (forget-set-free re-initialisation + MSE)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReinitMSEConfig(UnlearnConfig):
    """Forget-set-free cycles of layer re-initialisation and output matching (winner #8, Ahn et
    al.; not in Deep Unlearn). Defaults: the write-up's "algorithm 1".

    Attributes:
        cycle_epochs: "remembering" epochs of each cycle (algorithm 1: ``(1, 2, 2)``; algorithm
            2 used ``(2, 1, 1, 1)`` with a per-epoch learning-rate list, not implemented).
        layers_per_cycle: layers drawn (with replacement) for re-initialisation each cycle.
        lr: initial learning rate of each cycle, cosine-annealed per epoch with period
            ``cosine_period`` (the write-up's T_max 2).
        input_noise_std: std of the Gaussian noise added to the (standardised) retain images
            (the final settings' "0.01 sigma"; an ablation used 0.1).
        momentum, weight_decay, batch_size: SGD. The write-up states neither optimiser nor batch
            size; these are the competition baseline's (momentum 0.9, weight decay 5e-4, batch 64).
    """

    epoch_fields = ("cycle_epochs",)
    cycle_epochs: tuple[int, ...] = (1, 2, 2)
    layers_per_cycle: int = 6
    lr: float = 1e-3
    cosine_period: int = 2
    input_noise_std: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, positive=("lr", "batch_size", "cosine_period"),
                            nonnegative=("layers_per_cycle", "input_noise_std", "weight_decay"))
        if not self.cycle_epochs or not all(isinstance(e, int) and e >= 0 for e in self.cycle_epochs):
            raise ValueError(f"ReinitMSEConfig.cycle_epochs must be a non-empty tuple of integers >= 0, "
                             f"got {self.cycle_epochs!r}")

    def total_epochs(self) -> float:
        """Epochs over all cycles."""
        return float(sum(self.cycle_epochs))

    def _scaled_epochs(self, scale: float) -> ReinitMSEConfig:
        """Scale every cycle's epochs by the same factor (each keeps at least 1); the number of cycles
        is kept.

        Example:
            >>> ReinitMSEConfig().with_epoch_budget(4).cycle_epochs
            (1, 1, 1)
        """
        return dataclasses.replace(self, cycle_epochs=tuple(max(1, math.floor(e * scale)) for e in self.cycle_epochs))


def reinit_candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Weight layers that winner #8 may re-initialise: all but the classifier and projection
    shortcuts (``small_cnn``: conv1, conv2, fc1; ``resnet18``: its 17 3x3 convs)."""
    head = classifier(model)[1]
    return [(n, m) for n, m in weight_layers(model) if m is not head and not is_projection_shortcut(m)]


def reinit_random_layers_(model: nn.Module, *, count: int, generator: torch.Generator) -> list[str]:
    """Draw ``count`` of :func:`reinit_candidates` with replacement and reset each drawn layer
    entirely (its ``reset_parameters``); return the sorted names of the distinct reset layers.

    A model without candidates (e.g. logistic regression) is left unchanged.
    """
    candidates = reinit_candidates(model)
    if not candidates or count == 0:
        return []
    drawn = sorted(set(torch.randint(len(candidates), (int(count),), generator=generator).tolist()))
    for i in drawn:
        reset_layer_(candidates[i][1], generator=generator)
    return sorted(candidates[i][0] for i in drawn)


@register("reinit_mse", config=ReinitMSEConfig, family="competition", uses=("retain",),
          summary="cycles of random layer re-initialisation and MSE matching of the original outputs; no forget set",
          reference="NeurIPS 2023 unlearning challenge winner #8 (Ahn, Lee, Bae, Yim, Jung; Kaggle discussion 458715)")
def reinit_mse(model: nn.Module, splits: RestrictedSplits, cfg: ReinitMSEConfig, *, device, seed: int) -> nn.Module:
    """For each cycle: :func:`reinit_random_layers_`, then minimise
    ``MSE(f(x + e), f_0(x + e))`` with ``e ~ N(0, input_noise_std^2)`` on retain images, where
    ``f_0`` is the original model (eval mode); a fresh SGD and cosine schedule per cycle.

    The method declares ``uses=("retain",)``: the registry refuses it the forget set.
    """
    gen = torch.Generator().manual_seed(seed)
    teacher = _loops.frozen_copy(model)
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)

    def remember(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xn = xb + cfg.input_noise_std * _randn(xb.shape, gen, xb) if cfg.input_noise_std else xb
        with torch.no_grad():
            target = teacher(xn)
        return F.mse_loss(model(xn), target)

    for c, epochs in enumerate(cfg.cycle_epochs):
        reinit_random_layers_(model, count=cfg.layers_per_cycle, generator=gen)
        opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.cosine_period)
        _loops.run_epochs(model, loader, epochs=epochs, optimizer=opt, scheduler=sched, loss_fn=remember,
                     method=f"reinit_mse cycle {c + 1}")
    return model
