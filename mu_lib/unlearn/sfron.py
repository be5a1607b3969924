"""SFR-on: saliency forgetting in the remain-preserving manifold, online (Huang et al., NeurIPS 2024).

``sfr_on`` alternates, step by step, descent on the retain set with an *adaptive, masked* ascent
on the forget set:

* the forget loss weighs each example's cross-entropy by ``1 / CE^lambda`` (normalised over the
  batch), so the examples the model still fits well, i.e. those not yet forgotten, dominate the
  ascent;
* the ascent only moves the weights whose Fisher information on the forget set is at least
  ``threshold`` times that on the retain set (a forget-remain balanced saliency mask), and its
  gradient norm is clipped;
* its weight ``forget_alpha`` and the learning rate both decay with a cosine over the run, and
  the ascent comes every ``forget_freq`` retain steps. The authors show this fast-slow schedule
  approximates an update preconditioned by the retain set's Hessian, which keeps the ascent from
  damaging what the retain set needs.

Example:
    >>> import torch
    >>> adaptive_forget_loss(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]), lambd=0.0).item() == (
    ...     torch.nn.functional.cross_entropy(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])).item())
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.data import TensorLoader
from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["SFROnConfig", "adaptive_forget_loss", "balanced_saliency_mask", "sfr_on"]


def adaptive_forget_loss(logits: torch.Tensor, y: torch.Tensor, *, lambd: float) -> torch.Tensor:
    """SFR-on's adaptive forget loss: ``sum_i w_i CE_i`` with ``w_i`` proportional to ``CE_i^-lambda``.

    The weights are computed from detached losses (``1 / (CE^lambda + 1e-15)``, normalised to sum
    to 1), as the code's ``AdaptiveLoss``; ``lambd = 0`` is the plain batch-mean cross-entropy.
    """
    ce = F.cross_entropy(logits, y, reduction="none")
    coef = 1.0 / (ce.detach().pow(lambd) + 1e-15)
    return (coef / coef.sum() * ce).sum()


def balanced_saliency_mask(model: nn.Module, forget: TensorLoader, retain: TensorLoader, *, threshold: float
                           ) -> dict[str, torch.Tensor]:
    """SFR-on's forget-remain balanced saliency: ``(F_f + 1e-15) / (F_r + 1e-15) >= threshold``.

    ``F_f`` and ``F_r`` are the mean over batches of the squared gradient of the batch-mean CE on
    the forget and the retain set (empirical diagonal Fisher, SSD's :func:`~mu_lib.unlearn.dampen.importances`),
    in eval mode; the model is not modified.

    Returns:
        ``{parameter name: bool tensor}`` (True = the forget step may move it).
    """
    # imported here: a top-level import would register SSD and Fisher before SFR-on
    from mu_lib.unlearn.dampen import importances

    f_forget, f_retain = importances(model, forget), importances(model, retain)
    return {n: (f_forget[n] + 1e-15) / (f_retain[n] + 1e-15) >= threshold for n in f_forget}


@dataclass(frozen=True)
class SFROnConfig(SGDConfig):
    """The official CIFAR-10 10 % setting (``SFRon`` in ``Classification/unlearn/sfron.py``, batch 128
    from ``scripts/unlearn.sh``): SGD lr 0.01, momentum 0.9, wd 5e-4; 1,500 iterations; a forget
    step every 5 iterations with ``forget_alpha`` 25, clipped to norm 7, adaptive exponent
    ``lambd`` 0.5; mask threshold 1; cosine decay of the rate and of ``forget_alpha``.

    Budget rule: the length is ``epochs`` passes over the retain set (1,500 iterations at batch
    128 over CIFAR-10's 45,000 retain images are 4.27 epochs); an epoch trains on the retain set
    and on a fifth as many forget examples (weight 0.9 x 1.2 = 1.08). Both cosines are functions
    of the fraction of iterations done.

    Attributes:
        epochs: length in passes over the retain set (fractional).
        forget_freq: a forget step every this many iterations.
        forget_alpha: initial weight of the forget loss.
        lambd: exponent of the adaptive weights (the paper's lambda).
        max_norm: gradient-norm clip of the forget step.
        threshold: saliency threshold (the paper's gamma); ``mask=False`` ascends on every weight.
        mask: use the saliency mask.
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"] * 1.2,)
    epochs: float = 4.27
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    forget_freq: int = 5
    forget_alpha: float = 25.0
    lambd: float = 0.5
    max_norm: float = 7.0
    threshold: float = 1.0
    mask: bool = True

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("batch_size", "forget_freq"),
                            positive=("lr", "batch_size", "forget_freq", "max_norm"),
                            nonnegative=("epochs", "weight_decay", "forget_alpha", "lambd", "threshold"),
                            below_one=("momentum",), boolean=("mask",))


class _Iterations:
    """The whole run as one pass: iteration ``i`` yields a forget batch (when ``i % freq == 0``)
    and then a retain batch, tagged ``(is_forget, x, y)``; ``iteration`` tells the loss which one."""

    def __init__(self, forget: TensorLoader, retain: TensorLoader, *, iterations: int, freq: int) -> None:
        self.forget, self.retain = _loops.cycle(forget), _loops.cycle(retain)
        self.iterations, self.freq = iterations, freq
        self.iteration = 0

    def __len__(self) -> int:
        return self.iterations + -(-self.iterations // self.freq)

    def __iter__(self) -> Iterator[tuple[bool, torch.Tensor, torch.Tensor]]:
        for i in range(self.iterations):
            self.iteration = i
            if i % self.freq == 0:
                yield (True, *next(self.forget))
            yield (False, *next(self.retain))


@register("sfr_on", config=SFROnConfig, family="gradient ascent", uses=("retain", "forget"),
          summary="retain descent with an adaptive, saliency-masked forget ascent every few steps",
          reference="Huang et al. 2024 (SFR-on)")
def sfr_on(model: nn.Module, splits: RestrictedSplits, cfg: SFROnConfig, *, device, seed: int) -> nn.Module:
    """:func:`balanced_saliency_mask`, then ``round(epochs * retain batches)`` iterations in train
    mode: every ``forget_freq``-th iteration a forget step minimising
    ``-alpha_t * adaptive_forget_loss`` (masked gradient, clipped to ``max_norm``), then a retain
    step minimising the CE; one SGD optimiser for both, its rate and ``alpha_t`` following a
    cosine over the iterations.

    Deviations: the code's exponential moving average of the weights has ``ema_beta = 1``, which
    leaves the weights unchanged, and is omitted; the mask is computed on the loaders of the run
    (the code caches it on disk).
    """
    forget = splits.loader("forget", batch_size=cfg.batch_size, shuffle=True, seed=seed + 1, device=device)
    retain = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    mask = balanced_saliency_mask(model, forget, retain, threshold=cfg.threshold) if cfg.mask else None
    iterations = _loops.phase_steps(cfg.epochs, len(retain))
    if iterations == 0:
        return model
    run = _Iterations(forget, retain, iterations=iterations, freq=cfg.forget_freq)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    params = dict(model.named_parameters())
    state = {"forget": False}

    def loss_fn(is_forget: bool, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        progress = run.iteration / iterations
        _loops.set_lr(opt, cfg.lr * _loops.cosine_factor(progress))
        state["forget"] = is_forget
        if is_forget:
            alpha = cfg.forget_alpha * _loops.cosine_factor(progress)
            return -alpha * adaptive_forget_loss(model(xb), yb, lambd=cfg.lambd)
        return F.cross_entropy(model(xb), yb)

    def before_step() -> None:
        if not state["forget"]:
            return
        if mask is not None:
            for name, p in params.items():
                if p.grad is not None:
                    p.grad.mul_(mask[name])
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=cfg.max_norm)

    return _loops.run_epochs(model, run, epochs=1, optimizer=opt, loss_fn=loss_fn, before_step=before_step,
                             method="sfr_on")
