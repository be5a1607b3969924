"""Winner #4, Sebastian Oleszko (``prmq``; Deep Unlearn ``kgltop4``): prune 99 % of the weights by
magnitude, re-initialise them and fine-tune with cross-entropy plus entropy matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn._layers import (
    weight_layers,
)
from mu_lib.unlearn._losses import predictive_entropy
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, UnlearnConfig, register

__all__ = ["PRMQConfig", "prune_and_reinit_", "prmq"]

# --------------------------------------------------------------------------------------------
# Winner #4: Sebastian Oleszko (PRMQ)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PRMQConfig(UnlearnConfig):
    """PRMQ, "prune, retrain, mask, quantize" (winner #4, Sebastian Oleszko; Deep Unlearn ``kgltop4``).

    Attributes:
        epochs: fine-tuning length in (possibly fractional) passes over the retain set; the run
            takes ``int(len(loader) * epochs)`` steps.
        prune_amount: fraction of all conv and linear weights and biases pruned (global L1).
        entropy_weight: weight of the MSE between the per-example predictive entropies of the
            fine-tuned and the original model.
        class_weight_power: class weights ``count_c ** -power`` of the CE (0: unweighted).
        quantize: round-trip the result through float16 at the end (Deep Unlearn's "quantize";
            the write-up does not mention it).
        lr, momentum, weight_decay, batch_size: SGD at a constant learning rate.

    Budget rule: an epoch passes over the retain set (weight 0.9); ``epochs`` may be fractional,
    so a budget scales it exactly. The rate is constant.
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    epochs: float = 3.2
    prune_amount: float = 0.99
    entropy_weight: float = 1.0
    class_weight_power: float = 0.1
    quantize: bool = False
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("batch_size",), positive=("lr", "batch_size"),
                            nonnegative=("epochs", "entropy_weight", "class_weight_power", "weight_decay"),
                            fraction=("prune_amount",), below_one=("momentum",), boolean=("quantize",))


def prune_and_reinit_(model: nn.Module, *, amount: float, generator: torch.Generator
                      ) -> dict[str, torch.Tensor]:
    """Global unstructured L1 pruning of every conv and linear weight and bias, then re-drawing
    the pruned entries from U(+-sqrt(1 / fan_in)) (PyTorch's default bound); in place.

    Returns:
        Parameter name -> boolean mask of the pruned (re-initialised) entries.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"prune amount must be in [0, 1], got {amount}")
    targets = [(f"{n}.{p}", m, p) for n, m in weight_layers(model) for p in ("weight", "bias")
               if getattr(m, p) is not None]
    if not targets:
        return {}
    prune.global_unstructured([(m, p) for _, m, p in targets], pruning_method=prune.L1Unstructured, amount=amount)
    masks = {}
    for name, m, p in targets:
        masks[name] = ~getattr(m, f"{p}_mask").bool()
        prune.remove(m, p)
        bound = math.sqrt(1.0 / m.weight[0].numel())
        param = getattr(m, p)
        fresh = torch.empty(param.shape).uniform_(-bound, bound, generator=generator)
        with torch.no_grad():
            param[masks[name]] = fresh.to(device=param.device, dtype=param.dtype)[masks[name]]
    return masks


@register("prmq", config=PRMQConfig, family="competition", uses=("retain",),
          summary="prune 99 % of the weights by magnitude and re-initialise them; fine-tune with CE + entropy matching",
          reference="NeurIPS 2023 unlearning challenge winner #4 (Sebastian Oleszko, Kaggle discussion 459148); "
                    "Deep Unlearn PRMQ (kgltop4)")
def prmq(model: nn.Module, splits: RestrictedSplits, cfg: PRMQConfig, *, device, seed: int) -> nn.Module:
    """Prune and re-initialise (:func:`prune_and_reinit_`), then minimise
    ``CE_w(f(x), y) + entropy_weight * (H(f(x)) - H(f_0(x)))^2`` on the retain set, where
    ``f_0`` is the original model (eval mode) and H the :func:`predictive_entropy`.

    Deviations: pruned biases are re-initialised like the weights (Deep Unlearn leaves them at
    0), and the run stops after exactly ``int(len(loader) * epochs)`` steps (one more in Deep
    Unlearn).
    """
    gen = torch.Generator().manual_seed(seed)
    teacher = _loops.frozen_copy(model)
    prune_and_reinit_(model, amount=cfg.prune_amount, generator=gen)
    x, y = splits.xy("retain")
    counts = torch.bincount(y, minlength=splits.data.num_classes).clamp(min=1).float()
    weights = (counts ** -cfg.class_weight_power).to(device)
    loader = TensorLoader(x, y, batch_size=cfg.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(seed), device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = int(len(loader) * cfg.epochs)

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h0 = predictive_entropy(teacher(xb))
        out = model(xb)
        return F.cross_entropy(out, yb, weight=weights) + cfg.entropy_weight * F.mse_loss(predictive_entropy(out), h0)

    _loops.run_epochs(model, loader, epochs=math.ceil(steps / len(loader)), max_steps=steps, optimizer=opt,
                      loss_fn=loss_fn, method="prmq")
    if cfg.quantize:
        model.half().float()
    return model
