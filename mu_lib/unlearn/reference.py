"""Reference points: retraining from scratch (the gold standard), the original model, fine-tuning.

* ``retrain`` trains the same architecture from a fresh initialisation on the retain set with the
  recipe of the original model. Pass the recipe as overrides, e.g.
  ``unlearn.get("retrain", **dataclasses.asdict(profile.recipe))``.
* ``original`` returns the original model unchanged ("doing nothing"), the lower reference.
* ``finetune`` continues training on the retain set only, so that the forget set is forgotten
  only through catastrophic forgetting (Deep Unlearn's FT; the starting kit's baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mu_lib.models import reinitialize
from mu_lib.train import SCHEDULES, fit
from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, UnlearnConfig, register


@dataclass(frozen=True)
class RetrainConfig(UnlearnConfig):
    """Recipe of retraining; defaults are the ``cpu`` profile's recipe of the original model.

    Retraining is the reference that unlearning approximates, so its epochs are never scaled by
    an epoch budget.
    """

    epoch_fields = ()
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    augment: bool = False

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("epochs", "batch_size"), positive=("lr", "batch_size"),
                            nonnegative=("epochs", "weight_decay"), below_one=("momentum",),
                            choices={"schedule": SCHEDULES}, boolean=("augment",))


@register("retrain", config=RetrainConfig, family="reference", uses=("retain",),
          summary="train from scratch on the retain set (the gold standard)",
          reference="the definition of exact unlearning")
def retrain(model: nn.Module, splits: RestrictedSplits, cfg: RetrainConfig, *, device, seed: int) -> nn.Module:
    reinitialize(model, seed=seed)
    x, y = splits.xy("retain")
    return fit(model, x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
               weight_decay=cfg.weight_decay, schedule=cfg.schedule,
               augment=splits.data.augment if cfg.augment else None, seed=seed, device=device, desc="retrain")


@dataclass(frozen=True)
class OriginalConfig(UnlearnConfig):
    """No hyperparameters: the original model is returned as it is."""


@register("original", config=OriginalConfig, family="reference", uses=(),
          summary="do nothing: return the original model", reference="the lower reference point")
def original(model: nn.Module, splits: RestrictedSplits, cfg: OriginalConfig, *, device, seed: int) -> nn.Module:
    return model


@dataclass(frozen=True)
class FinetuneConfig(SGDConfig):
    """Deep Unlearn's FT defaults: 5 epochs, SGD lr 0.1, momentum 0.9, wd 5e-4, batch 256, cosine.

    Budget rule: an epoch passes over the retain set (weight 0.9); the cosine anneals per step over
    the whole run (Deep Unlearn steps it per epoch, which leaves a one-epoch run at a constant rate).
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)

    epochs: int = 5
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256


@register("finetune", config=FinetuneConfig, family="fine-tuning", uses=("retain",),
          summary="fine-tune on the retain set (catastrophic forgetting of the forget set)",
          reference="Golatkar et al. 2020 (baseline); Deep Unlearn FT; the starting kit")
def finetune(model: nn.Module, splits: RestrictedSplits, cfg: FinetuneConfig, *, device, seed: int) -> nn.Module:
    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = _loops.per_step(opt, _loops.cosine_factor, cfg.epochs * len(loader))
    return _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, scheduler=sched, per_step_scheduler=True,
                            method="finetune")
