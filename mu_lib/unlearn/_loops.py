"""Training loops shared by the unlearning methods (private: methods call these, users do not)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping

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


class Paired:
    """One pass over ``first``, each batch paired with the next batch of ``second``; ``second``
    restarts (reshuffled) whenever it runs out, and every pass starts it afresh.

    Example:
        >>> import torch
        >>> from mu_lib.data import TensorLoader
        >>> x = torch.arange(6.0).view(6, 1)
        >>> pairs = Paired(TensorLoader(x[:4], x[:4, 0], batch_size=2), TensorLoader(x, x[:, 0], batch_size=4))
        >>> [(tuple(a[1].tolist()), tuple(b[1].tolist())) for a, b in pairs]
        [((0.0, 1.0), (0.0, 1.0, 2.0, 3.0)), ((2.0, 3.0), (4.0, 5.0))]
    """

    def __init__(self, first: Iterable, second: Iterable) -> None:
        self.first, self.second = first, second

    def __iter__(self) -> Iterator:
        return zip(self.first, cycle(self.second))


def run_epochs(model: nn.Module, loader: Iterable, *, epochs: int, optimizer: torch.optim.Optimizer,
               loss_fn: Callable[..., torch.Tensor], method: str,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, per_step_scheduler: bool = False,
               before_epoch: Callable[[int], None] | None = None, after_epoch: Callable[[int], None] | None = None,
               before_step: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None,
               max_steps: int | None = None, train_mode: bool = True) -> nn.Module:
    """The one training loop of the methods: minimise ``loss_fn(*batch)`` over ``loader``, ``epochs`` times.

    Every batch the loader yields (a tuple such as ``(x, y)``, or pairs of batches) is passed to
    ``loss_fn`` unpacked. The losses are summed on the device and checked once per epoch, so a
    step never waits for the device; a NaN or infinite sum raises ``FloatingPointError`` naming
    the method and the epoch.

    Args:
        model: trained in place.
        loader: re-iterable; one pass is one epoch.
        epochs: passes over ``loader``.
        optimizer: the optimiser.
        loss_fn: ``loss_fn(*batch) -> scalar loss``.
        method: name used in error messages and the progress bar.
        scheduler: stepped once per epoch (or per step with ``per_step_scheduler``).
        per_step_scheduler: step the scheduler after every optimiser step.
        before_epoch: called with the 0-based epoch before it starts (after the mode is set).
        after_epoch: called with the 0-based epoch after its scheduler step.
        before_step: called after ``backward()`` and before ``optimizer.step()`` (e.g. to mask
            gradients).
        after_step: called after ``optimizer.step()`` (e.g. to restore frozen weights).
        max_steps: stop after this many optimiser steps in all (fractional epochs).
        train_mode: put the model in train mode (``False``: eval mode, batch-norm frozen).

    Returns:
        ``model``.
    """
    step = 0
    for epoch in runtime.progress(range(epochs), desc=method, leave=False):
        if max_steps is not None and step >= max_steps:
            break
        model.train(train_mode)
        if before_epoch is not None:
            before_epoch(epoch)
        total = None
        for batch in loader:
            loss = loss_fn(*batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            if after_step is not None:
                after_step()
            if scheduler is not None and per_step_scheduler:
                scheduler.step()
            total = loss.detach() if total is None else total + loss.detach()
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        if total is not None:
            check_finite(total, method=method, epoch=epoch)
        if scheduler is not None and not per_step_scheduler:
            scheduler.step()
        if after_epoch is not None:
            after_epoch(epoch)
    return model


def ce_epochs(model: nn.Module, loader: Iterable, *, class_weights: torch.Tensor | None = None,
              label_smoothing: float = 0.0, **kwargs) -> nn.Module:
    """:func:`run_epochs` with the cross-entropy of ``(x, y)`` batches (optionally class-weighted)."""
    return run_epochs(model, loader, loss_fn=lambda xb, yb: F.cross_entropy(
        model(xb), yb, weight=class_weights, label_smoothing=label_smoothing), **kwargs)


def check_config(cfg: object, *, integer: Iterable[str] = (), positive: Iterable[str] = (),
                 nonnegative: Iterable[str] = (), fraction: Iterable[str] = (), below_one: Iterable[str] = (),
                 choices: Mapping[str, Iterable[object]] | None = None) -> None:
    """Validate hyperparameters of a config, naming the offending field and value.

    Every numeric field must be a real number (not a bool or a string); the other checks follow.

    Args:
        cfg: the config instance.
        integer: fields that must be integers (not floats, not bools).
        positive: fields that must be finite and > 0.
        nonnegative: fields that must be finite and >= 0.
        fraction: fields that must lie in [0, 1].
        below_one: fields that must lie in [0, 1) (momentum).
        choices: fields mapped to the values they may take.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Cfg:
        ...     lr: float = -1.0
        >>> check_config(Cfg(), positive=("lr",))
        Traceback (most recent call last):
        ...
        ValueError: Cfg.lr must be positive, got -1.0
    """
    name = type(cfg).__name__
    for f in integer:
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{name}.{f} must be an integer, got {v!r}")
    for f in (*positive, *nonnegative, *fraction, *below_one):
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name}.{f} must be a number, got {v!r}")
    for f in below_one:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ValueError(f"{name}.{f} must be in [0, 1), got {v!r}")
    for f in positive:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}.{f} must be positive, got {v!r}")
    for f in nonnegative:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}.{f} must be >= 0, got {v!r}")
    for f in fraction:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and 0 <= v <= 1):
            raise ValueError(f"{name}.{f} must be in [0, 1], got {v!r}")
    for f, valid in (choices or {}).items():
        v = getattr(cfg, f)
        if v not in tuple(valid):
            raise ValueError(f"{name}.{f} must be one of {list(valid)}, got {v!r}")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with gradients switched off (a teacher or reference)."""
    import copy

    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def step_decay(epoch: int, epochs: int, *, decay: float, milestones: tuple[float, ...] = (0.5, 0.8, 0.9)) -> float:
    """Learning-rate factor of SCRUB's and Deep Unlearn's multi-step schedule at 1-based ``epoch``.

    The rate is multiplied by ``decay`` once for every milestone ``floor(f * epochs)`` that
    ``epoch`` has passed (``epoch > milestone``, as SCRUB's ``sgda_adjust_learning_rate``).

    Example:
        >>> [step_decay(e, 10, decay=0.1) for e in range(1, 11)]
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.010000000000000002, 0.0010000000000000002]
    """
    passed = sum(epoch > math.floor(f * epochs) for f in milestones)
    return decay ** passed


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
