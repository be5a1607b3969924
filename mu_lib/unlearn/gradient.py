"""Gradient ascent on the forget set, and NegGrad+ (ascent on forget, descent on retain).

* ``gradient_ascent`` (GA) maximises the cross-entropy of the forget set, reading nothing else
  (the NegGrad baseline of Golatkar et al. 2020; Deep Unlearn's GA, adapted from Unlearn-Sparse).
  The loss is unbounded, so GA either barely moves or destroys the model: a baseline, not a method.
* ``neggrad_plus`` (NG+, Kurmanji et al. 2023) balances the two: each retain batch is paired with
  the next forget batch and the step minimises

  .. math:: L = \\alpha\\,\\bigl(\\mathrm{CE}_r + \\tfrac{\\lambda}{2}\\lVert\\theta-\\theta_0\\rVert^2\\bigr)
               - (1-\\alpha)\\,\\mathrm{CE}_f .

Example:
    >>> from mu_lib import data, models, unlearn
    >>> s = data.make_splits("digits", val_size=50, test_size=300, seed=0)
    >>> net = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    >>> out = unlearn.get("neggrad_plus", epochs=1)(net, s, device="cpu", seed=0)
    >>> sorted(out.state_dict()) == sorted(net.state_dict())
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["GradientAscentConfig", "NegGradPlusConfig", "gradient_ascent", "neggrad_plus"]


@dataclass(frozen=True)
class GradientAscentConfig(SGDConfig):
    """Deep Unlearn's GA defaults: 10 epochs, SGD lr 0.01, momentum 0.9, wd 5e-4, batch 256.

    (Unlearn-Sparse's README uses lr 1e-4 for 5 epochs on CIFAR-10; the range is searched per
    setting in Deep Unlearn.)

    Budget rule: an epoch passes over the forget set only (weight 0.1); the rate is constant.
    """

    epoch_weights = (NOMINAL_FRACTIONS["forget"],)
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256



@register("gradient_ascent", config=GradientAscentConfig, family="gradient ascent", uses=("forget",),
          summary="maximise the cross-entropy of the forget set (reads the forget set only)",
          reference="Golatkar et al. 2020 (NegGrad); Deep Unlearn GA; Unlearn-Sparse GA")
def gradient_ascent(model: nn.Module, splits: RestrictedSplits, cfg: GradientAscentConfig, *, device,
                    seed: int) -> nn.Module:
    """Minimise ``-CE`` on the forget set with SGD, in train mode (as Deep Unlearn)."""
    loader = splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return _loops.run_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, method="gradient_ascent",
                             loss_fn=lambda xb, yb: -F.cross_entropy(model(xb), yb))


@dataclass(frozen=True)
class NegGradPlusConfig(SGDConfig):
    """Deep Unlearn's NG+ defaults (from SCRUB's notebooks): alpha 0.95, SGD lr 0.01, momentum 0.9,
    no weight decay, 10 epochs, batch 256, no schedule.

    Attributes:
        alpha: weight of the retain loss; ``1 - alpha`` weighs the (negated) forget loss.
        proximal: ``lambda`` of the proximal term ``lambda/2 ||theta - theta_0||^2`` on the retain
            side. Deep Unlearn's value is 0 (it is a class attribute there, not a searched field).

    Budget rule: an epoch passes over the retain set and over as many forget examples (weight
    1.8); the rate is constant.
    """

    epoch_weights = (2 * NOMINAL_FRACTIONS["retain"],)
    epochs: int = 10
    alpha: float = 0.95
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    proximal: float = 0.0
    batch_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, nonnegative=("proximal",), fraction=("alpha",))


@register("neggrad_plus", config=NegGradPlusConfig, family="gradient ascent", uses=("retain", "forget"),
          summary="descend on retain and ascend on forget, weighted alpha : 1 - alpha",
          reference="Kurmanji et al. 2023 (NegGrad+); Deep Unlearn NG+")
def neggrad_plus(model: nn.Module, splits: RestrictedSplits, cfg: NegGradPlusConfig, *, device,
                 seed: int) -> nn.Module:
    """NegGrad+: each epoch is one pass over the retain set, each retain batch paired with the next
    forget batch (the forget loader restarts, reshuffled, whenever it runs out).

    The model stays in eval mode, so batch-norm statistics are frozen, as in SCRUB's
    ``run_neggrad_epoch`` and Deep Unlearn (SCRUB's MIA notebook uses train mode instead). With
    ``alpha = 1`` this is plain fine-tuning on the retain set with the same optimiser.
    """
    retain = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    forget = _loops.cycle(splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed + 1,
                                        device=device))
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    theta0 = [p.detach().clone() for p in model.parameters()] if cfg.proximal > 0 else None

    def loss_fn(xr: torch.Tensor, yr: torch.Tensor) -> torch.Tensor:
        xf, yf = next(forget)
        retain_loss = F.cross_entropy(model(xr), yr)
        if theta0 is not None:
            retain_loss = retain_loss + 0.5 * cfg.proximal * sum(
                (p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), theta0))
        return cfg.alpha * retain_loss - (1.0 - cfg.alpha) * F.cross_entropy(model(xf), yf)

    return _loops.run_epochs(model, retain, epochs=cfg.epochs, optimizer=opt, loss_fn=loss_fn, method="neggrad_plus",
                             train_mode=False)
