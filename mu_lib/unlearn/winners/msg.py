"""Winner #2, Kookmin University (``msg``; Deep Unlearn ``kgltop2``): re-initialise the conv weights with
the smallest forget/retain gradient and fine-tune the kept ones with a tenfold smaller rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn._layers import (
    conv_layers,
)
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["MSGConfig", "msg_gradients", "small_gradient_masks", "reinit_kaiming_", "msg_lr_factor", "msg"]

# --------------------------------------------------------------------------------------------
# Winner #2: Kookmin University (MSG)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MSGConfig(SGDConfig):
    """MSG, "masked small gradients" (winner #2, Kookmin; Deep Unlearn ``kgltop2``).

    Attributes:
        epochs: fine-tuning epochs on the retain set.
        init_rate: fraction of each conv weight tensor re-initialised.
        kept_grad_scale: factor on the gradient of the conv weights that were kept (1 on the
            re-initialised ones): the write-up's "1/10 of the learning rate".
        scale_weight_decay: ``False`` (the default) scales the *gradient* of the kept weights, as
            the team did and as Deep Unlearn ports it: SGD adds the weight decay after the
            scaling, so the kept weights still decay at the full rate. ``True`` scales their
            weight decay too, which makes it exactly a 10x smaller learning rate on them.
        selection: ``"layer"`` (Deep Unlearn: the smallest ``init_rate`` of each conv tensor) or
            ``"global"`` (the write-up: the smallest ``init_rate`` of all conv weights together).
        lr, momentum, weight_decay, batch_size: SGD of the fine-tuning (and the batch size of
            the gradient collection).
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    epochs: int = 5
    init_rate: float = 0.3
    kept_grad_scale: float = 0.1
    scale_weight_decay: bool = False
    selection: str = "layer"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        _loops.check_config(self, nonnegative=("kept_grad_scale",), fraction=("init_rate",),
                            choices={"selection": ("layer", "global")}, boolean=("scale_weight_decay",))


def msg_gradients(model: nn.Module, x_retain: torch.Tensor, y_retain: torch.Tensor, x_forget: torch.Tensor,
                  y_forget: torch.Tensor, *, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Summed gradient of +CE on a random retain subset (as large as the forget set) and -CE on
    the forget set, for every conv weight, keyed by parameter name.

    The model is put in eval mode (batch-norm statistics are not updated by these passes; Deep
    Unlearn leaves the mode as it finds it). Batch losses are means; their gradients are summed
    over batches, as in the code.
    """
    device = next(model.parameters()).device
    n = min(len(y_forget), len(y_retain))
    pick = torch.randperm(len(y_retain), generator=generator)[:n]
    sub = TensorLoader(x_retain[pick], y_retain[pick], batch_size=batch_size, shuffle=True, generator=generator,
                       device=device)
    fgt = TensorLoader(x_forget, y_forget, batch_size=batch_size, shuffle=True, generator=generator, device=device)
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for loader, sign in ((sub, 1.0), (fgt, -1.0)):
        for xb, yb in loader:
            (sign * F.cross_entropy(model(xb), yb)).backward()
    names = {id(m.weight): f"{n}.weight" for n, m in conv_layers(model)}
    grads = {names[id(p)]: p.grad.detach().clone() for p in model.parameters() if id(p) in names}
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


def small_gradient_masks(grads: dict[str, torch.Tensor], *, fraction: float, selection: str = "layer"
                         ) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``fraction`` entries with the smallest ``|grad|``.

    ``selection="layer"`` takes ``round(fraction * numel)`` entries of each tensor;
    ``"global"`` takes ``round(fraction * total)`` over all tensors together. Ties are broken by
    ``torch.topk``.

    Example:
        >>> m = small_gradient_masks({"w": torch.tensor([3.0, -0.1, 2.0, 0.2])}, fraction=0.5)
        >>> m["w"].tolist()
        [False, True, False, True]
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if selection not in ("layer", "global"):
        raise ValueError(f"selection must be 'layer' or 'global', got {selection!r}")
    if not grads:
        return {}

    def smallest(score: torch.Tensor, k: int) -> torch.Tensor:
        mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
        if k > 0:
            mask[torch.topk(-score.flatten(), k).indices] = True
        return mask

    if selection == "layer":
        return {n: smallest(g.abs(), round(fraction * g.numel())).view_as(g) for n, g in grads.items()}
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    mask = smallest(flat, round(fraction * flat.numel()))
    out, start = {}, 0
    for n, g in grads.items():
        out[n] = mask[start:start + g.numel()].view_as(g)
        start += g.numel()
    return out


def reinit_kaiming_(weight: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Overwrite ``weight[mask]`` with Kaiming-normal draws (fan_out, ReLU), in place."""
    fresh = torch.empty(weight.shape)
    nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu", generator=generator)
    with torch.no_grad():
        weight[mask] = fresh.to(device=weight.device, dtype=weight.dtype)[mask]
    return weight


def msg_lr_factor(progress: float) -> float:
    """MSG's learning-rate factor at ``progress`` (the fraction of the run done, per step).

    Deep Unlearn's ``LinearAnnealingLR`` over the write-up's 5 epochs warms up linearly over 3
    "steps" and decays linearly to 0 at step 6, one step per epoch: factors 1/3, 2/3, 1, 2/3, 1/3.
    Here the same triangle is a function of progress, ``x = 1 + 5 * progress`` and
    ``min(x, 6 - x) / 3``: equal to Deep Unlearn's factor at the start of each of 5 epochs,
    linear in between, and the same shape for any number of epochs (per epoch, a one-epoch run
    would stay at 1 and a three-epoch run would give 1/2, 1, 1/2).

    Example:
        >>> [round(msg_lr_factor(e / 5), 3) for e in range(5)]
        [0.333, 0.667, 1.0, 0.667, 0.333]
    """
    x = 1.0 + 5.0 * progress
    return max(0.0, min(x, 6.0 - x) / 3.0)


@register("msg", config=MSGConfig, family="competition", uses=("retain", "forget"),
          summary="re-initialise the conv weights with the smallest forget/retain gradient; fine-tune the rest slowly",
          reference="NeurIPS 2023 unlearning challenge winner #2 (Kookmin University, Kaggle discussion 459200); "
                    "Deep Unlearn MSG (kgltop2)")
def msg(model: nn.Module, splits: RestrictedSplits, cfg: MSGConfig, *, device, seed: int) -> nn.Module:
    """1. :func:`msg_gradients`; 2. :func:`small_gradient_masks` of every conv weight;
    3. :func:`reinit_kaiming_` of the selected entries; 4. fine-tune on the retain set with CE
    and SGD, the gradient of kept conv entries multiplied by ``kept_grad_scale``, the learning
    rate following :func:`msg_lr_factor` per step.

    Budget rule: an epoch passes over the retain set (weight 0.9); the warm-up-and-decay triangle
    is a function of the fraction of the run done.

    Deviations from Deep Unlearn: the rate changes per step (see :func:`msg_lr_factor`); conv
    biases are kept (Deep Unlearn's replacement conv re-draws
    them, which matters only for convs with a bias, not for ResNet-18); gradients are collected
    in eval mode. On a model without conv layers, MSG reduces to the fine-tuning.
    """
    gen = torch.Generator().manual_seed(seed)
    grads = msg_gradients(model, *splits.xy("retain"), *splits.xy("forget"), batch_size=cfg.batch_size,
                          generator=gen)
    masks = small_gradient_masks(grads, fraction=cfg.init_rate, selection=cfg.selection)
    params = dict(model.named_parameters())
    scales = {}
    for name, mask in masks.items():
        reinit_kaiming_(params[name], mask, generator=gen)
        scales[name] = torch.where(mask, 1.0, cfg.kept_grad_scale).to(params[name])
    if cfg.epochs == 0:
        return model
    conv_w = [params[n] for n in scales]
    others = [p for n, p in params.items() if n not in scales]
    conv_decay = 0.0 if cfg.scale_weight_decay else cfg.weight_decay
    groups = [{"params": others}, {"params": conv_w, "weight_decay": conv_decay}]
    opt = _loops.sgd([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                     weight_decay=cfg.weight_decay)

    def scale_gradients() -> None:
        for name, s in scales.items():
            p = params[name]
            if p.grad is None:
                continue
            if cfg.scale_weight_decay and cfg.weight_decay:
                p.grad.add_(p.detach(), alpha=cfg.weight_decay)
            p.grad.mul_(s)

    loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    sched = _loops.per_step(opt, msg_lr_factor, cfg.epochs * len(loader))
    return _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, scheduler=sched, per_step_scheduler=True,
                            method="msg", before_step=scale_gradients)
