"""Winner #5, toshi_k (``ct``; Deep Unlearn ``kgltop5``): transpose every conv kernel, then fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn._layers import (
    conv_layers,
)
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["CTConfig", "transpose_conv_kernels_", "ct"]

# --------------------------------------------------------------------------------------------
# Winner #5: toshi_k (CT)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CTConfig(SGDConfig):
    """CT, "convolution transpose" (winner #5, toshi_k; Deep Unlearn ``kgltop5``): the write-up's
    3 epochs and Deep Unlearn's SGD (lr 1e-3, momentum 0.9, weight decay 5e-4, batch 64, cosine).

    Budget rule: an epoch passes over the retain set (weight 0.9); the cosine anneals per step over
    the whole run (Deep Unlearn steps it per epoch)."""

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    epochs: int = 3
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64



def transpose_conv_kernels_(model: nn.Module) -> list[str]:
    """Transpose every conv kernel spatially (swap weight axes 2 and 3), in place.

    A transposed kernel computes on the transposed image what the original kernel computes on
    the image, so the features survive in a scrambled arrangement that the next layers must
    re-learn; the write-up likens it to feeding flipped images.

    Returns:
        The names of the transposed layers.

    Raises:
        ValueError: for a conv layer with a non-square kernel.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        >>> transpose_conv_kernels_(net), net[0].weight.flatten().tolist()
        (['0'], [1.0, 3.0, 2.0, 4.0])
    """
    layers = conv_layers(model)
    for name, m in layers:
        if m.kernel_size[0] != m.kernel_size[1]:
            raise ValueError(f"conv layer {name!r} has a non-square kernel {tuple(m.kernel_size)}; "
                             "CT transposes square kernels only")
    with torch.no_grad():
        for _, m in layers:
            m.weight.copy_(m.weight.transpose(2, 3).clone())
    return [n for n, _ in layers]


@register("ct", config=CTConfig, family="competition", uses=("retain",),
          summary="transpose every conv kernel, then fine-tune on the retain set",
          reference="NeurIPS 2023 unlearning challenge winner #5 (toshi_k, Kaggle discussion 458531); "
                    "Deep Unlearn CT (kgltop5)")
def ct(model: nn.Module, splits: RestrictedSplits, cfg: CTConfig, *, device, seed: int) -> nn.Module:
    """:func:`transpose_conv_kernels_`, then exactly the ``finetune`` method's loop (CE, SGD,
    cosine schedule per step) with CT's hyperparameters. The submitted entry ran CT in about
    half of its 512 runs and marvelworld's pseudo-label fine-tuning in the others; only CT is
    implemented (as in Deep Unlearn).
    """
    transpose_conv_kernels_(model)
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = _loops.per_step(opt, _loops.cosine_factor, cfg.epochs * len(loader))
    return _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, scheduler=sched, per_step_scheduler=True,
                            method="ct")
