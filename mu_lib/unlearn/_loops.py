"""Training loops shared by the unlearning methods (private: methods call these, users do not)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import runtime


def sgd(params: nn.Module | Iterable, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
        ) -> torch.optim.SGD:
    """``torch.optim.SGD`` over a module's parameters (or an iterable of parameters/groups)."""
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    ps = params.parameters() if isinstance(params, nn.Module) else params
    return torch.optim.SGD(ps, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine(optimizer: torch.optim.Optimizer, steps: int, eta_min: float = 0.0
           ) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing over ``steps`` calls of ``scheduler.step()``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps), eta_min=eta_min)


def check_finite(loss: torch.Tensor, *, method: str, epoch: int) -> None:
    """Raise ``FloatingPointError`` naming the method and epoch when ``loss`` is NaN or infinite."""
    value = float(loss)
    if not math.isfinite(value):
        raise FloatingPointError(f"{method}: loss became {value} in epoch {epoch + 1}; lower the learning rate")


def cycle(loader: Iterable) -> Iterator:
    """Iterate over ``loader`` forever (a new pass, reshuffled, each time it is exhausted)."""
    while True:
        yield from loader


def ce_epochs(model: nn.Module, loader: Iterable, *, epochs: int, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, per_step_scheduler: bool = False,
              method: str, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
              before_step: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None,
              ) -> nn.Module:
    """Minimise cross-entropy on ``loader`` for ``epochs`` epochs, in train mode.

    Args:
        model: trained in place.
        loader: batches ``(x, y)`` already on the model's device.
        epochs: passes over ``loader``.
        optimizer: the optimiser.
        scheduler: stepped once per epoch (or per step with ``per_step_scheduler``).
        per_step_scheduler: step the scheduler after every optimiser step.
        method: name used in error messages and the progress bar.
        class_weights: optional weights of the cross-entropy.
        label_smoothing: passed to the cross-entropy.
        before_step: called after ``backward()`` and before ``optimizer.step()`` (e.g. to mask
            gradients).
        after_step: called after ``optimizer.step()`` (e.g. to restore frozen weights).

    Returns:
        ``model``.
    """
    model.train()
    for epoch in runtime.progress(range(epochs), desc=method, leave=False):
        total = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb, weight=class_weights, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            if after_step is not None:
                after_step()
            if scheduler is not None and per_step_scheduler:
                scheduler.step()
            total += float(loss.detach())
        check_finite(torch.tensor(total), method=method, epoch=epoch)
        if scheduler is not None and not per_step_scheduler:
            scheduler.step()
    return model
