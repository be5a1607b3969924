"""Winner #6, the DUTH / Athena "Euclid" team (``kde``; Deep Unlearn ``kgltop6``): reset the first conv
and the classifier, distil the original model on validation data, fine-tune with distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn._layers import (
    classifier,
    first_conv,
    reset_layer_,
)
from mu_lib.unlearn._losses import kl_distillation
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["KDEConfig", "kde"]

# --------------------------------------------------------------------------------------------
# Winner #6: DUTH / Athena "Euclid" team (KDE)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KDEConfig(SGDConfig):
    """KDE (winner #6; Deep Unlearn ``kgltop6``, adapted from stathiskaripidis' notebook).

    Attributes:
        warmup_epochs: distillation epochs on the validation split (SGD, constant ``warmup_lr``).
        epochs: retain epochs with hard CE + soft CE + KL (SGD, cosine from ``lr``).
        temperature: T of the soft targets.
        warmup_lr, lr, momentum, weight_decay, batch_size: SGD of both phases.

    Budget rule: a warm-up epoch passes over the validation split (weight 0.15), a retain epoch
    over the retain set (weight 0.9); both scale together, and the retain phase's cosine anneals
    per step over the phase (the notebook steps it per epoch).
    """

    epoch_fields = ("warmup_epochs", "epochs")
    epoch_weights = (NOMINAL_FRACTIONS["val"], NOMINAL_FRACTIONS["retain"])
    warmup_epochs: int = 3
    epochs: int = 3
    temperature: float = 5.0
    warmup_lr: float = 9e-4
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, integer=("warmup_epochs",), positive=("temperature", "warmup_lr"),
                            nonnegative=("warmup_epochs",))


@register("kde", config=KDEConfig, family="competition", uses=("retain", "val"),
          summary="reset the first conv and the classifier, distil the original on validation data, fine-tune",
          reference="NeurIPS 2023 unlearning challenge winner #6 (DUTH / Athena 'Euclid' team; write-up known from "
                    "a digest of Kaggle discussion 458740); Deep Unlearn KDE (kgltop6)")
def kde(model: nn.Module, splits: RestrictedSplits, cfg: KDEConfig, *, device, seed: int) -> nn.Module:
    """1. Reset the first conv and the classifier (:func:`~mu_lib.unlearn.winners.reset_layer_`;
    a model without conv layers gets only its classifier reset). 2. Warm-up: minimise
    ``KL_T(student || original)`` (:func:`~mu_lib.unlearn.winners.kl_distillation`) on the
    validation split, which neither model was trained on. 3. Fine-tune on the retain set with
    ``CE(y) + softCE_T(original) + KL_T(original)``.

    The forget set is never read: the original model is the teacher only on validation and
    retain images. (Soft CE and KL differ by the teacher's entropy, so their gradients are equal;
    the recipe thus weights distillation twice.)
    """
    if cfg.warmup_epochs and splits.sizes()["val"] == 0:
        raise ValueError("kde distils on the validation split, which is empty; pass splits with val_size > 0 "
                         "or warmup_epochs=0")
    gen = torch.Generator().manual_seed(seed)
    teacher = _loops.frozen_copy(model)
    stem = first_conv(model)
    for layer in ([stem[1]] if stem is not None else []) + [classifier(model)[1]]:
        reset_layer_(layer, generator=gen)
    T = cfg.temperature
    if cfg.warmup_epochs:
        val = splits.loader("val", batch_size=cfg.batch_size, shuffle=True, seed=seed + 1, device=device)
        opt = _loops.sgd(model, lr=cfg.warmup_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

        def warm(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                t = teacher(xb)
            return kl_distillation(model(xb), t, temperature=T)

        _loops.run_epochs(model, val, epochs=cfg.warmup_epochs, optimizer=opt, loss_fn=warm, method="kde warm-up")

    def retain_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(xb)
        out = model(xb)
        soft_ce = -(F.softmax(t / T, dim=1) * F.log_softmax(out / T, dim=1)).sum(dim=1).mean()
        return F.cross_entropy(out, yb) + soft_ce + kl_distillation(out, t, temperature=T)

    retain = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = _loops.per_step(opt, _loops.cosine_factor, cfg.epochs * len(retain))
    return _loops.run_epochs(model, retain, epochs=cfg.epochs, optimizer=opt, scheduler=sched, per_step_scheduler=True,
                             loss_fn=retain_loss, method="kde")
