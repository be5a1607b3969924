"""Winner #1 of the NeurIPS 2023 Machine Unlearning Challenge, fanchuan (``fcs``; Deep Unlearn ``kgltop1``):
push forget outputs to uniform, then alternate contrastive forget rounds and cross-entropy retain rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn._losses import contrastive_forget_loss, kl_to_uniform
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, UnlearnConfig, register

__all__ = ["FCSConfig", "fcs"]

# --------------------------------------------------------------------------------------------
# Winner #1: fanchuan (FCS)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FCSConfig(UnlearnConfig):
    """FCS (winner #1, fanchuan; Deep Unlearn ``kgltop1``): the write-up's and Deep Unlearn's values.

    Attributes:
        stage1_epochs: passes over the forget set pushing its outputs to uniform (stage 1).
        epochs: adversarial epochs (stage 2), each a forget round and a retain round.
        batch_size: batch size of every loader.
        temperature: tau of the contrastive forget loss.
        stage1_lr, stage1_momentum: SGD of stage 1 (no weight decay).
        forget_lr, forget_momentum, eta_min: SGD of the forget rounds (no weight decay), cosine
            annealed per step to ``eta_min`` over all forget steps.
        retain_lr: learning rate of the retain rounds *per 64 examples* (multiplied by
            ``batch_size / 64``, as in the code).
        retain_momentum, retain_weight_decay: SGD of the retain rounds.

    Budget rule: a stage-1 epoch passes over the forget set (weight 0.1), a stage-2 epoch over the
    forget set (contrastive round, the paired retain batches only forward) and the retain set
    (weight 1); both scale together. The forget rounds' cosine runs over all their steps.
    """

    epoch_fields = ("stage1_epochs", "epochs")
    epoch_weights = (NOMINAL_FRACTIONS["forget"], 1.0)
    stage1_epochs: int = 1
    epochs: int = 8
    batch_size: int = 256
    temperature: float = 1.15
    stage1_lr: float = 5e-3
    stage1_momentum: float = 0.9
    forget_lr: float = 3e-4
    forget_momentum: float = 0.9
    eta_min: float = 1e-6
    retain_lr: float = 1e-3
    retain_momentum: float = 0.9
    retain_weight_decay: float = 1e-2

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("stage1_epochs", "epochs", "batch_size"),
                            positive=("batch_size", "temperature", "stage1_lr", "forget_lr", "retain_lr"),
                            nonnegative=("stage1_epochs", "epochs", "eta_min", "retain_weight_decay"),
                            below_one=("stage1_momentum", "forget_momentum", "retain_momentum"))


@register("fcs", config=FCSConfig, family="competition", uses=("retain", "forget"),
          summary="forget outputs to uniform, then contrastive forget rounds alternating with CE retain rounds",
          reference="NeurIPS 2023 unlearning challenge winner #1 (fanchuan, Kaggle discussion 458721); "
                    "Deep Unlearn FCS (kgltop1)")
def fcs(model: nn.Module, splits: RestrictedSplits, cfg: FCSConfig, *, device, seed: int) -> nn.Module:
    """Stage 1: minimise KL(uniform || p(.|x)) on the forget set. Stage 2, ``epochs`` times: a
    forget round over (forget batch, retain batch) pairs with :func:`contrastive_forget_loss`
    (retain logits detached), then one cross-entropy pass over the retain set. The three phases
    have their own SGD optimisers (separate momentum buffers), as in the code. The model stays in
    train mode throughout (batch-norm statistics are updated, also by forget batches).
    """
    forget = splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    retain = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed + 1, device=device)
    retain_pairs = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed + 2, device=device)
    opt1 = _loops.sgd(model, lr=cfg.stage1_lr, momentum=cfg.stage1_momentum)
    _loops.run_epochs(model, forget, epochs=cfg.stage1_epochs, optimizer=opt1, method="fcs stage 1",
                      loss_fn=lambda xb, yb: kl_to_uniform(model(xb)))
    opt_f = _loops.sgd(model, lr=cfg.forget_lr, momentum=cfg.forget_momentum)
    sched_f = _loops.cosine(opt_f, len(forget) * cfg.epochs, eta_min=cfg.eta_min)
    opt_r = _loops.sgd(model, lr=cfg.retain_lr * cfg.batch_size / 64, momentum=cfg.retain_momentum,
                       weight_decay=cfg.retain_weight_decay)

    def retain_round(epoch: int) -> None:
        _loops.ce_epochs(model, retain, epochs=1, optimizer=opt_r, method="fcs retain round")

    return _loops.run_epochs(model, _loops.Paired(forget, retain_pairs), epochs=cfg.epochs, optimizer=opt_f,
                             scheduler=sched_f, per_step_scheduler=True, after_epoch=retain_round, method="fcs",
                             loss_fn=lambda f, r: contrastive_forget_loss(model(f[0]), _detached(model, r[0]),
                                                                         temperature=cfg.temperature))


def _detached(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)
