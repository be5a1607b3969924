"""Winner #8, Ahn, Lee, Bae, Yim and Jung (``reinit_mse``): cycles of random layer re-initialisation and
MSE matching of the original outputs on noisy retain images; never reads the forget set.
"""

from __future__ import annotations

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
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, UnlearnConfig, register

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
            2 used ``(2, 1, 1, 1)`` with a per-epoch learning-rate list, not implemented);
            fractional lengths are allowed.
        layers_per_cycle: layers drawn (with replacement) for re-initialisation each cycle.
        lr: initial learning rate of each cycle, cosine-annealed with period ``cosine_period``
            epochs (the write-up's T_max 2), per step.
        input_noise_std: std of the Gaussian noise added to the (standardised) retain images
            (the final settings' "0.01 sigma"; an ablation used 0.1).
        momentum, weight_decay, batch_size: SGD. The write-up states neither optimiser nor batch
            size; these are the competition baseline's (momentum 0.9, weight decay 5e-4, batch 64).

    Budget rule: every epoch passes over the retain set (weight 0.9); the number of cycles is
    kept and every cycle's length and the cosine's period scale by the same factor, so a shorter
    run has the same cycles, each shorter.

    Example:
        >>> ReinitMSEConfig().with_epoch_budget(0.9).cycle_epochs
        (0.2, 0.4, 0.4)
    """

    epoch_fields = ("cycle_epochs",)
    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    scaled_fields = ("cosine_period",)
    cycle_epochs: tuple[float, ...] = (1.0, 2.0, 2.0)
    layers_per_cycle: int = 6
    lr: float = 1e-3
    cosine_period: float = 2.0
    input_noise_std: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("layers_per_cycle", "batch_size"),
                            positive=("lr", "batch_size", "cosine_period"),
                            nonnegative=("layers_per_cycle", "input_noise_std", "weight_decay"),
                            below_one=("momentum",))
        if not isinstance(self.cycle_epochs, tuple) or not self.cycle_epochs or not all(
                isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) and e >= 0
                for e in self.cycle_epochs):
            raise ValueError(f"ReinitMSEConfig.cycle_epochs must be a non-empty tuple of numbers >= 0, "
                             f"got {self.cycle_epochs!r}")


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
        period_steps = cfg.cosine_period * len(loader)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k, period=period_steps: _loops.cosine_factor(min(k / period, 1.0)))
        _loops.run_phase(model, loader, epochs=epochs, optimizer=opt, scheduler=sched, per_step_scheduler=True,
                         loss_fn=remember, method=f"reinit_mse cycle {c + 1}")
    return model
